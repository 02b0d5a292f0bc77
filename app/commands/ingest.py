"""Command handlers for `mmsearch ingest`, `mmsearch delete`, `mmsearch collections`,
`mmsearch lite-server` (exit codes: mmsearch.app.exits)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any

from mmsearch.app.config import Config
from mmsearch.app.exits import Exit
from mmsearch.app.wiring import layout_of, load_configured_encoder, milvus_target
from mmsearch.encoders.data.records import ItemRecord, manifest_line, write_manifest
from mmsearch.encoders.errors import MmsearchError, UsageError, check_at_least
from mmsearch.plugin.collections import describe_base, drop_base, ensure_collections, existing_attrs
from mmsearch.plugin.connection import Retrying, milvus_lite_executable
from mmsearch.plugin.metrics import WorkerMetrics, serve_metrics
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker, Shard

log = logging.getLogger(__name__)


def _ingest_one(worker: IngestWorker, path: Path) -> None:
    source = open_source(path)
    summary = worker.run(source)
    print(f"{path}: {summary.line()}")
    for note in source.notes():
        print(f"{path}: {note}")
    if summary.stage_seconds:
        log.info("seconds per stage: %s", summary.stage_seconds)


def _options(args: argparse.Namespace, config: Config, shard: str = "0/1") -> IngestOptions:
    if args.batch_size is not None:
        check_at_least({"--batch-size": (args.batch_size, 1)})
    return IngestOptions(
        layout=layout_of(config, args.base), specs=config.index,
        state_dir=Path(args.state_dir or config.state_dir),
        batch_size=args.batch_size or config.models.batch_size,
        shard=Shard.parse(shard), declared_attrs=config.attrs,
        progress=not args.no_progress and sys.stderr.isatty())


def cmd_delete(args: argparse.Namespace, config: Config) -> int:
    """The ids become a manifest of deletes in the state folder (named by its content), so
    a delete is checkpointed and resumed like an ingest."""
    source = sys.stdin if args.ids == "-" else None
    try:
        text = source.read() if source else Path(args.ids).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError("--ids", f"cannot read {args.ids}: {exc}") from None
    deletes = [ItemRecord(line.strip(), None, None, None, None, op="delete")
               for line in text.splitlines() if line.strip()]
    options = _options(args, config)
    digest = hashlib.sha256("".join(map(manifest_line, deletes)).encode()).hexdigest()[:16]
    manifest = options.state_dir / "deletes" / f"delete-{digest}.jsonl"
    write_manifest(manifest, deletes)  # the item format, written atomically
    worker = IngestWorker(load_configured_encoder(config), Retrying(milvus_target(config)),
                          options)
    _ingest_one(worker, manifest)
    return Exit.OK


def cmd_ingest(args: argparse.Namespace, config: Config) -> int:
    options = _options(args, config, args.shard)
    metrics = None
    if args.metrics_port:
        metrics = WorkerMetrics.create()
        serve_metrics(args.metrics_port, args.metrics_address)
    encoder = load_configured_encoder(config)
    worker = IngestWorker(encoder, Retrying(milvus_target(config)), options, metrics)
    if args.watch:
        watch(worker, Path(args.watch), args.poll_seconds)
    else:
        _ingest_one(worker, Path(args.manifest))
    return Exit.OK


def watch(worker: IngestWorker, folder: Path, poll_seconds: float,
          stop: threading.Event | None = None) -> None:
    """Process each new or changed manifest in the folder once; runs until interrupted
    (or `stop` is set). A file is taken once its size held still for one poll, so a
    half-copied manifest is never read; a finished, unchanged one returns at once."""
    sizes: dict[Path, int] = {}
    stop = stop or threading.Event()
    log.info("watching %s for manifests (*.jsonl, *.parquet)", folder)
    while not stop.is_set():
        for path in sorted([*folder.glob("*.jsonl"), *folder.glob("*.parquet")]):
            size = path.stat().st_size
            if sizes.get(path) == size:
                _ingest_one(worker, path)  # a finished, unchanged manifest returns at once
            sizes[path] = size
        stop.wait(poll_seconds)


def cmd_collections(args: argparse.Namespace, config: Config) -> int:
    layout = layout_of(config, args.base)
    milvus = Retrying(milvus_target(config))
    if args.action == "describe":
        info = milvus.call("describe", lambda c: describe_base(c, layout))
        print(json.dumps(info, indent=2, default=str))
        if not any(width["exists"] for width in info):
            raise MmsearchError(f"base {layout.base!r} has no collections at "
                                f"{milvus.target.describe()}")
        return Exit.OK
    if args.action == "drop":
        if not args.yes:
            answer = input(f"Drop every collection of base {layout.base!r} at "
                           f"{milvus.target.describe()}? Type the base name to confirm: ")
            if answer.strip() != layout.base:
                print("not dropped", file=sys.stderr)
                return Exit.BAD_INPUT
        dropped = milvus.call("drop", lambda c: drop_base(c, layout))
        print(f"dropped {len(dropped)} collection(s): {', '.join(dropped) or '-'}")
        return 0
    encoder = load_configured_encoder(config)
    attrs = config.attrs
    if attrs is None:
        attrs = milvus.call("describe", lambda c: existing_attrs(c, layout)) or {}
    created = milvus.call("create", lambda c: ensure_collections(
        c, layout, attrs, encoder.model_id, config.index))
    print(f"created: {', '.join(created) or 'nothing (all exist and match)'}")
    return 0


def cmd_lite_server(args: argparse.Namespace, config: Any) -> int:
    """Milvus Lite's server mode, so several processes can share one store."""
    command = [milvus_lite_executable(), "server", "--data-dir", str(args.data_dir),
               "--host", args.host, "--port", str(args.port)]
    log.info("starting: %s (connect with --uri http://%s:%d)", " ".join(command), args.host,
             args.port)
    os.execvp(command[0], command)
    return 0  # not reached
