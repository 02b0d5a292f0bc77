"""Runtimes agree, batches equal singles, MRL prefixes are unit vectors, bad items are isolated."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.runtimes.base import Encoder
from support.data import CAPTIONS, random_images


@pytest.fixture(scope="module")
def encoders_pair(tiny_model: tuple[Path, Path]) -> tuple[Encoder, Encoder]:
    model_dir, export_dir = tiny_model
    return (load_encoder("torch", model_dir=model_dir, batch_size=4),
            load_encoder("onnx", export_dir=export_dir, batch_size=4))


def test_onnx_matches_torch(encoders_pair: tuple[Encoder, Encoder]) -> None:
    torch_enc, onnx_enc = encoders_pair
    images = random_images(6, seed=7)
    texts = CAPTIONS[:5] + ["red " * 40]  # the last one is longer than the tower's limit
    for method, inputs in (("encode_images", (images,)), ("encode_texts", (texts,)),
                           ("encode_items", (images, texts))):
        a, b = getattr(torch_enc, method)(*inputs), getattr(onnx_enc, method)(*inputs)
        np.testing.assert_array_equal(a.indices, b.indices)
        assert np.abs(a.vectors - b.vectors).max() <= 1e-4, method
        if a.local is not None:
            assert np.abs(a.local - b.local).max() <= 1e-4


@pytest.mark.parametrize("runtime", [0, 1])
def test_batch_equals_singles(encoders_pair: tuple[Encoder, Encoder], runtime: int) -> None:
    encoder = encoders_pair[runtime]
    images = random_images(5, seed=3)
    batch = encoder.encode_images(images)
    singles = np.concatenate([encoder.encode_images([img]).vectors for img in images])
    assert np.abs(batch.vectors - singles).max() <= 1e-5
    texts = CAPTIONS[:6]
    batch = encoder.encode_texts(texts)
    singles = np.concatenate([encoder.encode_texts([t]).vectors for t in texts])
    assert np.abs(batch.vectors - singles).max() <= 1e-5


def test_every_width_prefix_is_a_unit_vector(encoders_pair: tuple[Encoder, Encoder]) -> None:
    _, encoder = encoders_pair
    result = encoder.encode_items(random_images(4), CAPTIONS[:4])
    for width in encoder.config.widths:
        vectors = result.at_width(width)
        assert vectors.shape == (4, width)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        np.testing.assert_allclose(vectors, result.at_width(width)[:, :width])
    # a prefix is the re-normalised slice of the full vector, not a separate output
    full = result.vectors
    np.testing.assert_allclose(result.at_width(8), full[:, :8] / np.linalg.norm(
        full[:, :8], axis=1, keepdims=True), rtol=1e-5)
    assert result.local.shape == (4, 5, 8)  # 2x2 cells + the colour cell
    np.testing.assert_allclose(np.linalg.norm(result.local, axis=-1), 1.0, atol=1e-5)


def test_one_bad_item_never_fails_its_batch(encoders_pair: tuple[Encoder, Encoder]) -> None:
    _, encoder = encoders_pair
    good = random_images(3, seed=11)
    images = [good[0], b"garbage", good[1], None, None, good[2]]
    texts = ["red face", "blue dog", b"\xff\xfe", "green cat", None, None]
    result = encoder.encode_items(images, texts, ids=["a", "b", "c", "d", "e", "f"])
    assert result.indices.tolist() == [0, 3, 5]
    by_item = {p.item: p for p in result.problems}
    assert by_item["b"].field == "image" and "decodable" in by_item["b"].reason
    assert by_item["c"].field == "text" and "UTF-8" in by_item["c"].reason
    assert by_item["e"].field == "image,text"
    # the survivors are exactly what they would be alone
    alone = encoder.encode_items([good[0]], ["red face"])
    np.testing.assert_allclose(result.vectors[0], alone.vectors[0], atol=1e-5)
    assert result.has_local.tolist() == [True, False, True]


def test_long_text_truncated_and_reported(encoders_pair: tuple[Encoder, Encoder]) -> None:
    _, encoder = encoders_pair
    result = encoder.encode_texts(["red " * 100, "blue dog"], ids=["long", "short"])
    assert result.indices.tolist() == [0, 1]
    assert [n.item for n in result.notes] == ["long"]
    assert "truncated to 24 tokens" in result.notes[0].reason


def test_text_only_and_image_only_items_live_in_one_space(
        encoders_pair: tuple[Encoder, Encoder]) -> None:
    _, encoder = encoders_pair
    image = random_images(1, seed=5)
    fused = encoder.encode_items(image, ["red face"]).at_width(32)[0]
    image_only = encoder.encode_items(image, [None]).at_width(32)[0]
    text_only = encoder.encode_items([None], ["red face"]).at_width(32)[0]
    np.testing.assert_allclose(image_only, encoder.encode_images(image).at_width(32)[0],
                               atol=1e-6)
    assert fused @ image_only > 0.3 and fused @ text_only > 0.3


def test_onnx_provider_is_the_sessions(encoders_pair: tuple[Encoder, Encoder]) -> None:
    _, encoder = encoders_pair
    assert encoder.provider == "CPUExecutionProvider"
    assert "CPUExecutionProvider" in encoder.describe()


def test_missing_onnxruntime_names_the_pip_command(tiny_model: tuple[Path, Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(BackendMissingError, match=r"pip install 'mmsearch\[cpu\]'"):
        load_encoder("onnx", export_dir=tiny_model[1])


def test_unavailable_provider_is_refused_not_silently_replaced(
        tiny_model: tuple[Path, Path]) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("CUDA provider is present here; the refusal path needs a CPU-only build")
    with pytest.raises(BackendMissingError, match="session runs CPUExecutionProvider"):
        load_encoder("onnx", export_dir=tiny_model[1], device="cuda")


def test_local_clip_folder_works_through_the_same_interface(
        tiny_clip_model: tuple[Path, Path]) -> None:
    model_dir, export_dir = tiny_clip_model
    torch_enc = load_encoder("torch", model_dir=model_dir)
    onnx_enc = load_encoder("onnx", export_dir=export_dir)
    images = random_images(3, seed=2)
    a = torch_enc.encode_items(images, CAPTIONS[:3])
    b = onnx_enc.encode_items(images, CAPTIONS[:3])
    assert a.vectors.shape == (3, 16) and a.local.shape == (3, 4, 8)
    assert np.abs(a.vectors - b.vectors).max() <= 1e-4
    texts = onnx_enc.encode_texts(["red face", "red " * 30])
    assert len(texts.notes) == 1  # CLIP's 16-position limit
