"""`mmsearch train encoder`: cache frozen features, train every loss at every width, fit
the fusion weights, save a model folder (model.json + heads + tuned tower tensors +
train.json) that `mmsearch export` turns into the ONNX models."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mmsearch.encoders.catalog import FusionSpec, LocalSpec, ModelConfig
from mmsearch.encoders.colour import fit_colour_head, image_histograms
from mmsearch.encoders.data.captions import name_of
from mmsearch.encoders.data.records import VALIDATION_PERCENT, in_validation, read_manifest
from mmsearch.encoders.errors import UsageError, check_at_least
from mmsearch.encoders.features import text_features
from mmsearch.encoders.heads import HeadSet, LinearHead, fit_pca_head
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width, fuse
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower, load_text_tower
from mmsearch.encoders.towers.base import ImageTower, TextTower
from mmsearch.encoders.train.augment import PRESETS, AugmentSpec
from mmsearch.encoders.train.cache import (
    FeatureCache,
    FrozenTrunk,
    TrainItems,
    build_cache,
    cache_key,
)
from mmsearch.encoders.train.loop import TrainSettings, train_embedder
from mmsearch.encoders.train.model import TrainableEmbedder, pretrained_tail, tail_outputs
from mmsearch.encoders.train.validation import (
    cross_group_recall,
    name_recall,
    style_pair_recall,
    validation_score,
)

TEXT_WEIGHTS = (0.25, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class TrainResult:
    model: TrainableEmbedder
    record: dict  # what train.json holds
    cache: FeatureCache
    items: TrainItems
    model_dir: Path


def read_train_items(manifests: list[Path], fold: str = "train",
                     validation_percent: int = VALIDATION_PERCENT) -> TrainItems:
    """Train-split items (the manifest's `split` field) with an image and a caption whose
    identity is in `fold` ("train" or "validation", `in_validation`); group = the
    manifest's file stem."""
    rows = []
    for manifest in manifests:
        for record in read_manifest(manifest):
            if (record.split == "train" and record.image and record.text and record.label
                    and fold == ("validation" if in_validation(record.label, validation_percent)
                                else "train")):
                rows.append((str(Path(manifest).parent / record.image), record.text,
                             record.label, Path(manifest).stem))
    if not rows:
        raise ValueError(f"no train-split items with image, text and label in the {fold} "
                         f"fold of {manifests}")
    return TrainItems(*(tuple(column) for column in zip(*rows, strict=True)))


def read_validation_items(manifests: list[Path], percent: int) -> TrainItems | None:
    """The validation fold, or None (said on stderr) when it is off or a small catalogue
    has no identity in it: the caption weight is then chosen on the train items."""
    validation = None
    if percent:
        with contextlib.suppress(ValueError):  # no identity of the catalogue falls in it
            validation = read_train_items(manifests, "validation", percent)
    if validation is None:
        print(f"no validation fold (--validation-percent {percent}): every train identity "
              "is trained on, the caption weight is chosen on the train items and train.json "
              "records no validation recall", file=sys.stderr)
    return validation


def fit_fusion(image: np.ndarray, text: np.ndarray, items: TrainItems, width: int
               ) -> tuple[FusionSpec, dict[str, float]]:
    """Pick the caption weight for stored items: image-only queries of the first group
    against fused items of the others (how users query a catalogue of fused items)."""
    if len(set(items.groups)) < 2:  # one manifest: no second drawing to match against
        return FusionSpec(), {}
    groups = np.asarray(items.groups)
    query_rows = np.nonzero(groups == sorted(set(items.groups))[0])[0]
    gallery_rows = np.nonzero(groups != groups[query_rows[0]])[0]
    labels = np.asarray(items.labels)
    ones = np.ones(len(gallery_rows), dtype=np.float32)
    scores: dict[str, float] = {}
    for weight in TEXT_WEIGHTS:
        spec = FusionSpec(1.0, weight)
        gallery = at_width(fuse(image[gallery_rows], text[gallery_rows], ones, ones, spec),
                           width)
        metrics = retrieval_metrics(at_width(image[query_rows], width),
                                    list(labels[query_rows]), gallery,
                                    list(labels[gallery_rows]))
        scores[str(weight)] = metrics["recall@1"]
    best = max(TEXT_WEIGHTS, key=lambda w: scores[str(w)])
    return FusionSpec(1.0, best), scores


def data_sources(manifests: list[Path]) -> dict[str, dict]:
    """The `sources.json` beside each manifest (packages, versions, licences, counts), by
    folder: what train.json records of the data a model was trained on."""
    found = {}
    for folder in sorted({Path(m).parent for m in manifests}):
        if (folder / "sources.json").is_file():
            found[str(folder)] = json.loads((folder / "sources.json").read_text())
    return found


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def code_version() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False).stdout.strip() or "unknown"


