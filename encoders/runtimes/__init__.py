"""Registry facade: `load_encoder(runtime, ...)` returns an Encoder of that runtime.

Heavy imports happen inside each runtime's constructor; a missing backend raises
BackendMissingError with the exact pip command.
"""

from __future__ import annotations

from pathlib import Path

from mmsearch.encoders.runtimes.base import Embeddings, Encoder

RUNTIMES = ("onnx", "torch", "tensorrt")


def load_encoder(runtime: str, *, model_dir: Path | None = None, export_dir: Path | None = None,
                 batch_size: int = 32, device: str = "cpu", threads: int | None = None,
                 precision: str = "fp32") -> Encoder:
    """torch reads the model folder (model.json + heads); onnx and tensorrt read the
    export folder that `mmsearch export` wrote (ONNX files, engines, manifest.json)."""
    if precision != "fp32" and runtime != "onnx":
        raise ValueError(f"precision {precision!r} exists for the onnx runtime only "
                         f"(the {runtime} runtime runs fp32)")
    if runtime == "torch":
        if model_dir is None:
            raise ValueError("the torch runtime needs model_dir")
        from mmsearch.encoders.runtimes.torch_runtime import TorchEncoder

        return TorchEncoder(model_dir, batch_size, device, threads)
    if export_dir is None:
        raise ValueError(f"the {runtime} runtime needs export_dir (run `mmsearch export`)")
    if runtime == "onnx":
        from mmsearch.encoders.runtimes.onnx_runtime import OnnxEncoder

        return OnnxEncoder(export_dir, batch_size, device, threads, precision)
    if runtime == "tensorrt":
        from mmsearch.encoders.runtimes.tensorrt_runtime import TensorRTEncoder

        return TensorRTEncoder(export_dir, batch_size)
    raise ValueError(f"unknown runtime {runtime!r}; choose one of {RUNTIMES}")


__all__ = ["Embeddings", "Encoder", "RUNTIMES", "load_encoder"]
