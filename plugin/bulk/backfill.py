"""Plan a backfill and run its blocks in this process; the Ray engine
(plugin/bulk/ray_engine.py) runs the same blocks as Ray Data actors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmsearch.plugin.bulk.encode import BlockEncoder
from mmsearch.plugin.bulk.files import BackfillFolder
from mmsearch.plugin.bulk.plan import Block, plan_blocks
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import JsonlSource


@dataclass(frozen=True)
class BackfillJob:
    manifest: Path
    out: Path
    layout: Layout
    model_id: str
    nullable: bool  # the target server's: Milvus before 2.5 stores zero values for null
    block_lines: int = 4096
    declared_attrs: Mapping[str, str] | None = None


@dataclass(frozen=True)
class Prepared:
    folder: BackfillFolder
    blocks: list[Block]
    attrs: dict[str, str]
    plan: dict[str, Any]

    def pending(self) -> list[Block]:
        return [b for b in self.blocks if self.folder.done(b.id) is None]


def prepare(job: BackfillJob) -> Prepared:
    """Plan the blocks and record the plan; a rerun on the same folder resumes it."""
    plan = plan_blocks(job.manifest, job.block_lines, job.declared_attrs)
    fingerprint = JsonlSource(job.manifest).fingerprint()
    record = {
        "manifest": str(job.manifest.resolve()), "manifest_sha256": fingerprint,
        "base": job.layout.base, "widths": list(job.layout.widths), "model_id": job.model_id,
        "attrs": plan.attrs, "nullable": job.nullable, "block_lines": job.block_lines,
        "lines": plan.lines, "blocks": [b.to_json() for b in plan.blocks],
    }
    record["id"] = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]
    folder = BackfillFolder(job.out)
    folder.write_plan(record)
    return Prepared(folder, plan.blocks, plan.attrs, record)


def run_in_process(prepared: Prepared, encoder: BlockEncoder, progress: bool = True,
                   on_block: Callable[[dict[str, Any]], None] | None = None
                   ) -> dict[str, Any]:
    """Encode and write every block not yet written, then the manifest."""
    layout = encoder.layout
    pending = prepared.pending()
    bar = tqdm(total=sum(b.lines for b in pending), desc="backfill encode", unit="line",
               disable=not progress)
    for block in pending:
        record = prepared.folder.write_block(encoder.encode(block), layout, prepared.attrs,
                                             encoder.builder.nullable)
        bar.update(block.lines)
        if on_block is not None:
            on_block(record)
    bar.close()
    return prepared.folder.finish(prepared.blocks, layout.widths)
