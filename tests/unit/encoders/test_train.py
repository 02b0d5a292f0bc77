"""Training the embedder on 32 synthetic items: losses fall at every width, the run is
seed-deterministic, the checkpoint loads back to the same numbers, export matches torch."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmsearch.encoders import load_encoder
from mmsearch.encoders.catalog import ImageTowerSpec, ModelConfig
from mmsearch.encoders.export import export_onnx
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.train.cache import TrainItems
from mmsearch.encoders.train.command import TrainResult, train_model
from mmsearch.encoders.train.loop import TrainSettings
from support.data import CAPTIONS

IDENTITIES = 16
SETTINGS = TrainSettings(epochs=8, batch_identities=8, prototype_sample=12, lr_heads=1e-2,
                         progress=False)


def _drawings(folder: Path, styles: tuple[tuple[str, int], ...] = (("a", 0), ("b", 30))
              ) -> TrainItems:
    """16 identities drawn by each 'vendor': the same shapes, shifted in colour."""
    rng = np.random.default_rng(0)
    images, captions, labels, groups = [], [], [], []
    folder.mkdir(parents=True, exist_ok=True)
    for identity in range(IDENTITIES):
        base = rng.integers(0, 256, (40, 40, 3)).astype(np.int16)
        base[:20] = rng.integers(0, 256, 3)
        for vendor, shift in styles:
            path = folder / f"{vendor}{identity}.png"
            Image.fromarray(np.clip(base + shift, 0, 255).astype(np.uint8)).save(path)
            images.append(str(path))
            captions.append(CAPTIONS[identity % len(CAPTIONS)] + f" {identity % 3}")
            labels.append(f"id{identity}")
            groups.append(vendor)
    return TrainItems(tuple(images), tuple(captions), tuple(labels), tuple(groups))


@pytest.fixture(scope="module")
def tiny_base(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
              ) -> ModelConfig:
    """The tiny model's config with a random MobileNetV2 whose batch-norm statistics were
    set on random images: with the default statistics a random tower's activations vanish
    (~1e-10 after 18 stages), so nothing would reach the heads."""
    from mmsearch.encoders.towers.mobilenet import MobileNetV2Tower

    torch.manual_seed(0)
    tower = MobileNetV2Tower(grid=2).train()
    for module in tower.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batches
    with torch.no_grad():
        for _ in range(4):
            tower(torch.randn(16, 3, 32, 32))
    weights = tmp_path_factory.mktemp("calibrated") / "mobilenetv2.pt"
    torch.save(tower.state_dict(), weights)
    config = ModelConfig.load(tiny_model[0])
    return replace(config, name="tiny-trained",
                   image_tower=ImageTowerSpec("mobilenetv2", str(weights), 32))


@pytest.fixture(scope="module")
def trained(tiny_base: ModelConfig, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    root = tmp_path_factory.mktemp("train")
    items = _drawings(root / "images")
    return train_model(tiny_base, items, SETTINGS, views=2, tune_blocks=1,
                       cache_dir=root / "cache", out=root / "model", name="tiny-trained")


def test_loss_falls_at_every_width(trained: TrainResult, tiny_base: ModelConfig) -> None:
    history = trained.record["loss_history"]
    assert len(history) == SETTINGS.epochs
    for key in [*map(str, tiny_base.widths), "local"]:
        # 4 steps an epoch: compare the first two epochs with the last two, not single ones
        first = (history[0][key] + history[1][key]) / 2
        last = (history[-1][key] + history[-2][key]) / 2
        assert last < 0.8 * first, (key, [h[key] for h in history])


def test_run_is_seed_deterministic(trained: TrainResult, tiny_base: ModelConfig,
                                   tmp_path: Path) -> None:
    items = _drawings(tmp_path / "images")
    again = train_model(tiny_base, items, SETTINGS, views=2, tune_blocks=1,
                        cache_dir=tmp_path / "cache", out=tmp_path / "model", name="tiny-trained")
    assert again.record["loss_history"] == trained.record["loss_history"]
    first, second = HeadSet.load(trained.model_dir), HeadSet.load(tmp_path / "model")
    np.testing.assert_array_equal(first.image.weight, second.image.weight)


def test_checkpoint_round_trip(trained: TrainResult) -> None:
    """The saved folder (config + heads + tuned tower tensors) loads into the torch runtime
    and gives the embeddings the trainer computed for the clean images."""
    folder = trained.model_dir
    config = ModelConfig.load(folder)
    assert config.tower_weights == "tower.safetensors" and (folder / "tower.safetensors").is_file()
    record = json.loads((folder / "train.json").read_text())
    assert {"code_version", "seed", "settings", "loss_history", "augment"} <= set(record)
    encoder = load_encoder("torch", model_dir=folder)
    loaded = encoder.encode_images(list(trained.items.images[:8])).vectors
    with torch.no_grad():
        trunk = torch.from_numpy(trained.cache.trunk[0, :8].astype(np.float32))
        in_memory = trained.model.image_forward(trunk)[0].numpy()
    # the cache holds the trunk output in fp16, so agreement is to fp16 precision
    np.testing.assert_allclose(loaded, in_memory, atol=2e-2 * np.abs(in_memory).max())
    cosine = (loaded * in_memory).sum(1) / np.linalg.norm(loaded, axis=1) / np.linalg.norm(
        in_memory, axis=1)
    assert cosine.min() > 0.999


def test_training_changed_the_tower_and_heads(trained: TrainResult,
                                            tiny_model: tuple[Path, Path]) -> None:
    baseline = HeadSet.load(tiny_model[0])
    tuned = HeadSet.load(trained.model_dir)
    assert not np.allclose(baseline.image.weight, tuned.image.weight)
    assert trained.model.tower_state(), "tune_blocks=1 must save the last stage"


def test_export_of_the_trained_model_matches_torch(trained: TrainResult, tmp_path: Path) -> None:
    export_onnx(trained.model_dir, tmp_path / "export")
    onnx_encoder = load_encoder("onnx", export_dir=tmp_path / "export")
    torch_encoder = load_encoder("torch", model_dir=trained.model_dir)
    assert onnx_encoder.model_id == torch_encoder.model_id
    images = list(trained.items.images[:6])
    a, b = onnx_encoder.encode_images(images), torch_encoder.encode_images(images)
    for width in ModelConfig.load(trained.model_dir).widths:  # the vectors users store
        np.testing.assert_allclose(a.at_width(width), b.at_width(width), atol=1e-4)
    np.testing.assert_allclose(a.local, b.local, atol=1e-4)
    texts = list(trained.items.captions[:6])
    width = a.vectors.shape[1]
    np.testing.assert_allclose(onnx_encoder.encode_texts(texts).at_width(width),
                               torch_encoder.encode_texts(texts).at_width(width), atol=1e-4)


def test_no_train_items_is_a_clear_error(tmp_path: Path) -> None:
    from mmsearch.encoders.train.command import read_train_items

    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "x", "image": None, "text": "a", "label": "x",
                                    "split": "train", "attrs": {}}) + "\n")
    with pytest.raises(ValueError, match="no train-split items"):
        read_train_items([manifest])


def _subset(items: TrainItems, keep: set[str]) -> TrainItems:
    rows = [row for row in zip(items.images, items.captions, items.labels, items.groups,
                               strict=True) if row[2] in keep]
    return TrainItems(*(tuple(column) for column in zip(*rows, strict=True)))


def test_many_styles_with_a_validation_fold(tiny_base: ModelConfig, tmp_path: Path) -> None:
    """Three styles per identity; identities 12-15 are validation: never trained on, the
    caption weight is chosen on them and their cross-style recall recorded."""
    items = _drawings(tmp_path / "images", (("a", 0), ("b", 30), ("c", -40)))
    held = {f"id{i}" for i in range(12, IDENTITIES)}
    train = _subset(items, set(items.labels) - held)
    validation = _subset(items, held)
    result = train_model(tiny_base, train, replace(SETTINGS, epochs=1), views=1,
                         tune_blocks=0, cache_dir=tmp_path / "cache", out=tmp_path / "model",
                         name="styles", validation=validation)
    record = result.record
    assert record["identities"] == 12 and record["items"] == 36
    assert record["fusion_chosen_on"] == "validation"
    assert record["validation"]["identities"] == 4 and record["validation"]["items"] == 12
    recall = record["validation"]["cross_style_recall@1"]
    assert set(recall) == {str(w) for w in tiny_base.widths}
    assert all(0.0 <= value <= 1.0 for value in recall.values())
    pairs = record["validation"]["style_pair_recall@1"]
    assert set(pairs) == set(recall) and all(0.0 <= v <= 1.0 for v in pairs.values())
    names = record["validation"]["name_recall"]
    assert set(names) == set(recall)
    assert all(0.0 <= m["recall@1"] <= m["recall@10"] <= 1.0 for m in names.values())
    assert result.model.prototypes.shape[0] == 12  # no prototype for a validation identity
    assert record["epoch_chosen"] == 1 and "validation" in record["loss_history"][0]


def test_style_pairs_are_harder_than_any_other_style() -> None:
    """Style c's drawing of x sits on style b's drawing of y: against every other style it
    still finds x (a's drawing is nearer), one-to-one against b it does not."""
    from mmsearch.encoders.train.validation import cross_group_recall, style_pair_recall

    rows = [("a", "x", (1.0, 0.0)), ("a", "y", (0.0, 1.0)), ("b", "x", (0.6, -0.8)),
            ("b", "y", (0.8, 0.6)), ("c", "x", (0.97, 0.24)), ("c", "y", (0.0, 1.0))]
    groups, labels, vectors = zip(*rows, strict=True)
    paths = tuple(f"{group}{label}.png" for group, label in zip(groups, labels, strict=True))
    items = TrainItems(paths, tuple(["caption"] * 6), labels, groups)
    image = np.asarray(vectors, dtype=np.float32)
    pairs = style_pair_recall(image, items, (2,))["2"]
    anywhere = cross_group_recall(image, items, (2,))["2"]
    assert anywhere > pairs
    assert anywhere == pytest.approx(np.mean([1.0, 0.5, 1.0]))
    # a->b, a->c, b->a, b->c, c->a, c->b: each of a->b, b->a, b->c, c->b loses one identity
    assert pairs == pytest.approx(np.mean([0.5, 1.0, 0.5, 0.5, 1.0, 0.5]))
    # c held out: only c queries, against a and b
    held_out = style_pair_recall(image, items, (2,), frozenset({"c"}))["2"]
    assert held_out == pytest.approx(np.mean([1.0, 0.5]))


def test_name_share_mixes_names_into_the_text_side() -> None:
    from mmsearch.encoders.train.cache import FeatureCache
    from mmsearch.encoders.train.loop import _text_rows

    cache = FeatureCache(np.zeros((1, 6, 2), np.float16), np.zeros((6, 3), np.float32),
                         np.ones((6, 3), np.float32))
    items = np.arange(6)
    rng = np.random.default_rng(0)
    captions_only = _text_rows(cache, items, SETTINGS, rng)
    assert (captions_only == 0).all()
    assert rng.random() == np.random.default_rng(0).random()  # share 0 draws nothing
    assert (_text_rows(cache, items, replace(SETTINGS, name_share=1.0), rng) == 1).all()
    mixed = _text_rows(cache, np.arange(6).repeat(20), replace(SETTINGS, name_share=0.5), rng)
    assert 0.2 < mixed[:, 0].mean() < 0.8
    with pytest.raises(ValueError, match="names"):
        _text_rows(replace(cache, names=None), items, replace(SETTINGS, name_share=0.5), rng)


def test_a_run_with_names_encodes_each_captions_name(tiny_base: ModelConfig,
                                                     tmp_path: Path) -> None:
    items = _drawings(tmp_path / "images")
    items = replace(items, captions=tuple(f"{c} (keyword, other)" for c in items.captions))
    result = train_model(tiny_base, items, replace(SETTINGS, epochs=1, name_share=0.5),
                         views=1, tune_blocks=0, cache_dir=tmp_path / "cache",
                         out=tmp_path / "model", name="names")
    names = result.cache.names
    assert names is not None and names.shape == result.cache.text.shape
    assert not np.allclose(names, result.cache.text)  # the keywords are gone from the name
    assert result.record["settings"]["name_share"] == 0.5


def test_training_ends_at_the_best_validation_epoch(tiny_base: ModelConfig,
                                                    tmp_path: Path) -> None:
    """The epochs are chosen on validation: the model keeps its best epoch's weights."""
    from mmsearch.encoders.train.loop import train_embedder

    items = _drawings(tmp_path / "images")
    result = train_model(tiny_base, items, replace(SETTINGS, epochs=1), views=1,
                         tune_blocks=0, cache_dir=None, out=tmp_path / "model", name="v")
    model, snapshots = result.model, []
    scores = iter([0.5, 0.9, 0.9, 0.1])

    def validate(candidate: torch.nn.Module) -> float:
        snapshots.append({k: v.clone() for k, v in candidate.state_dict().items()})
        return next(scores)

    history = train_embedder(model, result.cache, items.labels, tiny_base.widths,
                             replace(SETTINGS, epochs=4), validate)
    assert [entry["validation"] for entry in history] == [0.5, 0.9, 0.9, 0.1]
    assert not torch.equal(snapshots[1]["image_head.weight"], snapshots[3]["image_head.weight"])
    for name, tensor in model.state_dict().items():  # epoch 2: the first of the best
        assert torch.equal(tensor, snapshots[1][name]), name


def test_every_style_of_an_identity_takes_part_in_a_batch() -> None:
    from mmsearch.encoders.train.loop import _pick_instances, identity_index

    labels = tuple(f"id{i % 5}" for i in range(20))  # 4 styles of 5 identities
    ids, members = identity_index(labels)
    picked = _pick_instances(np.arange(5), members, 4, np.random.default_rng(0))
    assert picked.shape == (4, 5)
    for column, identity in enumerate(range(5)):
        assert sorted(picked[:, column]) == sorted(members[identity])  # 4 distinct drawings
    short = _pick_instances(np.arange(5), members[:5], 6, np.random.default_rng(0))
    assert short.shape == (6, 5)  # fewer drawings than instances: some repeat, none invented
    assert all(set(short[:, c]) <= set(members[c]) for c in range(5))


def test_three_instances_train_every_pair(tiny_base: ModelConfig, tmp_path: Path) -> None:
    items = _drawings(tmp_path / "images", (("a", 0), ("b", 30), ("c", -40)))
    result = train_model(tiny_base, items, replace(SETTINGS, epochs=2, instances=3), views=1,
                         tune_blocks=0, cache_dir=None, out=tmp_path / "model", name="three")
    history = result.record["loss_history"]
    assert len(history) == 2 and all(np.isfinite(list(epoch.values())).all()
                                     for epoch in history)
    assert result.record["settings"]["instances"] == 3


def test_manifest_folds_are_disjoint(tmp_path: Path) -> None:
    from mmsearch.encoders.data.records import fold_of
    from mmsearch.encoders.train.command import read_train_items

    manifest = tmp_path / "m.jsonl"
    labels = [f"1F{i:03X}" for i in range(120)]
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    manifest.write_text("".join(json.dumps({
        "id": label, "image": "x.png", "text": label, "label": label,
        "split": "test" if fold_of(label) == "test" else "train", "attrs": {}}) + "\n"
        for label in labels))
    train = set(read_train_items([manifest]).labels)
    validation = set(read_train_items([manifest], "validation").labels)
    assert train and validation and not train & validation
    assert train | validation == {label for label in labels if fold_of(label) != "test"}


def test_a_users_split_field_decides_what_is_train(tmp_path: Path) -> None:
    """A user's catalogue says `split: train` for every product; the emoji hash's test bit
    must not drop half of them (CI caught 2 of 12 products trained)."""
    from mmsearch.encoders.data.records import fold_of, in_validation
    from mmsearch.encoders.train.command import read_train_items

    labels = [f"product-{i}" for i in range(40)]
    assert any(fold_of(label) == "test" for label in labels)
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps({
        "id": label, "image": "x.png", "text": label, "label": label, "split": "train",
        "attrs": {}}) + "\n" for label in labels))
    train = set(read_train_items([manifest]).labels)
    assert train == {label for label in labels if not in_validation(label)}
    assert set(read_train_items([manifest], validation_percent=0).labels) == set(labels)


