"""One block of a manifest -> validated, encoded rows per width (no Milvus involved): what
both engines run, in-process or inside a Ray actor."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.plugin.bulk.plan import Block
from mmsearch.plugin.rows import RowBuilder
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import jsonl_span
from mmsearch.plugin.validate import (
    Candidate,
    Deletion,
    RecordValidator,
    Rejection,
    check_attrs,
)

DELETE_IN_BACKFILL = ("backfill loads a fresh base and imports only; send deletes through "
                      "`mmsearch ingest` or `mmsearch delete` once it is loaded")


@dataclass(frozen=True)
class EncodedBlock:
    block: Block
    rows: dict[int, list[dict[str, Any]]]  # width -> rows, the same order in every width
    rejections: list[Rejection]


class BlockEncoder:
    def __init__(self, encoder: Encoder, layout: Layout, attrs: dict[str, str],
                 nullable: bool, manifest: Path) -> None:
        self.encoder = encoder
        self.layout = layout
        self.attrs = attrs
        self.builder = RowBuilder(layout, attrs, nullable)
        self.manifest = manifest

    def encode(self, block: Block) -> EncodedBlock:
        validator = RecordValidator(self.manifest.parent)
        candidates: list[Candidate] = []
        rejections: list[Rejection] = []
        for raw in jsonl_span(self.manifest, block.offset, block.first_line, block.lines):
            first = block.duplicates.get(raw.line)
            result = (Rejection(raw.line, raw.data.get("id") if raw.data else None, "id",
                                f"duplicate id in this manifest (first on line {first})")
                      if first is not None else validator.validate(raw))
            if isinstance(result, Deletion):
                result = Rejection(result.line, result.id, "op", DELETE_IN_BACKFILL)
            elif isinstance(result, Candidate):
                result = check_attrs(result, self.attrs) or result
            if isinstance(result, Rejection):
                rejections.append(result)
            else:
                candidates.append(result)
        rows: dict[int, list[dict[str, Any]]] = {w: [] for w in self.layout.widths}
        size = self.encoder.batch_size
        for start in range(0, len(candidates), size):
            batch = candidates[start : start + size]
            embeddings = self.encoder.encode_items([c.image for c in batch],
                                                   [c.text for c in batch],
                                                   [c.id for c in batch])
            rejections += [Rejection(batch[p.index].line, p.item, p.field, p.reason)
                           for p in embeddings.problems]
            scalar_rows = self.builder.scalar_rows([batch[i] for i in embeddings.indices])
            for width in self.layout.widths:
                rows[width] += self.builder.width_rows(scalar_rows, embeddings, width)
        return EncodedBlock(block, rows, sorted(rejections, key=lambda r: r.line))
