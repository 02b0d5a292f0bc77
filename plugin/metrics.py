"""Prometheus metrics of the worker (served on --metrics-port, 127.0.0.1 by default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class WorkerMetrics:
    read: Any
    encoded: Any
    written: Any
    rejected: Any
    retries: Any
    batch_seconds: Any

    @classmethod
    def create(cls, registry: Any = None) -> WorkerMetrics:
        from prometheus_client import REGISTRY, Counter, Histogram

        registry = registry or REGISTRY
        return cls(
            read=Counter("mmsearch_worker_records_read", "Records read from sources",
                         registry=registry),
            encoded=Counter("mmsearch_worker_records_encoded", "Records encoded",
                            registry=registry),
            written=Counter("mmsearch_worker_records_written", "Entities upserted per width",
                            ["width"], registry=registry),
            rejected=Counter("mmsearch_worker_records_rejected", "Records dead-lettered",
                             ["field"], registry=registry),
            retries=Counter("mmsearch_worker_milvus_retries", "Milvus call retries",
                            registry=registry),
            batch_seconds=Histogram("mmsearch_worker_batch_seconds", "Batch latency",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
                                    registry=registry),
        )


def serve_metrics(port: int, address: str = "127.0.0.1") -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr=address)
