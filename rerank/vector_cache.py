"""Full-width rows the sidecar keeps in memory, so refine and rerank need no fetch for them.

Fetching rows by id is the dearest call a search makes on a Milvus server (on 2.3.5 about
0.1 ms of server CPU per row and field, and a fixed cost per call: 36 ms of server CPU for
200 candidates' vectors, against 8 ms for the ANN call itself;
benchmarks/results/sidecar_load_server.md). Rows are keyed by (base, id, content_hash):
the ANN returns each candidate's content_hash, and the hash covers everything the vector is
computed from (image, text, label, attrs), so a cached row is used only while the item is
unchanged. A deleted item is never a candidate (deletes reach the narrow widths first), so
the cache cannot bring it back. Vectors are kept as float16 (refine agrees with the exact
path within fp16 rounding), least recently used rows go first when the budget is spent.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

ENTRY_OVERHEAD = 240  # bytes of Python objects around each row (dict, key, array header)
Row = dict[str, Any]


class VectorCache:
    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes <= 0:
            raise ValueError("budget_bytes must be positive")
        self.budget = budget_bytes
        self.used = 0
        self._rows: OrderedDict[tuple[str, str, str], tuple[Row, int]] = OrderedDict()
        self._lock = threading.Lock()
        # (hits, misses, bytes used) after each lookup; the sidecar's metrics set it
        self.observe: Callable[[int, int, int], None] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def get_many(self, base: str, wanted: Iterable[tuple[str, str | None]]) -> dict[str, Row]:
        """Rows of (id, content_hash) pairs that are cached; an unknown hash misses."""
        found: dict[str, Row] = {}
        misses = 0
        with self._lock:
            for item_id, content_hash in wanted:
                entry = self._rows.get((base, item_id, content_hash or ""))
                if entry is None or content_hash is None:
                    misses += 1
                    continue
                self._rows.move_to_end((base, item_id, content_hash))
                found[item_id] = entry[0]
            used = self.used
        if self.observe:
            self.observe(len(found), misses, used)
        return found

    def put_many(self, base: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """Fetched rows with their vector, local features and content_hash."""
        with self._lock:
            for row in rows:
                vector = np.asarray(row["vector"], np.float16)
                local = row.get("local", "")
                cached = {"id": row["id"], "vector": vector, "local": local,
                          "content_hash": row["content_hash"]}
                size = vector.nbytes + len(local) + ENTRY_OVERHEAD
                key = (base, row["id"], row["content_hash"])
                old = self._rows.pop(key, None)
                if old is not None:
                    self.used -= old[1]
                self._rows[key] = (cached, size)
                self.used += size
            while self.used > self.budget and self._rows:
                _, (_, size) = self._rows.popitem(last=False)
                self.used -= size
