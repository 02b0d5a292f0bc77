"""The colour cell: histogram inside the image graph, LDA head, model folder round trip."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.encoders.catalog import LocalSpec, ModelConfig
from mmsearch.encoders.colour import BINS, ColourHistogram, fit_colour_head, image_histograms
from mmsearch.encoders.export import compute_model_id, export_onnx
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.train.cache import TrainItems
from mmsearch.encoders.train.command import add_colour_head

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def normalised(rgb: np.ndarray) -> torch.Tensor:
    """(H, W, 3) in [0, 1] -> (1, 3, H, W) as the image model receives it."""
    pixels = (rgb - np.asarray(MEAN)) / np.asarray(STD)
    return torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32))


def bin_of(red: float, green: float, blue: float) -> int:
    level = [int(value * BINS) for value in (red, green, blue)]
    return (level[0] * BINS + level[1]) * BINS + level[2]


def test_histogram_counts_foreground_colours_only() -> None:
    rgb = np.ones((32, 32, 3))  # white background
    rgb[:16, :16] = (0.9, 0.1, 0.1)  # a quarter red
    rgb[16:, 16:] = (0.1, 0.1, 0.9)  # a quarter blue
    histogram = ColourHistogram(MEAN, STD)(normalised(rgb))[0].numpy() ** 2
    assert histogram[bin_of(0.9, 0.1, 0.1)] == pytest.approx(0.5, abs=1e-5)
    assert histogram[bin_of(0.1, 0.1, 0.9)] == pytest.approx(0.5, abs=1e-5)
    assert histogram.sum() == pytest.approx(1.0, abs=1e-5)  # the white never counts


def test_blank_image_has_an_empty_histogram_not_nan() -> None:
    histogram = ColourHistogram(MEAN, STD)(normalised(np.ones((16, 16, 3))))
    assert torch.isfinite(histogram).all() and float(histogram.sum()) == 0.0


def two_vendor_histograms(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """40 identities told apart by two weak bins (a tone and a pattern); every drawing adds
    strong noise in the other bins (how vendors draw differently), which LDA must discount."""
    rng = np.random.default_rng(seed)
    identities, dim = 40, 64
    rows, labels = [], []
    for _vendor in range(2):
        for identity in range(identities):
            row = rng.random(dim) * np.r_[np.ones(48), np.zeros(16)]
            row[48 + identity % 8] += 0.3
            row[56 + identity // 8] += 0.3
            rows.append(row)
            labels.append(f"id{identity}")
    return np.asarray(rows), np.asarray(labels)


def test_lda_head_matches_identities_across_vendors() -> None:
    histograms, labels = two_vendor_histograms()
    head = fit_colour_head(histograms, labels, dim=16)
    projected = head.apply(histograms)
    projected /= np.linalg.norm(projected, axis=1, keepdims=True)
    half = len(labels) // 2
    best = (projected[:half] @ projected[half:].T).argmax(1)
    assert (labels[half:][best] == labels[:half]).mean() > 0.9
    raw = histograms - histograms.mean(0)
    raw /= np.linalg.norm(raw, axis=1, keepdims=True)
    # the drawing noise dominates raw histograms: nearest neighbours are mostly wrong
    assert (labels[half:][(raw[:half] @ raw[half:].T).argmax(1)] == labels[:half]).mean() < 0.5


def test_lda_head_needs_more_identities_than_dims() -> None:
    histograms, labels = two_vendor_histograms()
    with pytest.raises(ValueError, match="identities"):
        fit_colour_head(histograms, labels, dim=40)


def test_a_model_without_colour_keeps_its_model_id_format() -> None:
    """Written only when on, so folders from before the option hash as they did."""
    plain = ModelConfig(widths=(8, 16), width_max=16)
    assert "colour" not in plain.to_json()["local"]
    coloured = ModelConfig(widths=(8, 16), width_max=16, local=LocalSpec(colour=True))
    assert coloured.to_json()["local"]["colour"] is True
    assert ModelConfig.from_json(coloured.to_json()).local.cells == 5


def test_tiny_model_exports_the_colour_cell_last(tiny_model: tuple[Path, Path]) -> None:
    from mmsearch.encoders import load_encoder

    model_dir, export_dir = tiny_model
    encoder = load_encoder("onnx", export_dir=export_dir)
    red, blue = Image.new("RGB", (32, 32), (230, 20, 20)), Image.new("RGB", (32, 32),
                                                                      (20, 20, 230))
    result = encoder.encode_images([red, red.copy(), blue])
    assert result.local.shape == (3, 5, 8)
    colour = result.local[:, -1]
    assert np.allclose(np.linalg.norm(colour, axis=1), 1, atol=1e-3)
    # the graph's colour cell is the fitted head applied to the histogram of its input
    heads = HeadSet.load(model_dir)
    expected = heads.colour.apply(image_histograms([red, red, blue], MEAN, STD, 32))
    assert np.allclose(colour, expected / np.linalg.norm(expected, axis=1, keepdims=True),
                       atol=1e-3)


def test_add_colour_head_to_a_trained_folder(tiny_model: tuple[Path, Path], tmp_path: Path
                                            ) -> None:
    model_dir, _ = tiny_model
    folder = tmp_path / "plain"
    shutil.copytree(model_dir, folder)
    config = ModelConfig.load(folder)
    plain = replace(config, local=replace(config.local, colour=False))
    plain.save(folder)
    HeadSet(*(getattr(HeadSet.load(folder), n) for n in ("image", "text", "local"))
            ).save(folder)
    before = compute_model_id(folder, plain)
    images = [Image.new("RGB", (32, 32), (i * 3, 255 - i * 3, 40 + i)) for i in range(24)]
    paths = []
    for i, image in enumerate(images):
        paths.append(str(tmp_path / f"{i}.png"))
        image.save(paths[-1])
    labels = tuple(f"id{i % 12}" for i in range(24))
    items = TrainItems(tuple(paths), tuple(["x"] * 24), labels, tuple(["g"] * 24))
    config = add_colour_head(folder, items)
    assert config.local.colour and HeadSet.load(folder).colour is not None
    assert compute_model_id(folder, config) != before  # collections need a re-ingest
    assert json.loads((folder / "train.json").read_text())["colour_head"]["identities"] == 12
    manifest = export_onnx(folder, tmp_path / "export")
    assert manifest.io["image.onnx"]["outputs"]["local_features"] == ["batch", 5, 8]


def test_colour_on_without_a_head_names_the_command(tiny_model: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    model_dir, _ = tiny_model
    folder = tmp_path / "no-head"
    shutil.copytree(model_dir, folder)
    HeadSet(*(getattr(HeadSet.load(folder), n) for n in ("image", "text", "local"))
            ).save(folder)
    with pytest.raises(ValueError, match="mmsearch train colour"):
        export_onnx(folder, tmp_path / "export")
