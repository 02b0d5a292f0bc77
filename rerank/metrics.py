"""Prometheus metrics of the sidecar (served on server.metrics_port, 127.0.0.1 by default).

mmsearch_sidecar_requests_total{rpc,code}, mmsearch_sidecar_stage_seconds{stage} (encode,
ann, refine, rerank, total), mmsearch_sidecar_candidates (per Search),
mmsearch_sidecar_degraded_total{reason}, mmsearch_sidecar_in_flight,
mmsearch_sidecar_batch_size (Search requests per admission-window batch),
mmsearch_sidecar_vector_cache_rows_total{result} (hit / miss), mmsearch_sidecar_vector_cache_bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
CANDIDATE_BUCKETS = (10, 25, 50, 100, 200, 400, 800, 1600)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class SidecarMetrics:
    requests: Any
    stage_seconds: Any
    candidates: Any
    degraded: Any
    in_flight: Any
    batch_size: Any
    cache_rows: Any
    cache_bytes: Any

    @classmethod
    def create(cls, registry: Any = None) -> SidecarMetrics:
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = registry or REGISTRY
        return cls(
            requests=Counter("mmsearch_sidecar_requests", "RPCs by method and status code",
                             ["rpc", "code"], registry=registry),
            stage_seconds=Histogram("mmsearch_sidecar_stage_seconds", "Latency per stage",
                                    ["stage"], buckets=STAGE_BUCKETS, registry=registry),
            candidates=Histogram("mmsearch_sidecar_candidates", "Candidates per Search",
                                 buckets=CANDIDATE_BUCKETS, registry=registry),
            degraded=Counter("mmsearch_sidecar_degraded", "Replies with a skipped stage",
                             ["reason"], registry=registry),
            in_flight=Gauge("mmsearch_sidecar_in_flight", "RPCs being served",
                            registry=registry, multiprocess_mode="livesum"),
            batch_size=Histogram("mmsearch_sidecar_batch_size",
                                 "Search requests per admission-window batch",
                                 buckets=BATCH_BUCKETS, registry=registry),
            cache_rows=Counter("mmsearch_sidecar_vector_cache_rows",
                               "Candidate rows looked up in the vector cache", ["result"],
                               registry=registry),
            cache_bytes=Gauge("mmsearch_sidecar_vector_cache_bytes",
                              "Bytes of rows the vector cache holds", registry=registry,
                              multiprocess_mode="livesum"),
        )

    def observe_cache(self, hits: int, misses: int, used_bytes: int) -> None:
        self.cache_rows.labels("hit").inc(hits)
        self.cache_rows.labels("miss").inc(misses)
        self.cache_bytes.set(used_bytes)

    def observe_search(self, timings_ms: dict[str, float], candidates: int,
                       degraded_reasons: list[str]) -> None:
        for stage, ms in timings_ms.items():
            self.stage_seconds.labels(stage).observe(ms / 1000)
        self.candidates.observe(candidates)
        for reason in degraded_reasons:
            self.degraded.labels(reason).inc()
