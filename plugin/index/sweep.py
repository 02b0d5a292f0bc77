"""`mmsearch index bench`: sweep index configs on a copy of one live width collection.

The live collection is only read: its vectors are copied into `<alias>_bench` (int64 ids =
row numbers), exact top-k is computed by brute force, and each candidate config is built
on the copy in turn. Query vectors are sampled stored vectors (real data) unless a file of
query vectors is given. Memory is the sizing formula's estimate (plugin/index/estimate.py),
not a measurement: servers do not report per-index memory through the client API.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.plugin.index.build import IndexBuildError, build_and_load
from mmsearch.plugin.index.configs import CandidateConfig
from mmsearch.plugin.index.estimate import estimate_bytes
from mmsearch.plugin.index.exact import exact_top_k, read_vectors, recall_at

INSERT_ROWS = 5000
K = 100


@dataclass(frozen=True)
class SweepOptions:
    queries: int = 200
    batch1_queries: int = 100
    metric: str = "IP"
    seed: int = 0
    build_timeout_s: float = 3600


def bench_copy_name(alias: str) -> str:
    return f"{alias}_bench"


def copy_for_bench(client: Any, name: str, vectors: np.ndarray) -> None:
    from pymilvus import DataType

    if client.has_collection(name):
        client.drop_collection(name)
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=vectors.shape[1])
    client.create_collection(name, schema=schema)  # each config builds its own index
    for start in range(0, len(vectors), INSERT_ROWS):
        chunk = vectors[start : start + INSERT_ROWS]
        client.insert(name, [{"id": start + i, "vector": v.tolist()}
                             for i, v in enumerate(chunk)])
    client.flush(name)


def sample_queries(vectors: np.ndarray, count: int, seed: int) -> np.ndarray:
    picks = np.random.default_rng(seed).choice(len(vectors), min(count, len(vectors)),
                                               replace=False)
    return vectors[np.sort(picks)]


def _search(client: Any, name: str, queries: np.ndarray, metric: str,
            search: dict[str, Any], limit: int) -> list[list[int]]:
    hits = client.search(name, data=[q.tolist() for q in queries], limit=limit,
                         search_params={"metric_type": metric, "params": dict(search)})
    return [[h["id"] for h in row] for row in hits]


def measure_point(client: Any, name: str, queries: np.ndarray, truth: np.ndarray,
                  options: SweepOptions, search: dict[str, Any], limit: int) -> dict[str, Any]:
    """Recall@10/@100 (from batch-100 calls), QPS at batch 1 and 100, p50/p99 at batch 1."""
    found: list[list[int]] = []
    started = time.perf_counter()
    for start in range(0, len(queries), 100):
        found += _search(client, name, queries[start : start + 100], options.metric, search,
                         limit)
    qps_100 = len(queries) / (time.perf_counter() - started)
    latencies = []
    for q in queries[: options.batch1_queries]:
        t0 = time.perf_counter()
        _search(client, name, q[None], options.metric, search, limit)
        latencies.append(time.perf_counter() - t0)
    truth_rows = truth.tolist()
    return {"search": dict(search), "recall@10": recall_at(found, truth_rows, 10),
            "recall@100": recall_at(found, truth_rows, K),
            "qps_batch1": len(latencies) / sum(latencies), "qps_batch100": qps_100,
            "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000)}


def run_sweep(client: Any, alias: str, configs: list[CandidateConfig], options: SweepOptions,
              query_vectors: np.ndarray | None = None) -> dict[str, Any]:
    """Every config's points (or the server's refusal); the copy is dropped afterwards."""
    _ids, vectors = read_vectors(client, alias)
    if len(vectors) == 0:
        raise ValueError(f"{alias} holds no vectors to benchmark")
    queries = (query_vectors if query_vectors is not None
               else sample_queries(vectors, options.queries, options.seed))
    if queries.shape[1] != vectors.shape[1]:
        raise ValueError(f"query vectors have dimension {queries.shape[1]}, {alias} has "
                         f"{vectors.shape[1]}")
    limit = min(K, len(vectors))
    truth = exact_top_k(vectors, queries.astype(np.float32), limit)
    name = bench_copy_name(alias)
    copy_for_bench(client, name, vectors)
    results = []
    try:
        for config in configs:
            results.append(_bench_config(client, name, config, queries, truth, options,
                                         limit, len(vectors)))
    finally:
        client.drop_collection(name)
    mark_pareto([p for r in results for p in r.get("points", [])])
    return {"collection": alias, "rows": len(vectors), "dim": int(vectors.shape[1]),
            "queries": len(queries), "k": limit, "configs": results}


def _bench_config(client: Any, name: str, config: CandidateConfig, queries: np.ndarray,
                  truth: np.ndarray, options: SweepOptions, limit: int, rows: int
                  ) -> dict[str, Any]:
    from pymilvus import MilvusException

    out: dict[str, Any] = {"index_type": config.index_type, "params": dict(config.params),
                           "label": config.label()}
    try:
        out["build_s"] = build_and_load(client, name, config.index_type, options.metric,
                                       config.params, options.build_timeout_s)
        out["estimate"] = estimate_bytes(config.index_type, config.params, rows,
                                         queries.shape[1])
        out["points"] = [{**measure_point(client, name, queries, truth, options, search,
                                          limit), "label": config.label(),
                          "index_type": config.index_type, "params": dict(config.params),
                          "memory": out["estimate"]["memory"]}
                         for search in config.search]
    except (MilvusException, IndexBuildError) as exc:  # a refusal is a result, not a crash
        out["refused"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        out.pop("points", None)
    return out


def mark_pareto(points: list[dict[str, Any]]) -> None:
    """A point is on the front when no other point is at least as good on recall@10,
    recall@100 and batch-1 QPS and better on one of them."""
    keys = ("recall@10", "recall@100", "qps_batch1")
    for point in points:
        point["pareto"] = not any(
            all(other[k] >= point[k] for k in keys) and any(other[k] > point[k] for k in keys)
            for other in points if other is not point)