def test_frozen_tower_trains_heads_only(tiny_base: ModelConfig, tmp_path: Path) -> None:
    items = _drawings(tmp_path / "images")
    result = train_model(tiny_base, items, replace(SETTINGS, epochs=2), views=1, tune_blocks=0,
                         cache_dir=None, out=tmp_path / "model", name="frozen")
    assert ModelConfig.load(tmp_path / "model").tower_weights is None
    assert not (tmp_path / "model" / "tower.safetensors").exists()
    assert result.cache.trunk.shape[2] == 1 + 4  # pooled + 2x2 cells per item



@pytest.mark.parametrize(("flags", "named"), [
    (["--manifest", "missing.jsonl"], "--manifest: missing.jsonl not found"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--tune-blocks", "-1"], "--tune-blocks: must be >= 0"),
    (["--batch-identities", "1"], "--batch-identities: must be >= 2"),
    (["--validation-percent", "-1"], "--validation-percent: must be >= 0"),
    (["--validation-percent", "60"], "--validation-percent: must be <= 50"),
    (["--name-share", "1.5"], "--name-share: must be between 0 and 1"),
])
def test_bad_training_flags_are_named(flags: list[str], named: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mmsearch.app.cli import main

    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    base = [] if flags[0] == "--manifest" else ["--manifest", str(manifest)]
    assert main(["train", "encoder", *base, *flags, "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fusion_with_one_group_keeps_the_default() -> None:
    """One manifest (one vendor): no second drawing to fit the caption weight against."""
    from mmsearch.encoders.catalog import FusionSpec
    from mmsearch.encoders.train.command import fit_fusion

    items = TrainItems(("a.png", "b.png"), ("x", "y"), ("1", "2"), ("shop", "shop"))
    vectors = np.eye(2, 8, dtype=np.float32)
    assert fit_fusion(vectors, vectors, items, 8) == (FusionSpec(), {})
