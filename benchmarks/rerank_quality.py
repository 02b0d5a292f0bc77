"""Rerank quality and speed on test identities (never trained on), image-only queries
against an image-only gallery: google<->twitter and openmoji (a style never trained on)
-> google and -> twitter.

Stages: ANN = exact search at width 64 (what a FLAT index returns; the index's own recall
is the DBA benchmark's business), 200 candidates; refine = full-width cosine; rerank = the
scorer on the refined head (depth 64, chunks of the sidecar's default size, one ONNX
batch). Ablations retrain the scorer without local features / without candidate-to-
candidate attention / without the colour cell (same lists, seed and settings) and vary the
chunk size at inference. ECE: 10 equal-width bins of the calibrated probability over every
reranked candidate. Speed: ONNX Runtime CPU, p50/p99 over 300 calls.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from mmsearch.app.config import ServerConfig
from mmsearch.encoders import load_encoder
from mmsearch.encoders.mrl import at_width
from mmsearch.rerank.scorer import OnnxScorer
from mmsearch.rerank.scorer.export import export_scorer, load_checkpoint, save_checkpoint
from mmsearch.rerank.scorer.model import ScorerConfig
from mmsearch.rerank.train.command import joined, training_pairs
from mmsearch.rerank.train.crossfit import CrossFit, cross_fit_pairs
from mmsearch.rerank.train.emoji import encode_fused, encode_side
from mmsearch.rerank.train.heldout import held_out_pairs
from mmsearch.rerank.train.lists import Side
from mmsearch.rerank.train.loop import TrainSettings, train

CANDIDATES, DEPTH = 200, 64
IMAGE_DIRECTIONS = (("google", "twitter"), ("twitter", "google"), ("openmoji", "google"),
                    ("openmoji", "twitter"))
SERVED = ServerConfig().chunk_size  # the sidecar's default chunk: the headline rows


def evaluate(queries: Side, gallery: Side, scorer: OnnxScorer | None, depth: int = DEPTH,
             by_id: bool = False) -> tuple[dict[str, dict[str, float]], list[tuple[float, bool]]]:
    """by_id: queries are the gallery's own items (a query by stored id), self excluded."""
    coarse = at_width(queries.vectors, 64) @ at_width(gallery.vectors, 64).T
    if by_id:
        np.fill_diagonal(coarse, -np.inf)
    candidates = np.argsort(-coarse, axis=1)[:, :CANDIDATES]
    orders: dict[str, list[np.ndarray]] = {"ann": [], "refine": [], "rerank": []}
    calibration: list[tuple[float, bool]] = []
    for i, cand in enumerate(candidates):
        refine_scores = gallery.vectors[cand] @ queries.vectors[i]
        refined = cand[np.argsort(-refine_scores)]
        orders["ann"].append(cand)
        orders["refine"].append(refined)
        if scorer is None:
            continue
        head = refined[:depth]
        probs = scorer.rerank(queries.vectors[i], queries.local[i], gallery.vectors[head],
                              gallery.local[head], np.ones(len(head), bool),
                              np.sort(refine_scores)[::-1][:depth].astype(np.float32))
        orders["rerank"].append(np.concatenate([head[np.argsort(-probs, kind="stable")],
                                                refined[depth:]]))
        calibration += list(zip(probs.tolist(),
                                (gallery.labels[head] == queries.labels[i]).tolist(),
                                strict=True))
    return ({name: metrics(queries, gallery, o, by_id) for name, o in orders.items() if o},
            calibration)


def metrics(queries: Side, gallery: Side, orders: list[np.ndarray], by_id: bool = False
            ) -> dict[str, float]:
    relevant = np.array([gallery.labels[o] == queries.labels[i] for i, o in enumerate(orders)])
    discounts = 1 / np.log2(np.arange(2, 12))
    counts = np.array([(gallery.labels == label).sum() for label in queries.labels])
    counts -= int(by_id)  # the query itself is never a result
    ideal = np.array([discounts[: max(1, min(c, 10))].sum() for c in counts])
    r = np.maximum(counts, 1)
    ap = [(np.cumsum(rel[:k]) / np.arange(1, k + 1) * rel[:k]).sum() / k
          for rel, k in zip(relevant, r, strict=True)]
    has = counts > 0
    return {"recall@1": float(relevant[has, 0].mean()),
            "recall@10": float(relevant[has, :10].any(1).mean()),
            "map@r": float(np.mean(np.asarray(ap)[has])),
            "ndcg@10": float(((relevant[:, :10] * discounts).sum(1) / ideal)[has].mean())}


