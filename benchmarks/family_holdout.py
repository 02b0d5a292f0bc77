"""Leave-one-family-out with the shipped recipe (issue 15): full training runs, one per
held-out family, measured on validation identities only (test identities untouched).

`style_holdout` chose with heads-only proxies; this trains the finalist exactly as
`make train-emoji-v2` does (tuned stages, views, augmentation, instances, epochs chosen on
validation) but on every style outside the held-out family. The held-out family's
validation drawings then query the other styles' validation drawings: the honest estimate
of what a catalogue in a new style gets. The epoch is chosen on the training styles'
validation drawings only, so the held-out family influences nothing.

The trunk cache is the shipped run's own (same items, views, stages and augmentation, so
the same file): a held-out run slices its rows and costs only its epochs.

    python -m benchmarks.family_holdout [--families fluent] [--epochs 30]
        [--record-in models/emoji-v2/train.json] [--save-models .cache/crossfit]
        (needs mmsearch data emoji + styles)

`--save-models DIR` also writes each run as a model folder `DIR/emoji-v2-no-<family>`,
exports it to `DIR/export/emoji-v2-no-<family>` (ONNX, no int8) and lists the runs so far
in `DIR/cross-fit.txt` as `mmsearch train reranker --cross-fit` values: each an embedder
that never saw the family's styles, the one that mines the scorer's lists for them.
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import bar_chart, markdown_table, write
from benchmarks.style_holdout import (
    FAMILIES,
    holdout_metrics,
    manifests,
    rows_of,
    slice_cache,
    subset,
)
from mmsearch.encoders.catalog import LocalSpec, ModelConfig
from mmsearch.encoders.train.augment import PRESETS
from mmsearch.encoders.train.cache import FeatureCache, TrainItems
from mmsearch.encoders.train.command import (
    code_version,
    initial_model,
    prepare,
    read_train_items,
    save_model_folder,
    with_names,
)
from mmsearch.encoders.train.loop import TrainSettings, train_embedder
from mmsearch.encoders.train.model import TrainableEmbedder, pretrained_tail, tail_outputs
from mmsearch.encoders.train.validation import style_pair_recall, validation_score

WIDTHS = (64, 512)
# the shipped emoji-v2 recipe (Makefile train-emoji-v2)
RECIPE = {"views": 3, "tune_blocks": 3, "augment": "query-noise", "instances": 4,
          "name_share": 0.0}


def write_page(runs: list[dict], epochs: int, cache_s: float | None,
               record_in: Path | None) -> None:
    """The results page (and the train.json record) for the runs finished so far."""
    table = [[run["family"], run["raw_any_style_recall@1"], run["any_style_recall@1_d64"],
              run["any_style_recall@1_d512"], run["style_pair_recall@1_d64"],
              run["style_pair_recall@1_d512"], run["epoch_chosen"], run["seconds"]]
             for run in runs]
    headers = ["held-out family", "raw any style", "any style d64", "any style d512",
               "one style d64", "one style d512", "epoch chosen", "train s"]
    markdown = (
        "# Leave-one-family-out, full recipe (validation identities)\n\n"
        f"One run per held-out family with the shipped recipe ({RECIPE}, up to "
        f"{epochs} epochs chosen on the training styles' validation drawings); the "
        "held-out family's validation drawings query the other styles' (`any style`: all "
        "of them at once; `one style`: each other style alone, mean over pairs). Raw = "
        "MobileNetV2 pooled features. Trunk cache shared with the shipped run"
        + (f" ({cache_s} s to load or build)" if cache_s is not None else "")
        + ".\n\n" + markdown_table(headers, table))
    write("family_holdout", {"recipe": RECIPE, "families": FAMILIES, "runs": runs}, markdown)
    bar_chart("family_holdout", {row[0]: row[5] for row in table},
              "one-style R@1 d512, held-out family", "leave-one-family-out, full recipe")
    if record_in is not None:
        record = json.loads(record_in.read_text())
        record["leave_one_family_out"] = {"recipe": RECIPE, "runs": runs}
        record_in.write_text(json.dumps(record, indent=2) + "\n")
    print(markdown)


def save_run(model: TrainableEmbedder, base: ModelConfig, items: TrainItems,
             chosen: tuple[TrainItems, FeatureCache], out: Path, run: dict) -> Path:
    """The run as a model folder (its train.json naming the styles it never saw),
    exported for ONNX Runtime; returns the export folder."""
    from mmsearch.encoders.export import export_onnx

    save_model_folder(model, base, items, chosen, out, out.name)
    record = {"recipe": RECIPE, "code_version": code_version(),
              "styles": sorted(set(items.groups)), **run}
    (out / "train.json").write_text(json.dumps(record, indent=2) + "\n")
    exported = out.parent / "export" / out.name
    export_onnx(out, exported, [])
    return exported


def cross_fit_value(exported: Path, styles: tuple[str, ...]) -> str:
    """`EXPORT_DIR=STYLE.jsonl[,...]`, what `mmsearch train reranker --cross-fit` reads."""
    found = manifests()
    return f"{exported}=" + ",".join(str(found[style]) for style in styles)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", choices=sorted(FAMILIES),
                        default=sorted(FAMILIES))
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"))
    parser.add_argument("--record-in", type=Path, default=None,
                        help="a train.json to record the runs and results in")
    parser.add_argument("--save-models", type=Path, default=None,
                        help="write each run's model folder here (emoji-v2-no-<family>)")
    args = parser.parse_args()
    paths = list(manifests().values())
    train, validation = read_train_items(paths), read_train_items(paths, "validation")
    base = ModelConfig(local=LocalSpec(colour=True))
    started = time.time()
    prepared = prepare(base, train, RECIPE["views"], RECIPE["tune_blocks"], args.cache,
                       PRESETS[RECIPE["augment"]], validation, progress=True)
    full_cache = prepared.cache
    if RECIPE["name_share"] > 0:
        full_cache = with_names(full_cache, prepared.text_tower, train)
    cache_s = round(time.time() - started, 1)
    assert prepared.validation_cache is not None
    val_trunk = prepared.validation_cache.trunk[0]
    with torch.no_grad():
        raw, _ = tail_outputs(pretrained_tail(prepared.tower, RECIPE["tune_blocks"]),
                              base.local.grid, torch.from_numpy(val_trunk.astype(np.float32)))
    runs: list[dict] = []
    cross_fit: list[str] = []
    for family in args.families:
        styles = FAMILIES[family]
        train_rows = rows_of(train, set(train.groups) - set(styles))
        val_rows = rows_of(validation, set(validation.groups) - set(styles))
        items = subset(train, train_rows)
        cache = slice_cache(full_cache, train_rows)
        torch.manual_seed(0)
        model = initial_model(base, prepared.tower, RECIPE["tune_blocks"], cache,
                              len(set(items.labels)))
        validate = partial(validation_score, trunk=val_trunk[val_rows],
                           items=subset(validation, val_rows), widths=base.widths)
        settings = TrainSettings(epochs=args.epochs, instances=RECIPE["instances"],
                                 name_share=RECIPE["name_share"], progress=True)
        run_started = time.time()
        history = train_embedder(model, cache, items.labels, base.widths, settings, validate)
        vectors = model.embed_trunk(val_trunk).numpy()
        run = {"family": family, "held_out_styles": list(styles),
               "train_items": len(items.images), "train_identities": len(set(items.labels)),
               "epochs": args.epochs, "seconds": round(time.time() - run_started, 1),
               "epoch_chosen": 1 + int(np.argmax([h["validation"] for h in history])),
               "validation_of_training_styles": [round(h["validation"], 4) for h in history],
               "raw_any_style_recall@1": holdout_metrics(raw.numpy(), validation, styles,
                                                         None)["recall@1"]}
        for width in WIDTHS:
            run[f"any_style_recall@1_d{width}"] = holdout_metrics(
                vectors, validation, styles, width)["recall@1"]
            run[f"style_pair_recall@1_d{width}"] = style_pair_recall(
                vectors, validation, (width,), frozenset(styles))[str(width)]
        if args.save_models is not None:
            exported = save_run(model, base, items, (
                subset(validation, val_rows), slice_cache(prepared.validation_cache, val_rows)),
                args.save_models / f"emoji-v2-no-{family}", run)
            cross_fit.append(cross_fit_value(exported, styles))
            (args.save_models / "cross-fit.txt").write_text("\n".join(cross_fit) + "\n")
        runs.append(run)
        print(json.dumps(run), flush=True)
        write_page(runs, args.epochs, cache_s, args.record_in)  # after each family


if __name__ == "__main__":
    main()
