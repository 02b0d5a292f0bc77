"""int8 models: written by export with calibration images, selected by precision, close to
fp32 on real emoji images for the shipped model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsearch.app.config import ModelsConfig, load_config
from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import ConfigError
from mmsearch.encoders.export import export_onnx
from mmsearch.encoders.manifest import ModelManifest
from mmsearch.encoders.quantize import cosine_agreement
from support.data import random_images

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = ROOT / "models/export" / ModelsConfig().model  # the default model, as make exports it


@pytest.fixture(scope="module")
def tiny_int8(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("int8")
    export_onnx(tiny_model[0], out, random_images(8, seed=3))
    return out


def test_export_lists_int8_files_and_they_run(tiny_int8: Path) -> None:
    manifest = ModelManifest.load(tiny_int8)
    assert {"image.int8.onnx", "text.int8.onnx"} <= set(manifest.files)
    int8 = load_encoder("onnx", export_dir=tiny_int8, precision="int8")
    fp32 = load_encoder("onnx", export_dir=tiny_int8)
    assert int8.model_id == fp32.model_id and "int8" in int8.provider
    images = random_images(4, seed=9)
    a, b = fp32.encode_images(images), int8.encode_images(images)
    assert b.vectors.shape == a.vectors.shape and np.isfinite(b.vectors).all()
    texts = ["red face", "blue dog"]
    cosine = cosine_agreement(fp32.encode_texts(texts).vectors, int8.encode_texts(texts).vectors)
    assert cosine.min() > 0.9  # dynamic int8 of a random 2-layer BERT stays close


def test_int8_missing_names_the_fix(tiny_model: tuple[Path, Path]) -> None:
    with pytest.raises(FileNotFoundError, match="mmsearch export"):
        load_encoder("onnx", export_dir=tiny_model[1], precision="int8")


def test_int8_is_onnx_only(tiny_model: tuple[Path, Path]) -> None:
    with pytest.raises(ValueError, match="onnx runtime only"):
        load_encoder("torch", model_dir=tiny_model[0], precision="int8")
    with pytest.raises(ConfigError, match="models.precision"):
        load_config(None, environ={"MMSEARCH_MODELS__PRECISION": "int4"})
    with pytest.raises(ConfigError, match="models.precision"):
        load_config(None, environ={"MMSEARCH_MODELS__PRECISION": "int8",
                                   "MMSEARCH_MODELS__RUNTIME": "torch"})


def test_shipped_int8_agrees_with_fp32_on_real_emoji() -> None:
    if not (SHIPPED / "image.int8.onnx").is_file():
        pytest.fail(f"{SHIPPED} has no int8 models: run `make export`")
    images = sorted((ROOT / "data/emoji/images/google").glob("*.png"))[::300][:8]
    images += sorted((ROOT / "data/emoji/images/openmoji").glob("*.png"))[::300][:4]
    fp32 = load_encoder("onnx", export_dir=SHIPPED).encode_images(images)
    int8 = load_encoder("onnx", export_dir=SHIPPED, precision="int8").encode_images(images)
    cosine = cosine_agreement(fp32.vectors, int8.vectors)
    # measured over 944 test images: min 0.984, mean 0.996 (benchmarks/results)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.98


def test_calibration_count_is_checked(capsys: pytest.CaptureFixture[str]) -> None:
    from mmsearch.app.cli import main

    assert main(["export", "--calibration-images", "0"]) == 2
    assert "--calibration-images: must be >= 1" in capsys.readouterr().err
