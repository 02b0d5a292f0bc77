"""The column-wise readers of pymilvus results against real Milvus Lite results: the same
values as pymilvus's own per-row interface, without falling back to it."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.results import query_rows, search_hits


def test_column_readers_match_the_row_interface(stack: dict,
                                                caplog: pytest.LogCaptureFixture) -> None:
    client = stack["pipeline"].milvus.client
    ids = [f"item-{i}" for i in (3, 1, 30, 7)]
    with caplog.at_level(logging.WARNING, logger="mmsearch.plugin.results"):
        fetched = client.query("items_d32", filter=ids_expression(ids),
                               output_fields=["id", "vector", "local", "category", "rank"],
                               strict_float32=True)
        rows = query_rows(fetched)
        plain = client.query("items_d32", filter=ids_expression(ids),
                             output_fields=["id", "vector", "local", "category", "rank"])
        assert len(rows) == len(plain) == 4
        for row, reference in zip(rows, plain, strict=True):
            assert row["vector"].dtype == np.float32
            np.testing.assert_array_equal(row["vector"], np.asarray(reference["vector"],
                                                                    np.float32))
            assert {k: v for k, v in row.items() if k != "vector"} == \
                {k: v for k, v in reference.items() if k != "vector"}
        scalars = query_rows(client.query("items_d32", filter=ids_expression(ids),
                                          output_fields=["id", "label"]))
        assert sorted(r["id"] for r in scalars) == sorted(ids)
        query = np.asarray(plain[0]["vector"], np.float32).tolist()
        found = client.search("items_d16", data=[query[:16], query[16:]], limit=5,
                              output_fields=["label", "flag"])
        for per_query in found:
            hits = search_hits(per_query)
            assert hits == [(h["id"], h["distance"], h["entity"]) for h in per_query]
            assert all(set(entity) == {"label", "flag"} for _, _, entity in hits)
    assert not caplog.records  # the column paths ran, not the row-by-row fallback
