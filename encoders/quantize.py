"""int8 models next to the fp32 ones (`mmsearch export --int8`, ONNX Runtime's quantizer).

- image: static quantisation, per-channel int8 weights and uint8 activations in QDQ form,
  calibrated on real train images. Dynamic quantisation would leave the convolutions in
  fp32 (ONNX Runtime quantises only MatMul/Gather dynamically), which is where the
  image model spends its time. For MobileNetV2 only the middle stages (4..13) are
  quantised: measured on emoji, quantising the high-resolution stem (stages 0..3) drops
  the fp32/int8 embedding cosine to 0.47 (min) and the fine-tuned last stages to 0.97,
  while stages 4..13 alone keep it above 0.99. Other towers are quantised whole; export
  measures and records the cosine on the calibration images either way.
- text: dynamic quantisation (int8 weights, activations scaled per batch at run time):
  the transformer is MatMul-bound, and per-batch scales suit variable sentence lengths.
The fp32 outputs stay the reference; `cosine_agreement` measures how far int8 drifts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.preprocess import ImageInput, ImageSpec, image_to_array, load_rgb

log = logging.getLogger(__name__)
IMAGE_INT8 = "image.int8.onnx"
TEXT_INT8 = "text.int8.onnx"
ORT_PIP = "pip install 'mmsearch[cpu]'"
INT8_WARN_BELOW = 0.95  # fp32/int8 cosine on the calibration images


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantiser logs one INFO line per tensor on the root logger."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _quantization():  # noqa: ANN202 - the module
    try:
        from onnxruntime import quantization
    except ImportError:
        raise BackendMissingError("onnxruntime.quantization", ORT_PIP) from None
    return quantization


class _ImageCalibration:
    """Feeds calibration batches to the quantiser (its CalibrationDataReader protocol)."""

    def __init__(self, images: Sequence[ImageInput], spec: ImageSpec, batch_size: int) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {"pixel_values": np.stack([image_to_array(load_rgb(image), spec)
                                       for image in images[start : start + batch_size]])}
            for start in range(0, len(images), batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


MOBILENET_INT8_STAGES = range(4, 14)


def _excluded_nodes(model_path: Path, tower_kind: str) -> list[str]:
    """Nodes left in fp32: for MobileNetV2 everything outside its stages 4..13."""
    if tower_kind != "mobilenetv2":
        return []
    import onnx

    keys = [f"/features.{stage}/" for stage in MOBILENET_INT8_STAGES]
    return [node.name for node in onnx.load(str(model_path)).graph.node
            if not any(key in node.name for key in keys)]


def quantize_image_model(fp32_path: Path, out_path: Path, calibration: Sequence[ImageInput],
                         spec: ImageSpec, tower_kind: str, batch_size: int = 16) -> float:
    """Write the int8 model; -> the lowest fp32/int8 embedding cosine on the calibration
    images (logged loudly when below 0.99)."""
    if not calibration:
        raise ValueError("int8 image export needs calibration images (train split)")
    quant = _quantization()
    prepared = out_path.with_suffix(".prep.onnx")
    quant.quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    try:
        with _quiet_root_logger():
            quant.quantize_static(
                str(prepared), str(out_path),
                _ImageCalibration(calibration, spec, batch_size),
                quant_format=quant.QuantFormat.QDQ, per_channel=True,
                weight_type=quant.QuantType.QInt8, activation_type=quant.QuantType.QUInt8,
                calibrate_method=quant.CalibrationMethod.MinMax,
                nodes_to_exclude=_excluded_nodes(prepared, tower_kind),
            )
    finally:
        prepared.unlink(missing_ok=True)
    cosine = float(_calibration_cosine(fp32_path, out_path, calibration, spec).min())
    # a warning only where int8 would visibly change rankings; the shipped model's minimum
    # over 5,568 test images is 0.974 (benchmarks/results/encoder_speed.md)
    level = logging.INFO if cosine >= INT8_WARN_BELOW else logging.WARNING
    log.log(level, "static int8 image model written to %s (%d calibration images); "
            "fp32/int8 cosine min %.4f on them", out_path, len(calibration), cosine)
    return cosine


def _calibration_cosine(fp32_path: Path, int8_path: Path, images: Sequence[ImageInput],
                        spec: ImageSpec) -> np.ndarray:
    import onnxruntime

    pixels = np.stack([image_to_array(load_rgb(image), spec) for image in images])
    outputs = [onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
               .run(["embedding"], {"pixel_values": pixels})[0]
               for path in (fp32_path, int8_path)]
    return cosine_agreement(*outputs)


def quantize_text_model(fp32_path: Path, out_path: Path) -> Path:
    quant = _quantization()
    # MatMul only: quantising the embedding Gather too costs cosine (0.973 vs 0.977 min on
    # emoji captions) and no time; per-channel weights beat per-tensor (0.91 min)
    with _quiet_root_logger():
        quant.quantize_dynamic(str(fp32_path), str(out_path),
                               weight_type=quant.QuantType.QInt8, per_channel=True,
                               op_types_to_quantize=["MatMul"])
    log.info("dynamic int8 text model written to %s", out_path)
    return out_path


def cosine_agreement(reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Row-wise cosine between fp32 and int8 embeddings (1.0 = identical direction)."""
    ref = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    cand = candidate / np.maximum(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12)
    return (ref * cand).sum(axis=1)
