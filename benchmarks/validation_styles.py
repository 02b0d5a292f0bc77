"""Model selection on the validation fold (issue 15): trained models side by side on the
train identities that training keeps out (`in_validation`), never on test identities.

Each training style's validation drawings query every other style's validation drawings
(image -> image, exported ONNX models as served); R@1 per style and the mean over styles,
at every width the models share. This is the number `train.json` records for the model it
trains (`validation.cross_style_recall@1`); here the candidates meet in one run.
emoji-v1 predates the validation fold: its tower and heads saw these identities in google
and twitter, so its numbers are optimistic.

    python -m benchmarks.validation_styles [--models emoji-v1 emoji-v2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._report import bar_chart, markdown_table, write
from benchmarks.style_matrix import TRAIN_STYLES, manifest_of
from mmsearch.encoders import load_encoder
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width
from mmsearch.encoders.train.command import read_train_items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--models", nargs="+", default=["emoji-v1", "emoji-v2"])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    items = read_train_items([manifest_of(args.data, s) for s in TRAIN_STYLES], "validation")
    groups, labels = np.asarray(items.groups), list(items.labels)
    results, rows = [], []
    for model in args.models:
        encoder = load_encoder("onnx", export_dir=args.models_dir / "export" / model)
        vectors = encoder.encode_images(list(items.images)).vectors
        for width in (64, 512):
            per_style = {}
            for style in TRAIN_STYLES:
                query, gallery = groups == style, groups != style
                m = retrieval_metrics(at_width(vectors[query], width),
                                      [labels[i] for i in np.flatnonzero(query)],
                                      at_width(vectors[gallery], width),
                                      [labels[i] for i in np.flatnonzero(gallery)])
                per_style[style] = m["recall@1"]
                results.append({"model": model, "width": width, "query_style": style, **m})
            rows.append((model, width, *per_style.values(),
                         float(np.mean(list(per_style.values())))))
    intro = ("# Validation fold: every style against the others (image -> image R@1)\n\n"
             f"{len(set(labels))} validation identities, {len(labels)} drawings; each "
             "style's drawings query all other styles' drawings. emoji-v1 saw these "
             "identities' google and twitter drawings in training (optimistic).\n\n")
    write("validation_styles", {"results": results},
          intro + markdown_table(("model", "width", *TRAIN_STYLES, "mean"), rows)
          + "\n\n![mean R@1](validation_styles.png)")
    bar_chart("validation_styles", {f"{r[0]} d{r[1]}": r[-1] for r in rows},
              "mean R@1 over query styles", "validation fold, every style vs the others")
    print(intro + markdown_table(("model", "width", *TRAIN_STYLES, "mean"), rows))


if __name__ == "__main__":
    main()
