"""Read stored vectors back and compute exact (brute-force) top-k ground truth."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np


def iterate_rows(client: Any, name: str, fields: list[str], batch: int = 2000
                 ) -> Iterator[list[dict[str, Any]]]:
    """Every row of a collection in batches, through the server's query iterator (offset
    paging is capped at 16,384 rows, and paging by `id > last` by hand is wrong on Milvus
    Lite, whose limited queries do not come in key order). Strong consistency: a catch-up
    snapshot must see every acknowledged write."""
    iterator = client.query_iterator(name, batch_size=batch, filter="",
                                     output_fields=list(dict.fromkeys(["id", *fields])),
                                     consistency_level="Strong")
    try:
        while rows := iterator.next():
            yield list(rows)
    finally:
        iterator.close()


def read_vectors(client: Any, name: str) -> tuple[list[str], np.ndarray]:
    """All ids and vectors of a collection (float32, as stored)."""
    ids: list[str] = []
    chunks = []
    for rows in iterate_rows(client, name, ["id", "vector"]):
        ids += [row["id"] for row in rows]
        chunks.append(np.asarray([row["vector"] for row in rows], np.float32))
    if not chunks:
        return ids, np.zeros((0, 0), np.float32)
    return ids, np.concatenate(chunks)


def exact_top_k(base: np.ndarray, queries: np.ndarray, k: int, exclude: np.ndarray | None = None,
                block: int = 64) -> np.ndarray:
    """Row indexes of the k highest inner products per query, best first; `exclude[i]` (a
    row index, or -1) is left out of query i's answer (a stored item querying itself)."""
    k = min(k, len(base) - (0 if exclude is None else 1))
    out = np.empty((len(queries), k), np.int64)
    for start in range(0, len(queries), block):
        scores = queries[start : start + block] @ base.T
        if exclude is not None:
            rows = np.arange(len(scores))
            mask = exclude[start : start + block] >= 0
            scores[rows[mask], exclude[start : start + block][mask]] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        out[start : start + block] = np.take_along_axis(top, order, 1)
    return out


def recall_at(found: list[list[Any]], truth: list[list[Any]], k: int) -> float:
    """Mean |found[:k] & truth[:k]| / |truth[:k]| over queries."""
    shares = [len(set(f[:k]) & set(t[:k])) / max(1, len(t[:k]))
              for f, t in zip(found, truth, strict=True)]
    return float(np.mean(shares)) if shares else 0.0
