"""Export round trip, manifest checks, and the TensorRT path where tensorrt imports."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import BackendMissingError, ModelMismatchError
from mmsearch.encoders.export import export_onnx
from mmsearch.encoders.manifest import ModelManifest, require_same_model
from support.data import random_images

HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None


def test_exported_graphs_have_the_documented_io(tiny_model: tuple[Path, Path]) -> None:
    _, export_dir = tiny_model
    image = onnx.load(str(export_dir / "image.onnx"))
    onnx.checker.check_model(image)
    assert [i.name for i in image.graph.input] == ["pixel_values"]
    assert [o.name for o in image.graph.output] == ["embedding", "local_features"]
    text = onnx.load(str(export_dir / "text.onnx"))
    dims = text.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]  # dynamic batch and sequence


def test_manifest_describes_the_model(tiny_model: tuple[Path, Path]) -> None:
    _, export_dir = tiny_model
    data = json.loads((export_dir / "manifest.json").read_text())
    assert data["widths"] == [8, 16, 32] and data["image_input_size"] == 32
    assert set(data["files"]) == {"image.onnx", "text.onnx", "tokenizer.json"}
    assert data["local_features"] == {"cells": 5, "dim": 8}  # 2x2 cells + colour


def test_reexport_is_the_same_model(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    import warnings

    model_dir, export_dir = tiny_model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = export_onnx(model_dir, tmp_path / "again")
    # the known, harmless export warnings are silenced; nothing else is expected
    assert [str(w.message)[:80] for w in caught] == []
    assert again.model_id == ModelManifest.load(export_dir).model_id
    a = load_encoder("onnx", export_dir=tmp_path / "again").encode_images(random_images(2))
    b = load_encoder("onnx", export_dir=export_dir).encode_images(random_images(2))
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-6)


def test_changed_head_is_a_different_model(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    from mmsearch.encoders.heads import HeadSet, LinearHead

    model_dir, export_dir = tiny_model
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    heads = HeadSet.load(copy)
    replace(heads, image=LinearHead(heads.image.mean, heads.image.weight * 2)).save(copy)
    changed = export_onnx(copy, tmp_path / "export")
    original = ModelManifest.load(export_dir)
    assert changed.model_id != original.model_id
    with pytest.raises(ModelMismatchError, match="re-ingest"):
        require_same_model(original.model_id, changed.model_id, "collection items_d64")


def test_tampered_file_is_refused(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    _, export_dir = tiny_model
    copy = tmp_path / "export"
    shutil.copytree(export_dir, copy)
    with open(copy / "text.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelMismatchError, match="text.onnx"):
        load_encoder("onnx", export_dir=copy)
    (copy / "text.onnx").unlink()
    with pytest.raises(ModelMismatchError, match="missing"):
        load_encoder("onnx", export_dir=copy)


def test_tensorrt_missing_names_the_pip_command(tiny_model: tuple[Path, Path]) -> None:
    if HAS_TENSORRT:
        pytest.skip("tensorrt imports here; the missing-backend path cannot be shown")
    from mmsearch.encoders.runtimes.tensorrt_runtime import build_engines

    with pytest.raises(BackendMissingError, match=r"pip install 'mmsearch\[tensorrt\]'"):
        build_engines(tiny_model[1])
    with pytest.raises(BackendMissingError, match="tensorrt"):
        load_encoder("tensorrt", export_dir=tiny_model[1])


@pytest.mark.tensorrt
@pytest.mark.skipif(not HAS_TENSORRT, reason="tensorrt does not import on this machine "
                    "(NVIDIA's index is unreachable here); the engine path runs on a GPU box")
def test_tensorrt_engine_matches_onnx(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    from mmsearch.encoders.runtimes.tensorrt_runtime import build_engines

    copy = tmp_path / "export"
    shutil.copytree(tiny_model[1], copy)
    build_engines(copy, max_batch=8)
    images = random_images(4)
    trt = load_encoder("tensorrt", export_dir=copy).encode_images(images)
    ref = load_encoder("onnx", export_dir=copy).encode_images(images)
    cosine = (trt.at_width(32) * ref.at_width(32)).sum(axis=1)
    assert cosine.min() > 0.999  # fp16 engine vs fp32 reference
