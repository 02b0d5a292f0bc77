"""The backfill folder: the plan, one set of bulk-import files per block and width, a done
record per block, and the manifest of everything written.

    OUT/backfill.json          what was planned (base, widths, model, attrs, blocks)
    OUT/d<w>/<block>/...       the Parquet files pymilvus's LocalBulkWriter wrote
    OUT/blocks/<block>.json    written last for a block: its rows, rejections and files
    OUT/rejected/<block>.jsonl why each rejected line was left out
    OUT/manifest.json          the finished backfill: files and row counts per width

A block's files are written under a private folder and moved into place whole; the first
attempt to finish a block keeps its files and a later one (a retried Ray task) discards
its own, so each block is written once, by block id, however often it runs.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.encoders.errors import BackendMissingError, MmsearchError
from mmsearch.plugin.bulk.encode import EncodedBlock
from mmsearch.plugin.bulk.plan import Block
from mmsearch.plugin.schema import Layout, build_schema

BULK_INSTALL = "pip install 'mmsearch[bulk]'  (pymilvus[bulk-writer])"
PLAN_FILE = "backfill.json"
MANIFEST_FILE = "manifest.json"
# LocalBulkWriter's chunk size: one Parquet file per ~128 MB of rows (its default)
CHUNK_BYTES = 128 * 1024 * 1024


class BackfillStateError(MmsearchError):
    """The backfill folder does not match what this run would write."""


def bulk_writer_classes() -> tuple[Any, Any]:
    try:
        from pymilvus.bulk_writer import BulkFileType, LocalBulkWriter
    except ModuleNotFoundError:  # pymilvus names its missing extras (minio, azure)
        raise BackendMissingError("pymilvus's bulk writer", BULK_INSTALL) from None
    logging.getLogger("pymilvus.bulk_writer").setLevel(logging.WARNING)  # INFO per flush
    return LocalBulkWriter, BulkFileType


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Whole or not at all: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(temporary, path)


@dataclass(frozen=True)
class BackfillFolder:
    root: Path

    def block_record(self, block_id: int) -> Path:
        return self.root / "blocks" / f"{block_id:06d}.json"

    def done(self, block_id: int) -> dict[str, Any] | None:
        path = self.block_record(block_id)
        return json.loads(path.read_text()) if path.is_file() else None

    def write_plan(self, plan: Mapping[str, Any]) -> None:
        """A new folder gets the plan; an existing one must hold the same plan (a resumed
        run), else its blocks belong to another manifest, model or layout."""
        path = self.root / PLAN_FILE
        if path.is_file():
            existing = json.loads(path.read_text())
            if existing != json.loads(json.dumps(plan, sort_keys=True)):
                differs = sorted(k for k in set(existing) | set(plan)
                                 if existing.get(k) != plan.get(k))
                raise BackfillStateError(
                    f"{self.root} holds a backfill of another plan (differs in "
                    f"{', '.join(differs)}): use another --out, or remove it")
            return
        write_json(path, plan)

    def plan(self) -> dict[str, Any]:
        path = self.root / PLAN_FILE
        if not path.is_file():
            raise BackfillStateError(f"{self.root} is not a backfill folder (no {PLAN_FILE})")
        return json.loads(path.read_text())

    def write_block(self, encoded: EncodedBlock, layout: Layout, attrs: Mapping[str, str],
                    nullable: bool) -> dict[str, Any]:
        """The block's files for every width, then its record; returns the record."""
        block = encoded.block
        if (record := self.done(block.id)) is not None:
            return record  # an earlier attempt finished it
        writer_class, file_type = bulk_writer_classes()
        private = self.root / ".partial" / f"{block.id:06d}-{uuid.uuid4().hex}"
        private.mkdir(parents=True)
        files: dict[str, list[str]] = {}
        for width, rows in encoded.rows.items():
            final = self.root / f"d{width}" / f"{block.id:06d}"
            if rows:
                writer = writer_class(schema=build_schema(layout, width, attrs, nullable),
                                      local_path=str(private / f"d{width}"),
                                      chunk_size=CHUNK_BYTES, file_type=file_type.PARQUET)
                for row in rows:
                    writer.append_row(row)
                writer.commit()
                written = Path(str(writer.data_path))
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(written, final)  # whole folder; fails if a twin got there first
                except OSError:
                    if not final.is_dir():
                        raise
            files[str(width)] = sorted(str(p.relative_to(self.root))
                                       for p in final.rglob("*.parquet")) if rows else []
        shutil.rmtree(private, ignore_errors=True)
        self._write_rejections(block, encoded)
        record = {"block": block.id, "rows": len(encoded.rows[layout.full_width]),
                  "rejected": len(encoded.rejections), "files": files,
                  "lines": [block.first_line, block.first_line + block.lines - 1]}
        if (earlier := self.done(block.id)) is not None:
            return earlier
        write_json(self.block_record(block.id), record)
        return record

    def _write_rejections(self, block: Block, encoded: EncodedBlock) -> None:
        path = self.root / "rejected" / f"{block.id:06d}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
        temporary.write_text("".join(json.dumps(r.to_json()) + "\n"
                                     for r in encoded.rejections))
        os.replace(temporary, path)

    def finish(self, blocks: list[Block], widths: tuple[int, ...]) -> dict[str, Any]:
        """manifest.json from every block's record; an unfinished block is an error."""
        records = [self.done(b.id) for b in blocks]
        missing = [b.id for b, r in zip(blocks, records, strict=True) if r is None]
        if missing:
            raise BackfillStateError(f"blocks {missing[:10]} of {self.root} are not written")
        manifest = {
            "rows": sum(r["rows"] for r in records if r),
            "rejected": sum(r["rejected"] for r in records if r),
            "files": {str(w): [[f] for r in records if r for f in r["files"][str(w)]]
                      for w in widths},
        }
        write_json(self.root / MANIFEST_FILE, manifest)
        return manifest

    def manifest(self) -> dict[str, Any]:
        path = self.root / MANIFEST_FILE
        if not path.is_file():
            raise BackfillStateError(f"{self.root} has no {MANIFEST_FILE}: the backfill has "
                                     "not finished encoding (run it again to resume)")
        return json.loads(path.read_text())