def ece(pairs: list[tuple[float, bool]], bins: int = 10) -> float:
    probs = np.array([p for p, _ in pairs])
    truth = np.array([t for _, t in pairs], dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        inside = (probs >= low) & ((probs < high) | (high == 1))
        if inside.any():
            total += inside.mean() * abs(probs[inside].mean() - truth[inside].mean())
    return float(total)


def latency(scorer: OnnxScorer, side: Side, count: int, runs: int = 300) -> dict[str, float]:
    rng = np.random.default_rng(0)
    times = []
    for _ in range(runs):
        idx = rng.choice(len(side.labels), count, replace=False)
        args = (side.vectors[idx[0]], side.local[idx[0]], side.vectors[idx], side.local[idx],
                np.ones(count, bool), np.zeros(count, np.float32))
        started = time.perf_counter()
        scorer.rerank(*args)
        times.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def fit_cells(scorer: ScorerConfig | OnnxScorer, *sides: Side) -> list[Side]:
    """Sides with the local rows a scorer reads: the no-colour ablation drops the last."""
    return [replace(side, local=side.local[:, :scorer.cells]) for side in sides]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/emoji-v1"))
    parser.add_argument("--scorer", type=Path, default=Path("models/scorer"))
    parser.add_argument("--output", default="rerank_quality",
                        help="results name (another model's page beside the shipped one)")
    parser.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=True,
                        help="retrain the scorer without each part on the same lists")
    args = parser.parse_args()
    encoder = load_encoder("onnx", export_dir=args.export_dir)
    cache = Path(".cache/features")
    sides = {(v, s): encode_side(encoder, args.data, v, s, cache)
             for v in ("google", "twitter") for s in ("train", "test")}
    sides[("openmoji", "test")] = encode_side(encoder, args.data, "openmoji", "test", cache)
    shipped, meta = load_checkpoint(args.scorer)
    work = Path(tempfile.mkdtemp(prefix="mmsearch-rerank-bench-"))
    variants = {"shipped": export_scorer(args.scorer, work / "shipped")}
    settings = TrainSettings(**{k: v for k, v in meta["train"].items() if k != "progress"})
    # the ablations train on exactly the shipped scorer's lists
    pairs = training_pairs(encoder, args.data, cache, meta.get("depth", 64),
                           meta.get("fused_lists", False), meta.get("query_views", 0))
    if meta.get("held_out"):
        pairs += held_out_pairs(encoder, [Path(m) for m in meta["held_out"]],
                                meta.get("depth", 64), cache, meta.get("query_views", 0))
    crossfits = [CrossFit(Path(c["embedder"]), tuple(Path(m) for m in c["styles"]))
                 for c in meta.get("cross_fit", [])]
    if crossfits:
        pairs += cross_fit_pairs(crossfits, [Path(m) for m in meta["held_out"]],
                                 meta.get("depth", 64), cache)
    q, g, lists = joined(pairs) if args.ablations else (None, None, None)
    ablations = [("no local features", {"use_local": False}),
                 ("no candidate attention", {"cross_attention": False})]
    if not args.ablations:
        ablations = []
    elif shipped.config.colour:
        ablations.append(("no colour cell", {"colour": False,
                                             "cells": shipped.config.cells - 1}))
    for name, change in ablations:
        # trained at full correction, then given the shipped scorer's weight and scaling
        config = replace(shipped.config, correction_weight=1.0, calibration_scale=1.0,
                         calibration_bias=0.0, **change)
        model, _ = train(config, *fit_cells(config, q, g), lists, settings)
        model.config = replace(model.config, **{
            key: getattr(shipped.config, key)
            for key in ("correction_weight", "calibration_scale", "calibration_bias")})
        save_checkpoint(model, work / name, meta)
        variants[name] = export_scorer(work / name, work / f"{name}-onnx")
    rows, results = [], []
    fused = encode_fused(encoder, args.data, ("google", "twitter"), "test", cache)
    for a, b in (*IMAGE_DIRECTIONS, ("by id", "fused")):
        queries, gallery = (fused, fused) if a == "by id" else (sides[(a, "test")],
                                                                sides[(b, "test")])
        runs = [(f"{v} chunk {SERVED}", OnnxScorer(p, SERVED)) for v, p in variants.items()]
        runs += [(f"shipped chunk {c}", OnnxScorer(variants["shipped"], c))
                 for c in (8, 16, 32, DEPTH) if c != SERVED]
        for label, scorer in runs:
            stage_metrics, pairs = evaluate(*fit_cells(scorer, queries, gallery), scorer,
                                            by_id=a == "by id")
            for stage, m in stage_metrics.items():
                if stage != "rerank" and label != f"shipped chunk {SERVED}":
                    continue
                name = stage if stage != "rerank" else f"rerank ({label})"
                calibration = ece(pairs) if stage == "rerank" else None
                results.append({"direction": f"{a}->{b}", "stage": name, **m, "ece": calibration})
                rows.append((f"{a}->{b}", name, m["recall@1"], m["recall@10"], m["map@r"],
                             m["ndcg@10"], "-" if calibration is None else f"{calibration:.3f}"))
    scorer = OnnxScorer(variants["shipped"], SERVED)
    speed = {n: latency(scorer, sides[("google", "test")], n) for n in (100, 200)}
    table = markdown_table(("direction", "stage", "R@1", "R@10", "mAP@R", "nDCG@10", "ECE"),
                           rows)
    speed_table = markdown_table(("candidates", "p50 ms", "p99 ms"),
                                 [(n, s["p50_ms"], s["p99_ms"]) for n, s in speed.items()])
    intro = ("# Rerank quality and speed\n\nTest identities only; ANN = exact top-200 at "
             "width 64; refine = full-width cosine; rerank = shipped scorer on the refined "
             f"top {DEPTH} (chunks of {SERVED}, the sidecar's default, unless stated; trained on "
             "chunks of 16). google<->twitter and openmoji (never trained on) -> each "
             "are image-only queries against an image-only gallery; `by id->fused` "
             "queries each stored item by its id in a gallery of both vendors' fused "
             "(image + caption) items, self excluded, the way the sidecar and the demo "
             "search. Scorer trained with: "
             f"`{meta.get('command', '')}` on embedder {meta.get('embedder_model_id')}.\n\n")
    write(args.output, {"results": results, "speed": speed, "scorer": meta},
          intro + table + "\n\n" + against_targets(results)
          + "\n\n## Rerank latency (ONNX Runtime CPU, all chunks one batch)\n\n"
          + speed_table + f"\n\n![R@1 by stage]({args.output}.png)")
    plot(results, args.output)
    print(intro + table + "\n\n" + speed_table)