@dataclass(frozen=True)
class Prepared:
    """What a run trains from: the towers, the train items' trunk cache, and the
    validation fold's (clean view only; None without a fold)."""

    tower: ImageTower
    text_tower: TextTower
    cache: FeatureCache
    validation_cache: FeatureCache | None


def prepare(base: ModelConfig, items: TrainItems, views: int, tune_blocks: int,
            cache_dir: Path | None, augment_spec: AugmentSpec,
            validation: TrainItems | None, progress: bool) -> Prepared:
    """Load the towers and build (or load) the trunk caches; the cache file name hashes
    everything the features depend on, so a benchmark asking for the same run reuses it."""
    tower = load_image_tower(base.image_tower, base.local.grid)
    if tune_blocks and not hasattr(tower, "features"):
        raise ValueError("train.tune_blocks > 0 needs a tower with stages (mobilenetv2)")
    text_tower = load_text_tower(base.text_tower)
    spec = ImageSpec(base.image_tower.input_size, base.image_tower.mean, base.image_tower.std)
    weights_hash = hashlib.sha256(b"".join(
        t.numpy().tobytes()[:4096] for t in tower.state_dict().values())).hexdigest()

    def cached(fold: TrainItems, fold_views: int) -> FeatureCache:
        key = cache_key(base, fold, fold_views, tune_blocks, augment_spec, weights_hash)
        return build_cache(FrozenTrunk(tower, tune_blocks), text_tower, spec, fold,
                           fold_views, augment_spec,
                           cache_dir / f"encoder-{key}.npz" if cache_dir else None,
                           progress=progress)

    cache = cached(items, views)
    # clean images only: the validation fold is queried as-is
    validation_cache = cached(validation, 1) if validation is not None else None
    return Prepared(tower, text_tower, cache, validation_cache)


def with_names(cache: FeatureCache, text_tower: TextTower, items: TrainItems
               ) -> FeatureCache:
    """The cache plus each caption's name alone, encoded by the frozen text tower."""
    names = text_features(text_tower, [name_of(caption) for caption in items.captions])
    return replace(cache, names=names.astype(np.float32))


def initial_model(base: ModelConfig, tower: ImageTower, tune_blocks: int,
                  cache: FeatureCache, identities: int) -> TrainableEmbedder:
    """The embedder before training: heads start as PCA of the cached train features."""
    with torch.no_grad():
        pooled, cells = tail_outputs(pretrained_tail(tower, tune_blocks), base.local.grid,
                                     torch.from_numpy(cache.trunk[0].astype(np.float32)))
    return TrainableEmbedder(
        tower, tune_blocks, fit_pca_head(pooled.numpy(), base.width_max),
        fit_pca_head(cache.text, base.width_max),
        fit_pca_head(cells.reshape(-1, cells.shape[-1]).numpy(), base.local.dim), identities)


