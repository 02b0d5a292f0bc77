"""A base's full-width collection as the pipeline reads it: rows by id (vectors, local
features) and exact full-width cosines of candidates, scored here or in Milvus."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mmsearch.encoders.mrl import l2_normalize
from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.index_spec import IndexSpec, search_params_for
from mmsearch.plugin.results import query_rows, search_hits
from mmsearch.plugin.schema import Layout
from mmsearch.rerank.requests import Hit
from mmsearch.rerank.vector_cache import VectorCache

# where exact full-width scoring runs; sidecar measured faster on Milvus Lite and on the
# Milvus 2.3.5 server (benchmarks/results/refine_paths_*.md)
REFINE_IN = ("sidecar", "milvus")
# one Milvus call inside a request's deadline: (what, fn(client, timeout), deadline)
Call = Callable[[str, Callable[[Any, float | None], Any], float | None], Any]


class FullWidth:
    def __init__(self, call: Call, specs: Mapping[int, IndexSpec], refine_in: str,
                 cache: VectorCache | None = None) -> None:
        if refine_in not in REFINE_IN:
            raise ValueError(f"refine_in {refine_in!r} is not one of {REFINE_IN}")
        self.call, self.specs, self.refine_in = call, specs, refine_in
        self.cache = cache

    def fetch(self, layout: Layout, ids: list[str], deadline: float | None = None,
              with_local: bool = True) -> dict[str, dict[str, Any]]:
        """Full-width rows by id: the vector, and the local features when the scorer
        reads them; ids not returned are not stored (deleted since the ANN)."""
        alias = layout.alias(layout.full_width)
        expression = ids_expression(ids)
        with_local = with_local or self.cache is not None  # cached rows are whole rows
        fields = ["id", "vector", *(["local"] if with_local else []),
                  *(["content_hash"] if self.cache is not None else [])]
        # the vector column is decoded into one float32 matrix (rows hold views of it),
        # not a Python list of floats per row (plugin/results.py)
        rows = query_rows(self.call("fetch", lambda c, t: c.query(
            alias, filter=expression, output_fields=fields, timeout=t, strict_float32=True),
            deadline))
        if self.cache is not None:
            self.cache.put_many(layout.base, rows)
        return {row["id"]: row for row in rows}

    def rows_for(self, layout: Layout, hits: list[Hit], deadline: float | None,
                 with_local: bool) -> dict[str, dict[str, Any]]:
        """The hits' rows: from the cache where it holds the hit's content_hash, the rest
        fetched in one call."""
        rows = (self.cache.get_many(layout.base, ((h.id, h.content_hash) for h in hits))
                if self.cache is not None else {})
        missing = list(dict.fromkeys(h.id for h in hits if h.id not in rows))
        if missing:
            rows.update(self.fetch(layout, missing, deadline, with_local))
        return rows

    def refine(self, layout: Layout, hits: list[Hit], vector: np.ndarray, rerank: bool,
               deadline: float | None) -> tuple[list[Hit], dict[str, dict[str, Any]]]:
        """Exact full-width cosine for every candidate, best first; one deleted since the
        ANN is dropped. Returns the hits and the rows it fetched (none when Milvus scored)."""
        return self.refine_many(layout, [(hits, vector)], rerank, deadline)[0]

    def refine_many(self, layout: Layout, lists: list[tuple[list[Hit], np.ndarray]],
                    rerank: bool, deadline: float | None
                    ) -> list[tuple[list[Hit], dict[str, dict[str, Any]]]]:
        """refine for several queries of one base: fetching the vectors is one call for the
        union of their candidates (shared rows), scoring in Milvus one search per query."""
        cosines: list[dict[str, float]] = [{} for _ in lists]
        wanted: list[Hit] = []
        if self.refines_in_milvus(layout):
            for scores, (hits, vector) in zip(cosines, lists, strict=True):
                scores.update(self._milvus_cosines(layout, [h.id for h in hits], vector,
                                                   deadline))
                # an index may not reach every id of a filtered search: a candidate it
                # left out is fetched, so only a deleted one is ever dropped
                wanted += [h for h in hits if h.id not in scores]
        else:
            wanted = [h for hits, _ in lists for h in hits]
        rows = self.rows_for(layout, wanted, deadline, with_local=rerank) if wanted else {}
        out = []
        for scores, (hits, vector) in zip(cosines, lists, strict=True):
            fetched = [h.id for h in hits if h.id not in scores and h.id in rows]
            if fetched:  # one matrix product over this query's fetched rows
                scores.update(zip(fetched, (unit_vectors(rows, fetched) @ vector).tolist(),
                                  strict=True))
            kept = [h for h in hits if h.id in scores]
            for hit in kept:
                hit.refine = hit.score = scores[hit.id]
            kept.sort(key=lambda h: -h.score)
            out.append((kept, rows))
        return out

    def refines_in_milvus(self, layout: Layout) -> bool:
        """`milvus`: a search restricted to the candidates' ids, so only scores travel;
        `sidecar`: fetch the vectors. Never Milvus for an L2 index (not cosines)."""
        return (self.refine_in == "milvus"
                and self.specs[layout.full_width].metric_type in ("IP", "COSINE"))

    def _milvus_cosines(self, layout: Layout, ids: list[str], vector: np.ndarray,
                        deadline: float | None) -> dict[str, float]:
        width = layout.full_width
        found = self.call("refine", lambda c, t: c.search(
            layout.alias(width), data=[vector.tolist()], limit=len(ids),
            filter=ids_expression(ids), output_fields=[],
            search_params=search_params_for(self.specs[width], len(ids)), timeout=t),
            deadline)
        return {item_id: float(distance) for item_id, distance, _ in search_hits(found[0])}


def unit_vectors(rows: Mapping[str, Mapping[str, Any]], ids: list[str]) -> np.ndarray:
    """(len(ids), width) unit vectors of fetched rows, in the order of ids."""
    return l2_normalize(np.stack([rows[i]["vector"] for i in ids]).astype(np.float32))
