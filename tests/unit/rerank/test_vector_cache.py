"""The vector cache: rows by (base, id, content_hash), least recently used out first."""

from __future__ import annotations

import numpy as np

from mmsearch.rerank.vector_cache import ENTRY_OVERHEAD, VectorCache


def row(item_id: str, content_hash: str, fill: float = 1.0) -> dict:
    return {"id": item_id, "vector": np.full(8, fill, np.float32), "local": "abcd",
            "content_hash": content_hash}


ROW_BYTES = 8 * 2 + 4 + ENTRY_OVERHEAD  # float16 vector + local text + overhead


def test_a_row_is_found_only_under_its_own_hash_and_base() -> None:
    cache = VectorCache(1 << 20)
    cache.put_many("items", [row("a", "h1", 0.5)])
    found = cache.get_many("items", [("a", "h1")])
    assert found["a"]["vector"].dtype == np.float16
    np.testing.assert_allclose(found["a"]["vector"], 0.5)
    assert cache.get_many("items", [("a", "h2")]) == {}  # changed since: a miss
    assert cache.get_many("items", [("a", None)]) == {}  # no hash from the ANN: a miss
    assert cache.get_many("other", [("a", "h1")]) == {}


def test_the_least_recently_used_rows_leave_when_the_budget_is_spent() -> None:
    cache = VectorCache(3 * ROW_BYTES)
    cache.put_many("items", [row("a", "h"), row("b", "h"), row("c", "h")])
    cache.get_many("items", [("a", "h")])  # a is now the most recent
    cache.put_many("items", [row("d", "h")])
    assert set(cache.get_many("items", [(i, "h") for i in "abcd"])) == {"a", "c", "d"}
    assert len(cache) == 3 and cache.used == 3 * ROW_BYTES


def test_a_row_stored_twice_is_counted_once_and_lookups_are_reported() -> None:
    seen = []
    cache = VectorCache(1 << 20)
    cache.observe = lambda hits, misses, used: seen.append((hits, misses, used))
    cache.put_many("items", [row("a", "h"), row("a", "h")])
    assert len(cache) == 1 and cache.used == ROW_BYTES
    cache.get_many("items", [("a", "h"), ("b", "h")])
    assert seen == [(1, 1, ROW_BYTES)]