def train_model(base: ModelConfig, items: TrainItems, settings: TrainSettings, views: int,
                tune_blocks: int, cache_dir: Path | None, out: Path, name: str,
                augment_spec: AugmentSpec | None = None,
                validation: TrainItems | None = None) -> TrainResult:
    """The whole run: cache, train, fit fusion, save the model folder at `out`. With
    `validation` (identities training never sees) the caption weight is chosen there and
    the validation recall recorded; without it, on the train items."""
    started = time.time()
    augment_spec = augment_spec or AugmentSpec()
    torch.manual_seed(settings.seed)
    prepared = prepare(base, items, views, tune_blocks, cache_dir, augment_spec, validation,
                       settings.progress)
    cache = prepared.cache
    if settings.name_share > 0:
        cache = with_names(cache, prepared.text_tower, items)
    ids = sorted(set(items.labels))
    model = initial_model(base, prepared.tower, tune_blocks, cache, len(ids))
    chosen_on = validation or items
    chosen_cache = prepared.validation_cache or cache
    validate = None
    if validation is not None:
        validate = partial(validation_score, trunk=chosen_cache.trunk[0], items=validation,
                           widths=base.widths)
    history = train_embedder(model, cache, items.labels, base.widths, settings, validate)
    image, fusion_scores = save_model_folder(model, base, items, (chosen_on, chosen_cache),
                                             out, name)
    record = {
        "command": " ".join(["mmsearch", *sys.argv[1:]]) if sys.argv[0].endswith("mmsearch")
        else None,
        "code_version": code_version(), "seed": settings.seed, "views": views,
        "tune_blocks": tune_blocks, "settings": asdict(settings),
        "augment": asdict(augment_spec), "items": len(items.images), "identities": len(ids),
        "fusion_recall@1": fusion_scores, "fusion_chosen_on": (
            "validation" if validation is not None else "train"),
        "validation": None if validation is None else {
            "items": len(validation.images), "identities": len(set(validation.labels)),
            "cross_style_recall@1": cross_group_recall(image, validation, base.widths),
            "style_pair_recall@1": style_pair_recall(image, validation, base.widths),
            "name_recall": name_recall(model, prepared.text_tower, image, validation,
                                       base.widths)},
        "loss_history": history,
        "epoch_chosen": (None if validation is None else 1 + int(np.argmax(
            [entry["validation"] for entry in history]))),
        "seconds": round(time.time() - started, 1),
    }
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    return TrainResult(model, record, cache, items, out)


def save_model_folder(model: TrainableEmbedder, base: ModelConfig, items: TrainItems,
                      chosen: tuple[TrainItems, FeatureCache], out: Path, name: str
                      ) -> tuple[np.ndarray, dict]:
    """Fit the fusion weight on `chosen` (the validation fold where there is one) and the
    colour head on the train items, then write the model folder `mmsearch export` reads.
    Returns the chosen items' image embeddings and the fusion scores per caption weight."""
    chosen_items, chosen_cache = chosen
    image = model.embed_trunk(chosen_cache.trunk[0]).numpy()
    with torch.no_grad():
        text = model.text_forward(torch.from_numpy(chosen_cache.text)).numpy()
    fusion, fusion_scores = fit_fusion(image, text, chosen_items, base.widths[-1])
    tower_state = model.tower_state()
    heads = model.to_heads()
    if base.local.colour:
        heads = replace(heads, colour=colour_head(base, items))
    config = replace(base, name=name, fusion=fusion, head_kind="linear",
                     tower_weights="tower.safetensors" if tower_state else None,
                     notes=f"trained on {len(items.images)} train items, "
                     f"{len(set(items.labels))} identities")
    out.mkdir(parents=True, exist_ok=True)
    config.save(out)
    heads.save(out)
    if tower_state:
        from safetensors.torch import save_file

        save_file(tower_state, str(out / "tower.safetensors"))
    return image, fusion_scores


