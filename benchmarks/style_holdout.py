"""Leave-one-family-out proxy study (issue 15): what a catalogue in a style the model never
saw gets, measured on validation identities only (`fold_of`; test identities untouched).

For each family (emojione: EmojiOne 4 / JoyPixels / EmojiOne v1; fluent: flat / colour /
high-contrast; noto: Noto v1 + google) heads are trained on the train fold of every other
style, then the held-out family's validation drawings query the other styles' validation
drawings (image -> image). Proxy runs: the MobileNetV2 tower frozen (tune_blocks 0), one
clean view, trunk features cached once, so a run takes a minute. Arms in the same run: raw
MobileNetV2 pooled features, heads trained on google + twitter only (today's data), heads
trained on every other style (this issue's data), and the shipped emoji-v1 (its tower tuned
on google + twitter train identities, which include these validation identities in those
two styles: its numbers are optimistic).

    python -m benchmarks.style_holdout [--epochs 20]   (needs mmsearch data emoji + styles)
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._report import bar_chart, markdown_table, write
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.data.styles import STYLES
from mmsearch.encoders.heads import fit_pca_head
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower, load_text_tower
from mmsearch.encoders.train.augment import AugmentSpec
from mmsearch.encoders.train.cache import FeatureCache, FrozenTrunk, TrainItems, build_cache
from mmsearch.encoders.train.command import read_train_items
from mmsearch.encoders.train.loop import TrainSettings, train_embedder
from mmsearch.encoders.train.model import TrainableEmbedder

DATA = Path("data/emoji")
FAMILIES = {"emojione": ("emojione4", "joypixels", "emojione-v1"),
            "fluent": ("fluent-flat", "fluent-colour", "fluent-high-contrast"),
            "noto": ("noto-v1", "google")}
WIDTHS = (64, 512)


def manifests() -> dict[str, Path]:
    found = {"google": DATA / "google.jsonl", "twitter": DATA / "twitter.jsonl"}
    found |= {s.name: DATA / "styles" / f"{s.name}.jsonl" for s in STYLES}
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        raise SystemExit(f"missing {missing}: run `mmsearch data emoji` and `mmsearch data "
                         "styles`")
    return found


def rows_of(items: TrainItems, groups: set[str]) -> np.ndarray:
    return np.array([i for i, g in enumerate(items.groups) if g in groups], dtype=np.int64)


def subset(items: TrainItems, rows: np.ndarray) -> TrainItems:
    return TrainItems(*(tuple(np.asarray(column, dtype=object)[rows]) for column in (
        items.images, items.captions, items.labels, items.groups)))


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def holdout_metrics(vectors: np.ndarray, items: TrainItems, family: tuple[str, ...],
                    width: int | None) -> dict[str, float]:
    """The held-out family's drawings query every other style's (validation fold)."""
    query = rows_of(items, set(family))
    gallery = np.setdiff1d(np.arange(len(items.groups)), query)
    view = unit(vectors) if width is None else at_width(vectors, width)
    labels = np.asarray(items.labels)
    return retrieval_metrics(view[query], list(labels[query]), view[gallery],
                             list(labels[gallery]))


def heads_only(config: ModelConfig, cache: FeatureCache, items: TrainItems,
               settings: TrainSettings) -> TrainableEmbedder:
    tower = load_image_tower(config.image_tower, config.local.grid)
    pooled, cells = cache.trunk[0, :, 0].astype(np.float32), cache.trunk[0, :, 1:]
    model = TrainableEmbedder(
        tower, 0, fit_pca_head(pooled, config.width_max), fit_pca_head(cache.text,
                                                                       config.width_max),
        fit_pca_head(cells.reshape(-1, cells.shape[-1]).astype(np.float32),
                     config.local.dim), len(set(items.labels)))
    train_embedder(model, cache, items.labels, config.widths, settings)
    return model


def slice_cache(cache: FeatureCache, rows: np.ndarray) -> FeatureCache:
    return FeatureCache(cache.trunk[:, rows], cache.text[rows],
                        None if cache.names is None else cache.names[rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"))
    parser.add_argument("--shipped", type=Path, default=Path("models/export/emoji-v1"))
    args = parser.parse_args()
    paths = list(manifests().values())
    train, validation = read_train_items(paths), read_train_items(paths, "validation")
    config = ModelConfig.load(Path("models/emoji-v1"))
    config = replace(config, local=replace(config.local, colour=False))
    tower = load_image_tower(config.image_tower, config.local.grid)
    spec = ImageSpec(config.image_tower.input_size, config.image_tower.mean,
                     config.image_tower.std)
    started = time.time()
    caches = {}
    text_tower = load_text_tower(config.text_tower)
    for fold, items in (("train", train), ("validation", validation)):
        caches[fold] = build_cache(FrozenTrunk(tower, 0), text_tower,
                                   spec, items, 1, AugmentSpec(),
                                   args.cache / f"holdout-{fold}-{len(items.images)}.npz")
    cache_s = time.time() - started
    settings = TrainSettings(epochs=args.epochs, progress=False)
    val_pooled = caches["validation"].trunk[0, :, 0].astype(np.float32)
    arms: dict[str, dict[str, dict[str, float]]] = {}
    runs = []

    def record(arm: str, family: str, vectors: np.ndarray, raw: bool = False) -> None:
        for width in (None,) if raw else WIDTHS:
            metrics = holdout_metrics(vectors, validation, FAMILIES[family], width)
            key = f"{arm} d{width}" if width else arm
            arms.setdefault(key, {})[family] = metrics["recall@1"]
            runs.append({"arm": arm, "family": family, "width": width, **metrics})

    from mmsearch.encoders import load_encoder

    shipped = load_encoder("onnx", export_dir=args.shipped)
    shipped_vectors = shipped.encode_images(list(validation.images)).vectors
    for family, styles in FAMILIES.items():
        record("raw MobileNetV2", family, val_pooled, raw=True)
        record("shipped emoji-v1", family, shipped_vectors)
        for arm, groups in (("heads, google+twitter", {"google", "twitter"} - set(styles)),
                            ("heads, all other styles", set(train.groups) - set(styles))):
            rows = rows_of(train, groups)
            run_started = time.time()
            model = heads_only(config, slice_cache(caches["train"], rows),
                               subset(train, rows), settings)
            vectors = model.embed_trunk(caches["validation"].trunk[0]).numpy()
            record(arm, family, vectors)
            runs[-1]["train_s"] = round(time.time() - run_started, 1)
            runs[-1]["train_items"] = len(rows)
    headers = ["arm", *FAMILIES, "mean"]
    table = [[arm, *[scores[f] for f in FAMILIES], float(np.mean(list(scores.values())))]
             for arm, scores in arms.items()]
    markdown = ("# Leave-one-family-out (validation identities, image -> image R@1)\n\n"
                "Held-out family's drawings query the other styles' drawings of the validation "
                f"fold ({len(set(validation.labels))} identities, {len(validation.images)} "
                f"drawings). Heads-only proxy runs ({args.epochs} epochs, frozen tower, one "
                f"clean view); trunk cache {cache_s:.0f} s.\n\n"
                + markdown_table(headers, table))
    write("style_holdout", {"epochs": args.epochs, "families": FAMILIES,
                            "validation_items": len(validation.images),
                            "train_items": len(train.images), "runs": runs,
                            "recall@1": arms}, markdown)
    bar_chart("style_holdout", {row[0]: row[-1] for row in table}, "mean R@1 over families",
              "leave-one-family-out, validation identities")
    print(markdown)


if __name__ == "__main__":
    main()
