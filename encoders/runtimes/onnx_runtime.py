"""ONNX Runtime: the CPU default and a serve-only install's runtime (no torch)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.manifest import ModelManifest
from mmsearch.encoders.preprocess import TextTokenizer
from mmsearch.encoders.runtimes.base import Encoder

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# precision -> (image model, text model) inside the export folder
MODEL_FILES = {"fp32": ("image.onnx", "text.onnx"),
               "int8": ("image.int8.onnx", "text.int8.onnx")}
PIP = {"cpu": "pip install 'mmsearch[cpu]'", "cuda": "pip install 'mmsearch[gpu]'",
       "tensorrt": "pip install 'mmsearch[gpu]'"}


def _import_ort(device: str):  # noqa: ANN202 - the module
    try:
        import onnxruntime
    except ImportError:
        raise BackendMissingError("onnxruntime", PIP[device]) from None
    return onnxruntime


def session_options(ort: Any, threads: int | None) -> Any:
    """ONNX Runtime options for a process that runs many sessions at once (request threads,
    the encoder and the scorer): pool threads do not spin waiting for the next run, which on
    a few cores takes CPU from every other request; `threads` caps the intra-op pool
    (None: one thread per core)."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxEncoder(Encoder):
    runtime = "onnx"

    def __init__(self, export_dir: Path, batch_size: int = 32, device: str = "cpu",
                 threads: int | None = None, precision: str = "fp32") -> None:
        if device not in PROVIDERS:
            raise ValueError(f"device must be one of {sorted(PROVIDERS)}, got {device!r}")
        if precision not in MODEL_FILES:
            raise ValueError(f"precision must be one of {sorted(MODEL_FILES)}, "
                             f"got {precision!r}")
        ort = _import_ort(device)
        self.export_dir = Path(export_dir)
        self.precision = precision
        self.manifest = ModelManifest.load(self.export_dir)
        image_file, text_file = MODEL_FILES[precision]
        if image_file not in self.manifest.files:
            raise FileNotFoundError(
                f"{self.export_dir} has no {precision} models: run `mmsearch export` with "
                "train images available for calibration (data/emoji or --int8-calibration)")
        # hash only what this precision loads (the text model alone is ~90 MB)
        self.manifest.verify_files(self.export_dir, (image_file, text_file, "tokenizer.json"))
        options = session_options(ort, threads)
        self._image = ort.InferenceSession(str(self.export_dir / image_file), options,
                                           providers=PROVIDERS[device])
        self._text = ort.InferenceSession(str(self.export_dir / text_file), options,
                                          providers=PROVIDERS[device])
        self._check_provider(device)
        tokenizer = TextTokenizer(self.export_dir / "tokenizer.json",
                                  self.manifest.text_max_length)
        super().__init__(self.manifest.config, tokenizer, batch_size)
        self.model_id = self.manifest.model_id

    def _check_provider(self, device: str) -> None:
        wanted = PROVIDERS[device][0]
        running = self._image.get_providers()[0]
        if running != wanted:
            # Never a silent fallback: the session says which provider it really got.
            raise BackendMissingError(
                f"ONNX Runtime provider {wanted} (the session runs {running})", PIP[device]
            )
        log.info("ONNX Runtime runs on %s", running)

    @property
    def provider(self) -> str:
        suffix = "" if self.precision == "fp32" else f" ({self.precision})"
        return self._image.get_providers()[0] + suffix

    def _image_forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        embedding, local = self._image.run(None, {"pixel_values": pixels})
        return embedding, local

    def _text_forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (embedding,) = self._text.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return embedding
