"""Retrieval metrics over label-matched galleries (numpy; cosine on unit vectors)."""

from __future__ import annotations

import numpy as np


def retrieval_metrics(queries: np.ndarray, query_labels: list[str], gallery: np.ndarray,
                      gallery_labels: list[str], ks: tuple[int, ...] = (1, 10),
                      chunk: int = 1024) -> dict[str, float]:
    """Recall@k (a relevant item in the top k), mAP@R and nDCG@10 for unit-vector queries.

    Queries whose label has no match in the gallery are skipped (counted in `queries`)."""
    gallery_labels_arr = np.asarray(gallery_labels)
    relevant_counts = {label: int(count) for label, count in
                       zip(*np.unique(gallery_labels_arr, return_counts=True), strict=True)}
    keep = [i for i, label in enumerate(query_labels) if label in relevant_counts]
    hits = {k: 0 for k in ks}
    ap_sum = ndcg_sum = 0.0
    max_r = max(relevant_counts.values()) if relevant_counts else 1
    depth = max(max(ks), max_r, 10)
    discounts = 1.0 / np.log2(np.arange(2, depth + 2))
    for start in range(0, len(keep), chunk):
        rows = keep[start : start + chunk]
        scores = queries[rows] @ gallery.T
        top = np.argpartition(-scores, min(depth, scores.shape[1] - 1), axis=1)[:, :depth]
        order = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1)
        for row, ranked in zip(rows, order, strict=True):
            label = query_labels[row]
            relevant = np.zeros(depth, dtype=bool)  # galleries smaller than depth: pad
            relevant[: len(ranked)] = gallery_labels_arr[ranked] == label
            for k in ks:
                hits[k] += bool(relevant[:k].any())
            r = relevant_counts[label]
            precision = np.cumsum(relevant[:r]) / np.arange(1, r + 1)
            ap_sum += float((precision * relevant[:r]).sum() / r)
            ideal = discounts[: min(r, 10)].sum()
            ndcg_sum += float((relevant[:10] * discounts[:10]).sum() / ideal)
    count = max(len(keep), 1)
    result = {f"recall@{k}": hits[k] / count for k in ks}
    result.update({"map@r": ap_sum / count, "ndcg@10": ndcg_sum / count,
                   "queries": float(len(keep))})
    return result
