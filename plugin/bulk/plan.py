"""The first pass over a manifest: cut it into blocks of whole lines (byte offsets, so a
block is read without the lines before it), find duplicate ids across the whole manifest
(import is insert-only: a duplicate would be stored twice), and fix the attr types every
block writes with."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.encoders.errors import UsageError
from mmsearch.plugin.schema import attr_name_problem, attr_type_of
from mmsearch.plugin.sources import parse_jsonl_line


@dataclass(frozen=True)
class Block:
    id: int
    offset: int  # byte offset of the block's first line
    first_line: int  # 1-based
    lines: int
    duplicates: Mapping[int, int] = field(default_factory=dict)  # line -> first line of id

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "offset": self.offset, "first_line": self.first_line,
                "lines": self.lines, "duplicates": {str(k): v for k, v in
                                                    self.duplicates.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Block:
        return cls(int(data["id"]), int(data["offset"]), int(data["first_line"]),
                   int(data["lines"]), {int(k): int(v) for k, v in data["duplicates"].items()})


@dataclass(frozen=True)
class Plan:
    blocks: list[Block]
    attrs: dict[str, str]  # inferred first-seen types, unless declared
    lines: int


def plan_blocks(manifest: Path, block_lines: int,
                declared_attrs: Mapping[str, str] | None = None) -> Plan:
    if manifest.suffix != ".jsonl":
        raise UsageError("--manifest", f"{manifest}: backfill reads JSONL manifests (a block "
                         "is a byte range of lines); convert Parquet or folders with "
                         "`mmsearch ingest`, or export them to JSONL")
    if block_lines < 1:
        raise UsageError("--block-lines", "must be at least 1")
    blocks: list[Block] = []
    first_seen: dict[str, int] = {}
    attrs: dict[str, str] = {}
    duplicates: dict[int, int] = {}
    start, start_line, offset, number = 0, 1, 0, 0
    with open(manifest, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            record = parse_jsonl_line(number, raw)
            if record is not None and record.data is not None:
                _note(record.data, number, first_seen, duplicates, attrs)
            offset += len(raw)
            if number - start_line + 1 == block_lines:
                blocks.append(Block(len(blocks), start, start_line, block_lines, duplicates))
                start, start_line, duplicates = offset, number + 1, {}
    if number >= start_line:
        blocks.append(Block(len(blocks), start, start_line, number - start_line + 1,
                            duplicates))
    return Plan(blocks, dict(declared_attrs) if declared_attrs is not None else attrs, number)


def _note(data: Mapping[str, Any], line: int, first_seen: dict[str, int],
          duplicates: dict[int, int], attrs: dict[str, str]) -> None:
    record_id = data.get("id")
    if isinstance(record_id, str):
        if record_id in first_seen:
            duplicates[line] = first_seen[record_id]
        else:
            first_seen[record_id] = line
    values = data.get("attrs")
    if isinstance(values, Mapping):
        for name, value in values.items():
            kind = attr_type_of(value)
            if kind is not None and isinstance(name, str) and not attr_name_problem(name):
                attrs.setdefault(name, kind)
