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
from mmsearch.encoders.data.captions import name_of
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.encoders.train.cache import TrainItems
from mmsearch.encoders.train.command import read_train_items
from mmsearch.encoders.train.validation import style_pair_recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--models", nargs="+", default=["emoji-v1", "emoji-v2"])
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()
    items = read_train_items([manifest_of(args.data, s) for s in TRAIN_STYLES], "validation")
    groups, labels = np.asarray(items.groups), list(items.labels)
    results, rows, name_rows = [], [], []
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
            one_style = style_pair_recall(vectors, items, (width,))[str(width)]
            results.append({"model": model, "width": width, "one_style_recall@1": one_style})
            rows.append((model, width, *per_style.values(),
                         float(np.mean(list(per_style.values()))), one_style))
        name_rows += name_queries(encoder, model, items, vectors, results)
    intro = ("# Validation fold: every style against the others (image -> image R@1)\n\n"
             f"{len(set(labels))} validation identities, {len(labels)} drawings; each "
             "style's drawings query all other styles' drawings (`mean`); `one style` is the "
             "mean over every ordered pair of styles, one against one (what picks the epoch "
             "in training). emoji-v1 saw these identities' google and twitter drawings and "
             "captions in training (optimistic).\n\n")
    headers = ("model", "width", *TRAIN_STYLES, "mean", "one style (pairs)")
    names = ("## Name -> image (d512)\n\nEach validation identity's name alone (what a "
             "user types) or its whole caption (name and keywords, what training sees) "
             "queries every validation drawing; any drawing of the identity is a hit.\n\n"
             + markdown_table(("model", "query", "R@1", "R@10"), name_rows))
    markdown = intro + markdown_table(headers, rows) + "\n\n" + names
    write("validation_styles", {"results": results},
          markdown + "\n\n![mean R@1](validation_styles.png)")
    bar_chart("validation_styles", {f"{r[0]} d{r[1]}": r[-2] for r in rows},
              "mean R@1 over query styles", "validation fold, every style vs the others")
    print(markdown)


def name_queries(encoder: Encoder, model: str, items: TrainItems, vectors: np.ndarray,
                 results: list[dict]) -> list[tuple]:
    """Name -> image at d512 with the name alone and with the whole caption."""
    caption_of = dict(zip(items.labels, items.captions, strict=True))
    labels = sorted(caption_of)
    rows = []
    for query, texts in (("name", [name_of(caption_of[label]) for label in labels]),
                         ("caption", [caption_of[label] for label in labels])):
        text = encoder.encode_texts(texts).vectors
        m = retrieval_metrics(at_width(text, 512), labels, at_width(vectors, 512),
                              list(items.labels))
        results.append({"model": model, "width": 512, "name_query": query, **m})
        rows.append((model, query, m["recall@1"], m["recall@10"]))
    return rows


if __name__ == "__main__":
    main()