def colour_head(config: ModelConfig, items: TrainItems) -> LinearHead:
    """The colour cell's projection, fitted on the train items' clean images."""
    spec = config.image_tower
    histograms = image_histograms(list(items.images), spec.mean, spec.std, spec.input_size)
    return fit_colour_head(histograms, list(items.labels), config.local.dim)


def add_colour_head(model_dir: Path, items: TrainItems) -> ModelConfig:
    """Turn the colour cell on in a trained model folder (or refit it); nothing else in
    the folder changes, but the model_id does, so collections need a re-ingest."""
    config = ModelConfig.load(model_dir)
    config = replace(config, local=replace(config.local, colour=True))
    heads = replace(HeadSet.load(model_dir), colour=colour_head(config, items))
    heads.save(model_dir)
    config.save(model_dir)
    record_path = model_dir / "train.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    record["colour_head"] = {
        "command": " ".join(["mmsearch", *sys.argv[1:]]) if sys.argv[0].endswith("mmsearch")
        else None, "code_version": code_version(), "items": len(items.images),
        "identities": len(set(items.labels))}
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return config


def cmd_train_colour(args: argparse.Namespace, default_model_dir: Path) -> int:
    check_manifests(args.manifest)
    model_dir = args.model_dir or default_model_dir
    if not (Path(model_dir) / "model.json").is_file():
        raise UsageError("--model-dir", f"no model.json in {model_dir}")
    try:  # no train items, or fewer identities than local dims
        items = read_train_items(args.manifest)
        add_colour_head(Path(model_dir), items)
    except ValueError as exc:
        raise UsageError("--manifest", str(exc)) from None
    print(f"colour head fitted on {len(items.images)} train items; {model_dir} now has "
          f"{ModelConfig.load(Path(model_dir)).local.cells} local cells; run `mmsearch "
          "export` and re-ingest")
    return 0


def check_manifests(manifests: list[Path]) -> None:
    for manifest in manifests:
        if not Path(manifest).is_file():
            raise UsageError("--manifest", f"{manifest} not found (run `mmsearch data emoji`)")


def check_args(args: argparse.Namespace) -> None:
    """UsageError naming the first bad flag."""
    check_manifests(args.manifest)
    check_at_least({"--epochs": (args.epochs, 1), "--views": (args.views, 1),
                    "--tune-blocks": (args.tune_blocks, 0),
                    "--batch-identities": (args.batch_identities, 2),
                    "--instances": (args.instances, 2),
                    "--validation-percent": (args.validation_percent, 0)})
    if not 0.0 <= args.name_share <= 1.0:
        raise UsageError("--name-share", f"must be between 0 and 1, got {args.name_share}")
    if args.validation_percent > 50:
        raise UsageError("--validation-percent", f"must be <= 50, got {args.validation_percent}")


def cmd_train_encoder(args: argparse.Namespace, widths: tuple[int, ...], models_dir: Path
                      ) -> int:
    check_args(args)
    items = read_train_items(args.manifest, validation_percent=args.validation_percent)
    validation = read_validation_items(args.manifest, args.validation_percent)
    base = ModelConfig(widths=widths, width_max=widths[-1],
                       local=LocalSpec(colour=args.colour))
    settings = TrainSettings(epochs=args.epochs, batch_identities=args.batch_identities,
                             instances=args.instances, name_share=args.name_share,
                             seed=args.seed, progress=True)
    out = args.out or models_dir / args.name
    record = train_model(base, items, settings, args.views, args.tune_blocks, args.cache, out,
                         args.name, augment_spec=PRESETS[args.augment],
                         validation=validation).record
    record["data"] = {str(m): _sha256(Path(m)) for m in args.manifest}
    record["sources"] = data_sources(args.manifest)
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    last = record["loss_history"][-1]
    print(f"encoder trained in {record['seconds']} s on {record['items']} items; final loss "
          + ", ".join(f"{k}={v:.3f}" for k, v in last.items()) + f"; model folder {out}")
    return 0
