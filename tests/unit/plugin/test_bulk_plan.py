"""Planning a backfill: blocks are byte ranges of whole lines that read back exactly the
manifest's records, duplicates are found across blocks, attr types are fixed up front."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.encoders.errors import UsageError
from mmsearch.plugin.bulk.plan import Block, plan_blocks
from mmsearch.plugin.sources import JsonlSource, jsonl_span


def manifest(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_blocks_read_back_every_record_once(tmp_path: Path) -> None:
    lines = [json.dumps({"id": f"é-{i}", "text": "x" * (i % 5)}) for i in range(23)]
    lines[7] = ""  # a blank line still counts as a line
    lines[9] = "{not json"
    path = manifest(tmp_path, lines)
    plan = plan_blocks(path, 5)
    assert [b.lines for b in plan.blocks] == [5, 5, 5, 5, 3] and plan.lines == 23
    spans = [r for b in plan.blocks for r in jsonl_span(path, b.offset, b.first_line, b.lines)]
    whole = list(JsonlSource(path).records())
    assert [(r.line, r.data, r.error) for r in spans] == \
        [(r.line, r.data, r.error) for r in whole]


def test_duplicates_are_found_across_blocks(tmp_path: Path) -> None:
    path = manifest(tmp_path, [json.dumps({"id": i, "text": "t"}) for i in
                               ["a", "b", "c", "a", "d", "b"]])
    plan = plan_blocks(path, 2)
    assert {line: first for b in plan.blocks for line, first in b.duplicates.items()} == \
        {4: 1, 6: 2}
    assert Block.from_json(json.loads(json.dumps(plan.blocks[1].to_json()))) == plan.blocks[1]


def test_attr_types_are_first_seen_unless_declared(tmp_path: Path) -> None:
    path = manifest(tmp_path, [
        json.dumps({"id": "a", "text": "t", "attrs": {"rank": 1, "id": "reserved"}}),
        json.dumps({"id": "b", "text": "t", "attrs": {"rank": "x", "colour": "red"}})])
    assert plan_blocks(path, 10).attrs == {"rank": "int64", "colour": "varchar"}
    assert plan_blocks(path, 10, {"rank": "double"}).attrs == {"rank": "double"}


def test_only_jsonl_and_positive_blocks(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="JSONL"):
        plan_blocks(tmp_path / "items.parquet", 10)
    with pytest.raises(UsageError, match="--block-lines"):
        plan_blocks(manifest(tmp_path, ['{"id": "a"}']), 0)
