"""What `SearchOptions.min_score` keeps: precision and recall of "relevant" when replies are
cut at a threshold on the calibrated rerank score, on test identities (never trained on).

Directions: google->twitter and twitter->google (the styles the models were trained on),
openmoji->google and openmoji->twitter (a style never trained on). Each query runs the
sidecar's stages offline (exact d64 ANN for 200 candidates, full-width refine, the shipped
scorer on the head of 64 at the served chunk size, as benchmarks/rerank_quality.py does).
A hit is relevant when it shows the query's identity. At threshold t:
- precision = relevant hits with score >= t / hits with score >= t;
- recall = relevant hits with score >= t / relevant items in the gallery;
- kept = hits with score >= t per query.
The threshold for precision >= 0.9 is the lowest t on a 0.01 grid where it holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from benchmarks.rerank_quality import SERVED, evaluate
from mmsearch.encoders import load_encoder
from mmsearch.rerank.scorer import OnnxScorer
from mmsearch.rerank.train.emoji import encode_side
from mmsearch.rerank.train.lists import Side

DIRECTIONS = (("google", "twitter"), ("twitter", "google"), ("openmoji", "google"),
              ("openmoji", "twitter"))
THRESHOLDS = tuple(round(0.1 * k, 1) for k in range(1, 10))
TARGET_PRECISION = 0.9


def at_thresholds(pairs: list[tuple[float, bool]], relevant_total: int, queries: int,
                  thresholds: tuple[float, ...]) -> list[dict[str, float]]:
    scores = np.array([p for p, _ in pairs])
    relevant = np.array([r for _, r in pairs], bool)
    out = []
    for t in thresholds:
        kept = scores >= t
        out.append({"threshold": t,
                    "precision": float(relevant[kept].mean()) if kept.any() else float("nan"),
                    "recall": float((relevant & kept).sum() / max(1, relevant_total)),
                    "kept_per_query": float(kept.sum() / queries)})
    return out


def threshold_for(pairs: list[tuple[float, bool]], relevant_total: int, queries: int
                  ) -> dict[str, float] | None:
    grid = tuple(round(0.01 * k, 2) for k in range(1, 100))
    for row in at_thresholds(pairs, relevant_total, queries, grid):
        if row["precision"] >= TARGET_PRECISION:
            return row
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/emoji-v1"))
    parser.add_argument("--scorer", type=Path, default=Path("models/export/scorer"))
    args = parser.parse_args()
    encoder = load_encoder("onnx", export_dir=args.export_dir)
    cache = Path(".cache/features")
    sides: dict[str, Side] = {v: encode_side(encoder, args.data, v, "test", cache)
                              for v in ("google", "twitter", "openmoji")}
    scorer = OnnxScorer(args.scorer, chunk_size=SERVED)
    results = []
    for query_style, gallery_style in DIRECTIONS:
        queries, gallery = sides[query_style], sides[gallery_style]
        _, pairs = evaluate(queries, gallery, scorer)
        relevant_total = int(sum((gallery.labels == label).sum() for label in queries.labels))
        rows = at_thresholds(pairs, relevant_total, len(queries.labels), THRESHOLDS)
        results.append({"direction": f"{query_style}->{gallery_style}",
                        "trained_style": query_style != "openmoji",
                        "queries": len(queries.labels), "relevant_in_gallery": relevant_total,
                        "thresholds": rows,
                        "precision_0.9": threshold_for(pairs, relevant_total,
                                                       len(queries.labels))})
        print(results[-1]["direction"], results[-1]["precision_0.9"], flush=True)
    write("min_score", {"results": results, "chunk_size": SERVED}, markdown(results))
    plot(results)
    print(markdown(results))


def markdown(results: list[dict]) -> str:
    rows = []
    for r in results:
        for row in r["thresholds"]:
            rows.append((r["direction"], row["threshold"], f"{row['precision']:.3f}",
                         f"{row['recall']:.3f}", f"{row['kept_per_query']:.2f}"))
    table = markdown_table(("direction", "min_score", "precision", "recall", "hits kept per "
                            "query"), rows)
    target_rows = [(r["direction"], "trained-on" if r["trained_style"] else "never trained on",
                    *((f"{t['threshold']:.2f}", f"{t['precision']:.3f}", f"{t['recall']:.3f}",
                       f"{t['kept_per_query']:.2f}") if (t := r["precision_0.9"]) else
                      ("not reached", "-", "-", "-")))
                   for r in results]
    target = markdown_table(("direction", "style", "lowest min_score with precision >= 0.9",
                             "precision", "recall", "hits kept per query"), target_rows)
    return ("# min_score: precision and recall of the calibrated rerank score\n\n"
            "Test identities only (never trained on); image-only queries against an "
            "image-only gallery of another style; 200 candidates, refine, the shipped scorer "
            f"on the head of 64 in chunks of {SERVED}. `min_score` keeps the hits whose "
            "calibrated P(relevant) is at least the threshold; it applies only when rerank "
            "ran. Recall counts every relevant item in the gallery, so the head's depth caps "
            "it.\n\n## Where precision reaches 0.9\n\n" + target
            + "\n\n## By threshold\n\n" + table + "\n\n![min_score](min_score.png)\n")


def plot(results: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        rows = r["thresholds"]
        ax.plot([row["recall"] for row in rows], [row["precision"] for row in rows], "o-",
                label=r["direction"])
    ax.axhline(TARGET_PRECISION, color="grey", linestyle=":")
    ax.set(xlabel="recall", ylabel="precision", title="min_score 0.1 ... 0.9")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "min_score.png", dpi=110)


if __name__ == "__main__":
    main()