def against_targets(results: list[dict]) -> str:
    """The issue's targets for the image-only directions: rerank vs refine."""
    lines = ["## Against the targets (image-only; rerank at the served chunk size vs refine)",
             "", "| direction | R@1 gain (>= +3 pts) | nDCG@10 gain (>= +0.03) | ECE (<= 0.05) |",
             "|---|---|---|---|"]
    for direction in (f"{a}->{b}" for a, b in IMAGE_DIRECTIONS):
        rows = {r["stage"]: r for r in results if r["direction"] == direction}
        refine, rerank = rows["refine"], rows[f"rerank (shipped chunk {SERVED})"]
        recall = (rerank["recall@1"] - refine["recall@1"]) * 100
        ndcg = rerank["ndcg@10"] - refine["ndcg@10"]
        lines.append(f"| {direction} | {recall:+.1f} pts ({'met' if recall >= 3 else 'NOT met'}) "
                     f"| {ndcg:+.3f} ({'met' if ndcg >= 0.03 else 'NOT met'}) "
                     f"| {rerank['ece']:.3f} ({'met' if rerank['ece'] <= 0.05 else 'NOT met'}) |")
    return "\n".join(lines)


def plot(results: list[dict], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    directions = sorted({r["direction"] for r in results})
    stages = [r["stage"] for r in results if r["direction"] == directions[0]]
    width = 0.8 / len(directions)
    for i, direction in enumerate(directions):
        values = [next(r["recall@1"] for r in results
                       if r["direction"] == direction and r["stage"] == s) for s in stages]
        ax.bar(np.arange(len(stages)) + i * width, values, width, label=direction)
    ax.set_xticks(np.arange(len(stages)) + width / 2, stages, rotation=30, ha="right",
                  fontsize=7)
    ax.set_ylabel("Recall@1")
    ax.set_title("Recall@1 by stage and ablation (test identities)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
