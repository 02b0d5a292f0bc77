"""TensorRT: fp16 engines built on the target GPU from the exported ONNX files.

Written against TensorRT 10's public Python API (explicit batch, named I/O tensors,
execute_async_v3). Device buffers are torch CUDA tensors. Where `tensorrt` does not import,
every entry point raises BackendMissingError with the pip command; nothing falls back.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.manifest import FileEntry, ModelManifest, sha256_file
from mmsearch.encoders.preprocess import TextTokenizer
from mmsearch.encoders.runtimes.base import Encoder

TENSORRT_PIP = "pip install 'mmsearch[tensorrt]'  (TensorRT comes from NVIDIA's package index)"
ENGINES = {"image": "image.fp16.engine", "text": "text.fp16.engine"}


def import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError:
        raise BackendMissingError("tensorrt", TENSORRT_PIP) from None
    return tensorrt


def import_cuda_torch() -> Any:
    """torch, whose CUDA tensors are the engines' device buffers."""
    try:
        import torch
    except ImportError:
        raise BackendMissingError("torch (CUDA buffers for TensorRT)",
                                  "pip install torch==2.13.0") from None
    return torch


def _profile_shapes(manifest: ModelManifest, max_batch: int, max_seq: int
                    ) -> dict[str, dict[str, tuple[tuple[int, ...], ...]]]:
    size = manifest.config.image_tower.input_size
    opt_batch = max(1, max_batch // 2)
    return {
        "image": {"pixel_values": ((1, 3, size, size), (opt_batch, 3, size, size),
                                   (max_batch, 3, size, size))},
        "text": {name: ((1, 1), (opt_batch, min(32, max_seq)), (max_batch, max_seq))
                 for name in ("input_ids", "attention_mask")},
    }


Shapes = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]


def build_engine(onnx_path: Path, engine_path: Path, shapes: Shapes) -> FileEntry:
    """One fp16 engine from an ONNX file, with an optimisation profile (min, opt, max) per
    dynamic input. Shared by the embedder and the scorer exports."""
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (low, opt, high) in shapes.items():
        profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path}")
    Path(engine_path).write_bytes(bytes(serialized))
    return FileEntry(sha256_file(Path(engine_path)), Path(engine_path).stat().st_size)


def build_engines(export_dir: Path, max_batch: int = 32) -> ModelManifest:
    """Build the embedder's fp16 engines (profile batch 1..max_batch) and list them in the
    manifest with their hashes."""
    import_tensorrt()
    export_dir = Path(export_dir)
    manifest = ModelManifest.load(export_dir)
    shapes = _profile_shapes(manifest, max_batch, manifest.text_max_length)
    engines = dict(manifest.engines)
    for part, engine_name in ENGINES.items():
        engines[engine_name] = build_engine(export_dir / f"{part}.onnx",
                                            export_dir / engine_name, shapes[part])
    manifest = replace(manifest, engines=engines)
    manifest.save(export_dir)
    return manifest


class TensorRTEngine:
    """One deserialized engine; run() maps input names to arrays and returns the outputs
    by name."""

    def __init__(self, trt: Any, torch: Any, path: Path) -> None:
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = runtime.deserialize_cuda_engine(path.read_bytes())
        self.context = self.engine.create_execution_context()
        self.torch = torch
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.outputs = [n for n in self.names
                        if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self.torch
        keep = []
        for name, array in inputs.items():
            tensor = torch.from_numpy(array).cuda()
            keep.append(tensor)
            self.context.set_input_shape(name, tuple(array.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=torch.float32, device="cuda")
            self.context.set_tensor_address(name, out.data_ptr())
            results.append(out)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        stream.synchronize()
        return {name: r.float().cpu().numpy()
                for name, r in zip(self.outputs, results, strict=True)}


class TensorRTEncoder(Encoder):
    runtime = "tensorrt"

    def __init__(self, export_dir: Path, batch_size: int = 32) -> None:
        trt, torch = import_tensorrt(), import_cuda_torch()
        self.export_dir = Path(export_dir)
        self.manifest = ModelManifest.load(self.export_dir)
        missing = [e for e in ENGINES.values() if e not in self.manifest.engines]
        if missing:
            raise FileNotFoundError(
                f"no TensorRT engines {missing}: run `mmsearch export --tensorrt`")
        self.manifest.verify_files(self.export_dir, tuple(ENGINES.values()))
        self._image = TensorRTEngine(trt, torch, self.export_dir / ENGINES["image"])
        self._text = TensorRTEngine(trt, torch, self.export_dir / ENGINES["text"])
        tokenizer = TextTokenizer(self.export_dir / "tokenizer.json", self.manifest.text_max_length)
        super().__init__(self.manifest.config, tokenizer, batch_size)
        self.model_id = self.manifest.model_id

    @property
    def provider(self) -> str:
        return "TensorRT fp16"

    def _image_forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outputs = self._image.run({"pixel_values": pixels})
        embedding, local = outputs.values()  # the engine keeps the ONNX output order
        return embedding, local

    def _text_forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (embedding,) = self._text.run({"input_ids": input_ids,
                                       "attention_mask": mask}).values()
        return embedding
