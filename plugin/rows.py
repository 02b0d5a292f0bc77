"""The rows one batch of encoded items becomes in each width's collection.

One builder for every writer (the worker's upserts, the bulk-import files), so an item
reaches Milvus with the same fields whichever path carried it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mmsearch.encoders.runtimes.base import Embeddings
from mmsearch.plugin.local_features import encode_local
from mmsearch.plugin.schema import ZERO_VALUES, Layout
from mmsearch.plugin.validate import Candidate


class RowBuilder:
    def __init__(self, layout: Layout, attrs: Mapping[str, str], nullable: bool) -> None:
        self.layout = layout
        self.attrs = dict(attrs)
        self.nullable = nullable  # False on servers before 2.5: zero values stand for null

    def scalar_rows(self, items: list[Candidate]) -> list[dict[str, Any]]:
        names = sorted(self.attrs)
        rows = [{"id": c.id, "label": c.label, "content_hash": c.content_hash,
                 **{name: c.attrs.get(name) for name in names}} for c in items]
        if not self.nullable:
            types = {"label": "varchar", **self.attrs}
            for row in rows:
                for name, kind in types.items():
                    if row[name] is None:
                        row[name] = ZERO_VALUES[kind]
        return rows

    def width_rows(self, scalar_rows: list[dict[str, Any]], embeddings: Embeddings,
                   width: int) -> list[dict[str, Any]]:
        vectors = embeddings.at_width(width)
        rows = [{**row, "vector": vectors[i].tolist()} for i, row in enumerate(scalar_rows)]
        if width == self.layout.full_width:
            for i, row in enumerate(rows):
                row["local"] = encode_local(embeddings.local[i], bool(embeddings.has_local[i]))
        return rows
