"""Build an index on a collection and wait until the server has indexed every row."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from mmsearch.encoders.errors import MmsearchError


class IndexBuildError(MmsearchError):
    """The server refused an index config, or did not finish building it in time."""


def index_params(client: Any, index_type: str, metric: str, params: Mapping[str, Any]) -> Any:
    prepared = client.prepare_index_params()
    prepared.add_index(field_name="vector", index_name="vector", index_type=index_type,
                       metric_type=metric, params=dict(params))
    return prepared


def wait_indexed(client: Any, name: str, timeout_s: float) -> None:
    """Servers build per sealed segment in the background after flush: poll until no row
    is pending."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.describe_index(name, index_name="vector") or {}
        total, indexed = int(info.get("total_rows", 0)), int(info.get("indexed_rows", 0))
        if str(info.get("state")) == "Failed":
            reason = info.get("index_state_fail_reason", info)
            raise IndexBuildError(f"{name}: index build failed: {reason}")
        if int(info.get("pending_index_rows", 0)) == 0 and indexed >= total:
            return
        if time.monotonic() > deadline:
            raise IndexBuildError(f"{name}: index not built after {timeout_s:.0f} s "
                                  f"({indexed}/{total} rows)")
        time.sleep(0.5)


def build_and_load(client: Any, name: str, index_type: str, metric: str,
                   params: Mapping[str, Any], timeout_s: float = 3600) -> float:
    """Replace the vector index of `name` (if any) and load it; returns seconds to build +
    load."""
    started = time.perf_counter()
    if "vector" in client.list_indexes(name):
        client.release_collection(name)
        client.drop_index(name, "vector")
    # sync=False: we wait ourselves (wait_indexed); the client's own wait needs an RPC
    # Milvus Lite does not implement
    client.create_index(name, index_params(client, index_type, metric, params), sync=False)
    wait_indexed(client, name, timeout_s)
    client.load_collection(name)
    return time.perf_counter() - started
