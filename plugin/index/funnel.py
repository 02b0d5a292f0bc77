"""`mmsearch index funnel`: end-to-end recall@10 of coarse ANN (+ full-width refine) against
the exact full-width answer, per coarse width and candidate count, on the live data.

Queries are stored items (their own stored vectors at each width, as a query by id uses),
excluding themselves. Cost is the measured time per query of the ANN calls plus the fetch
of the candidates' full-width vectors, both batched over the query set so that a server's
fixed per-call cost (large on Milvus Lite) does not drown the difference; it also reports
the rows fetched per query, which does not depend on the server.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.index.exact import exact_top_k, read_vectors, recall_at
from mmsearch.plugin.index_spec import IndexSpec, search_params_for
from mmsearch.plugin.schema import Layout

FETCH_ROWS = 1000


def stored_vectors(client: Any, alias: str, ids: Sequence[str]) -> np.ndarray:
    by_id: dict[str, list[float]] = {}
    for start in range(0, len(ids), FETCH_ROWS):
        chunk = list(ids[start : start + FETCH_ROWS])
        rows = client.query(alias, filter=ids_expression(chunk),
                            output_fields=["id", "vector"])
        by_id.update({row["id"]: row["vector"] for row in rows})
    return np.asarray([by_id[i] for i in ids], np.float32)


def ann(client: Any, alias: str, queries: np.ndarray, limit: int, spec: IndexSpec
        ) -> list[list[str]]:
    out: list[list[str]] = []
    for start in range(0, len(queries), 100):
        hits = client.search(alias, data=[q.tolist() for q in queries[start : start + 100]],
                             limit=limit, search_params=search_params_for(spec, limit))
        out += [[h["id"] for h in row] for row in hits]
    return out


def measure(client: Any, layout: Layout, width: int, candidates: int, spec: IndexSpec,
            query_ids: list[str], coarse: np.ndarray, full: np.ndarray,
            truth: list[list[str]]) -> list[dict[str, Any]]:
    """Two points for one (width, candidates): without and with refine."""
    started = time.perf_counter()
    found = ann(client, layout.alias(width), coarse, candidates + 1, spec)
    ann_s = time.perf_counter() - started
    found = [[i for i in row if i != qid][:candidates] for row, qid in zip(found, query_ids,
                                                                           strict=True)]
    points = [{"width": width, "candidates": candidates, "refine": False,
               "recall@10": recall_at(found, truth, 10), "fetched_per_query": 0,
               "ms_per_query": ann_s * 1000 / len(query_ids)}]
    if width == layout.full_width:
        return points  # a direct search: refining at the same width changes nothing
    union = sorted({i for row in found for i in row})
    started = time.perf_counter()
    vectors = dict(zip(union, stored_vectors(client, layout.alias(layout.full_width), union),
                       strict=True))
    fetch_s = time.perf_counter() - started
    refined = []
    for row, query in zip(found, full, strict=True):
        scores = np.asarray([vectors[i] for i in row]) @ query if row else np.zeros(0)
        refined.append([row[j] for j in np.argsort(-scores)[:10]])
    points.append({"width": width, "candidates": candidates, "refine": True,
                   "recall@10": recall_at(refined, truth, 10),
                   "fetched_per_query": candidates,
                   "ms_per_query": (ann_s + fetch_s) * 1000 / len(query_ids)})
    return points


def funnel_sweep(client: Any, layout: Layout, specs: Mapping[int, IndexSpec], queries: int,
                 candidates: Sequence[int], seed: int = 0) -> dict[str, Any]:
    ids, full_vectors = read_vectors(client, layout.alias(layout.full_width))
    if len(ids) < 12:
        raise ValueError(f"{layout.alias(layout.full_width)} has {len(ids)} rows: need at "
                         "least 12 to measure recall@10 with self excluded")
    picks = np.sort(np.random.default_rng(seed).choice(len(ids), min(queries, len(ids)),
                                                       replace=False))
    query_ids = [ids[i] for i in picks]
    rows = exact_top_k(full_vectors, full_vectors[picks], 10, exclude=picks)
    truth = [[ids[j] for j in row] for row in rows.tolist()]
    points = []
    for width in layout.widths:
        coarse = stored_vectors(client, layout.alias(width), query_ids)
        counts = [10] if width == layout.full_width else [c for c in candidates if c >= 10]
        for count in counts:
            points += measure(client, layout, width, count, specs[width], query_ids, coarse,
                              full_vectors[picks], truth)
    return {"base": layout.base, "rows": len(ids), "queries": len(query_ids),
            "points": points}


def cheapest(points: list[dict[str, Any]], target: float) -> dict[str, Any] | None:
    meeting = [p for p in points if p["recall@10"] >= target]
    return min(meeting, key=lambda p: (p["ms_per_query"], p["fetched_per_query"], p["width"]),
               default=None)


def funnel_table(result: dict[str, Any], target: float) -> str:
    best = cheapest(result["points"], target)
    lines = [f"funnel on {result['base']}: {result['rows']} rows, {result['queries']} stored "
             "items as queries (self excluded), recall@10 vs exact full width", "",
             "width | candidates | refine | recall@10 | ms/query (batched) | fetched/query",
             "---|---|---|---|---|---"]
    for p in result["points"]:
        mark = " <- cheapest" if p is best else ""
        lines.append(f"{p['width']} | {p['candidates']} | {'yes' if p['refine'] else 'no'} | "
                     f"{p['recall@10']:.3f} | {p['ms_per_query']:.2f} | "
                     f"{p['fetched_per_query']}{mark}")
    if best is None:
        lines.append(f"\nno setting reaches recall@10 >= {target}")
    else:
        lines.append(f"\ncheapest with recall@10 >= {target}: coarse width {best['width']}, "
                     f"{best['candidates']} candidates, refine {'on' if best['refine'] else 'off'}"
                     f"\nserver config: coarse_width: {best['width']}; limits: "
                     f"default_candidates: {best['candidates']}")
    return "\n".join(lines)
