"""Funnel (ANN at width 64 -> exact refine at 512) vs a direct ANN at 512, at 1M vectors:
QPS at equal recall@10 against the exact width-512 answer. In-process faiss (IVF_FLAT,
the index family Milvus uses at this scale); batch-1 queries, 2 cores.

Vectors are synthetic but shaped like ours: per-dimension spread taken from the real
embeddings (encoded emoji, PCA baseline head), identities as clusters of 5 draws, queries
as new draws of stored identities. Matryoshka prefixes are meaningful because the spread
falls with the dimension index, as it does in the real vectors.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def spread_from_real(cache: Path, width: int) -> np.ndarray:
    files = sorted(cache.glob("*-train-*.npz"))
    if not files:
        raise FileNotFoundError(f"no encoded vectors in {cache}: run `mmsearch train reranker`"
                                " or benchmarks/rerank_quality.py first")
    vectors = np.concatenate([np.load(f)["vectors"] for f in files])
    return vectors[:, :width].std(axis=0)


def make_data(spread: np.ndarray, items: int, queries: int, seed: int
              ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((items // 5, len(spread))).astype(np.float32) * spread
    base = np.empty((items, len(spread)), np.float32)
    for start in range(0, items, 100_000):  # chunks keep the peak memory low
        idx = np.arange(start, min(items, start + 100_000))
        noise = rng.standard_normal((len(idx), len(spread))).astype(np.float32) * spread * 0.6
        base[idx] = unit(centres[idx // 5] + noise)
    picks = rng.integers(0, len(centres), queries)
    q = unit(centres[picks] + rng.standard_normal((queries, len(spread))).astype(np.float32)
             * spread * 0.6)
    return base, q


def exact_top(base: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), 50):
        scores = queries[start : start + 50] @ base.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[start : start + 50] = np.take_along_axis(top, order, 1)
    return out


def ivf(vectors: np.ndarray, nlist: int, seed: int):  # noqa: ANN201
    import faiss

    quantizer = faiss.IndexFlatIP(vectors.shape[1])
    index = faiss.IndexIVFFlat(quantizer, vectors.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    sample = np.random.default_rng(seed).choice(len(vectors), min(len(vectors), nlist * 40),
                                                replace=False)
    index.train(vectors[np.sort(sample)])
    index.add(vectors)
    return index


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                          strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"))
    args = parser.parse_args()
    spread = spread_from_real(args.cache, 512)
    base, queries = make_data(spread, args.items, args.queries, seed=0)
    truth = exact_top(base, queries, 10)
    coarse = unit(base[:, :64])
    coarse_q = unit(queries[:, :64])
    started = time.perf_counter()
    small = ivf(coarse, args.nlist, 0)
    build_small = time.perf_counter() - started
    started = time.perf_counter()
    full = ivf(base, args.nlist, 0)
    build_full = time.perf_counter() - started
    points = []
    for nprobe in (4, 8, 16, 32, 64, 128, 256):
        full.nprobe = nprobe
        started = time.perf_counter()
        found = np.stack([full.search(q[None], 10)[1][0] for q in queries])
        qps = len(queries) / (time.perf_counter() - started)
        points.append({"method": "direct d512", "nprobe": nprobe, "candidates": 10,
                       "recall@10": recall(found, truth), "qps": qps})
        small.nprobe = nprobe
        for candidates in (50, 100, 200, 400):
            started = time.perf_counter()
            found = []
            for q, q64 in zip(queries, coarse_q, strict=True):
                ids = small.search(q64[None], candidates)[1][0]
                ids = ids[ids >= 0]
                scores = base[ids] @ q  # refine: exact cosine at full width
                found.append(ids[np.argsort(-scores)[:10]])
            qps = len(queries) / (time.perf_counter() - started)
            points.append({"method": "funnel d64->d512", "nprobe": nprobe,
                           "candidates": candidates,
                           "recall@10": recall(np.stack(found), truth), "qps": qps})
    table = summary_table(points)
    sweep = markdown_table(("method", "nprobe", "candidates", "recall@10", "QPS"),
                           [(p["method"], p["nprobe"], p["candidates"], p["recall@10"], p["qps"])
                            for p in points])
    intro = (f"# Funnel vs direct search at {args.items:,} vectors\n\nIn-process faiss "
             f"IVF_FLAT (nlist {args.nlist}), batch-1 queries, {args.queries} queries, "
             "recall@10 against the exact width-512 top 10. **Synthetic vectors** shaped like "
             "the real embeddings (see the script's docstring). Index build: d64 "
             f"{build_small:.1f} s, d512 {build_full:.1f} s. This is the index cost alone; "
             "through a real Milvus 2.3.5 server the per-call and fetch costs change the "
             "picture: see [funnel_milvus.md](funnel_milvus.md).\n\n")
    write("funnel", {"points": points, "build_s": {"d64": build_small, "d512": build_full}},
          intro + table + "\n\n## Sweep\n\n" + sweep + "\n\n![recall vs QPS](funnel.png)")
    plot(points, RESULTS / "funnel.png", "QPS (batch 1, log)",
         "Funnel vs direct at 1M vectors (faiss IVF_FLAT)")
    print(intro + table)


def summary_table(points: list[dict]) -> str:
    """Best QPS of each method at recall@10 targets, and their ratio."""
    rows = []
    for target in (0.8, 0.9, 0.95):
        best = {m: max((p["qps"] for p in points if p["method"] == m
                        and p["recall@10"] >= target), default=None)
                for m in ("direct d512", "funnel d64->d512")}
        ratio = (best["funnel d64->d512"] / best["direct d512"] if all(best.values()) else None)
        rows.append((target, best["direct d512"] or "-", best["funnel d64->d512"] or "-",
                     f"{ratio:.2f}x" if ratio else "-"))
    return markdown_table(("recall@10 target", "direct d512 best QPS", "funnel best QPS",
                           "funnel / direct"), rows)


def plot(points: list[dict], path: Path, ylabel: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, marker in (("direct d512", "o"), ("funnel d64->d512", "s")):
        xs = [p["recall@10"] for p in points if p["method"] == method]
        ys = [p["qps"] for p in points if p["method"] == method]
        ax.scatter(xs, ys, marker=marker, label=method, alpha=0.7)
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 vs exact width-512 search")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
