"""`mmsearch backfill --engine ray`: the blocks of a backfill as Ray Data tasks on a pool of
actors, each holding one encoder session (ONNX Runtime by default), writing the same block
files as the in-process engine.

A block is the unit of retry: an actor that dies is restarted by Ray and its block runs
again; the block's files are moved into place whole and a finished block is never
rewritten (plugin/bulk/files.py), so a retry neither loses nor doubles rows. Every node
reads the manifest, the images it names and the --out folder at the same paths: a shared
filesystem (NFS, a mounted bucket), as for `mmsearch ingest --shard`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.plugin.bulk.backfill import Prepared
from mmsearch.plugin.bulk.plan import Block
from mmsearch.plugin.schema import Layout

log = logging.getLogger(__name__)
RAY_INSTALL = "pip install 'mmsearch[scale]'  (ray[data]==2.60.0)"


class EncodeBlocks:
    """One Ray actor: loads the configured encoder once, then writes the blocks it is
    handed (a batch of block descriptions, as JSON)."""

    def __init__(self, load_encoder: Callable[[], Encoder], layout: Layout,
                 attrs: dict[str, str], nullable: bool, manifest: str, out: str) -> None:
        from mmsearch.plugin.bulk.encode import BlockEncoder
        from mmsearch.plugin.bulk.files import BackfillFolder

        self.encoder = BlockEncoder(load_encoder(), layout, attrs, nullable, Path(manifest))
        self.folder = BackfillFolder(Path(out))
        self.layout, self.attrs, self.nullable = layout, attrs, nullable

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        done: dict[str, list[Any]] = {"block": [], "rows": [], "lines": [], "seconds": [],
                                      "pid": []}
        for text in batch["block"]:
            block = Block.from_json(json.loads(str(text)))
            started = time.perf_counter()
            record = self.folder.write_block(self.encoder.encode(block), self.layout,
                                             self.attrs, self.nullable)
            done["block"].append(block.id)
            done["rows"].append(record["rows"])
            done["lines"].append(block.lines)
            done["seconds"].append(time.perf_counter() - started)
            done["pid"].append(os.getpid())
        return {k: np.asarray(v) for k, v in done.items()}


def import_ray() -> Any:
    try:
        import ray

        # the Data library comes with ray's `data` extra (pandas, pyarrow)
        import ray.data
    except ImportError:
        raise BackendMissingError("Ray Data (--engine ray)", RAY_INSTALL) from None
    return ray


def run_on_ray(prepared: Prepared, load_encoder: Callable[[], Encoder], layout: Layout,
               address: str | None, actors: int, cpus_per_actor: float) -> dict[str, Any]:
    """Run the pending blocks on `actors` actors, each building its encoder with
    `load_encoder` (pickled to the actors); returns the backfill manifest (with the
    per-actor rates under "ray")."""
    ray = import_ray()
    if not ray.is_initialized():
        if address is None:
            log.warning("no --address: starting a local Ray on this machine")
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    pending = prepared.pending()
    rates: list[dict[str, Any]] = []
    if pending:
        items = [{"block": json.dumps(b.to_json())} for b in pending]
        dataset = ray.data.from_items(items, override_num_blocks=len(items))
        results = dataset.map_batches(
            EncodeBlocks, batch_size=1, concurrency=actors, num_cpus=cpus_per_actor,
            fn_constructor_kwargs={
                "load_encoder": load_encoder, "layout": layout, "attrs": prepared.attrs,
                "nullable": bool(prepared.plan["nullable"]),
                "manifest": prepared.plan["manifest"], "out": str(prepared.folder.root)},
            max_restarts=-1, max_task_retries=-1,  # a dead actor comes back; its block reruns
        ).take_all()
        rates = per_actor_rates(results)
    manifest = prepared.folder.finish(prepared.blocks, layout.widths)
    return {**manifest, "ray": rates}


def per_actor_rates(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_pid: dict[int, dict[str, float]] = {}
    for row in results:
        entry = by_pid.setdefault(int(row["pid"]), {"blocks": 0, "lines": 0, "seconds": 0.0})
        entry["blocks"] += 1
        entry["lines"] += int(row["lines"])
        entry["seconds"] += float(row["seconds"])
    return [{"pid": pid, **e, "lines_per_s": round(e["lines"] / e["seconds"], 1)
             if e["seconds"] else None} for pid, e in sorted(by_pid.items())]
