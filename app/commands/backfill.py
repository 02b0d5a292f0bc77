"""`mmsearch backfill`: encode a manifest once into Milvus bulk-import files per width, in
this process or on Ray, then (with --import) import them into fresh versions and move the
aliases."""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

from mmsearch.app.config import Config
from mmsearch.app.exits import EXIT_HELP, Exit
from mmsearch.app.wiring import layout_of, load_configured_encoder, milvus_target
from mmsearch.encoders.errors import UsageError, check_at_least
from mmsearch.plugin.bulk.backfill import BackfillJob, Prepared, prepare, run_in_process
from mmsearch.plugin.bulk.encode import BlockEncoder
from mmsearch.plugin.bulk.importer import check_target, import_backfill
from mmsearch.plugin.bulk.storage import s3_uploader
from mmsearch.plugin.bulk.submit import import_api_for
from mmsearch.plugin.connection import connect
from mmsearch.plugin.schema import server_supports_nullable


def add_parser(sub: Any, common: Any) -> None:
    backfill = sub.add_parser(
        "backfill", help="first load of a large catalogue: encode once into Milvus "
        "bulk-import files per width (in-process or on Ray), then --import them",
        description=EXIT_HELP)
    common(backfill, milvus=True)
    backfill.add_argument("--manifest", type=Path, required=True, help="JSONL manifest")
    backfill.add_argument("--base", help="base name (default: config)")
    backfill.add_argument("--out", type=Path, required=True,
                          help="folder for the files (a rerun resumes the blocks not written)")
    backfill.add_argument("--import", dest="do_import", action="store_true",
                          help="import the files, verify counts per width, move the aliases")
    backfill.add_argument("--replace", action="store_true",
                          help="the base exists: serve the backfill instead (old versions kept)")
    backfill.add_argument("--block-lines", type=int, default=4096,
                          help="manifest lines per block (the unit of work and of retry)")
    backfill.add_argument("--engine", choices=("local", "ray"), default="local",
                          help="local: this process; ray: Ray Data actors (the `scale` extra)")
    backfill.add_argument("--address", help="Ray cluster address (--engine ray; default: "
                          "start a local Ray)")
    backfill.add_argument("--actors", type=int, default=2, help="encoder actors (--engine ray)")
    backfill.add_argument("--cpus-per-actor", type=float, default=1.0,
                          help="CPUs each actor reserves (fractions share a small machine)")
    backfill.add_argument("--no-progress", action="store_true", help="no progress bars")
    backfill.set_defaults(func=cmd_backfill)


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    check_at_least({"--block-lines": (args.block_lines, 1), "--actors": (args.actors, 1)})
    if not args.cpus_per_actor > 0:
        raise UsageError("--cpus-per-actor", f"must be > 0, got {args.cpus_per_actor}")
    layout = layout_of(config, args.base)
    target = milvus_target(config)
    client = connect(target)
    version = client.get_server_version()
    api = import_api_for(target, version) if args.do_import else None  # Lite: fails here
    encoder = load_configured_encoder(config)
    if args.do_import:  # before hours of encoding: the base must be free (or --replace)
        check_target(client, layout, encoder.model_id, args.replace)
    nullable = server_supports_nullable(version)
    progress = not args.no_progress and sys.stderr.isatty()
    prepared = prepare(BackfillJob(args.manifest, args.out, layout, encoder.model_id, nullable,
                                   args.block_lines, config.attrs))
    if args.engine == "ray":
        from mmsearch.plugin.bulk.ray_engine import run_on_ray

        manifest = run_on_ray(prepared, functools.partial(load_configured_encoder, config),
                              layout, args.address, args.actors, args.cpus_per_actor)
    else:
        manifest = run_in_process(prepared, BlockEncoder(
            encoder, layout, prepared.attrs, nullable, args.manifest), progress)
    _print_written(prepared, manifest)
    if api is None:
        return Exit.OK
    upload = None
    if config.bulk.storage == "s3":
        bulk = config.bulk
        upload = s3_uploader(str(bulk.endpoint), str(bulk.bucket), bulk.prefix, bulk.secure,
                             str(bulk.access_key_file), str(bulk.secret_key_file),
                             prepared.plan["id"])
    try:
        reports = import_backfill(client, api, layout, prepared.folder, config.index,
                                  args.replace, nullable, upload, progress)
    finally:
        api.close()
    for report in reports:
        print(report.line())
    print(f"aliases {', '.join(layout.alias(w) for w in layout.widths)} now serve the "
          f"backfill (via {api.name})")
    return Exit.OK


def _print_written(prepared: Prepared, manifest: dict[str, Any]) -> None:
    files = sum(len(groups) for groups in manifest["files"].values())
    print(f"{prepared.folder.root}: {manifest['rows']} rows in {files} files over "
          f"{len(manifest['files'])} widths, rejected {manifest['rejected']}"
          + (f" (why: {prepared.folder.root / 'rejected'})" if manifest["rejected"] else ""))
    for actor in manifest.get("ray", []):
        print(f"ray actor pid {actor['pid']}: {actor['blocks']} blocks, {actor['lines']} lines "
              f"in {actor['seconds']:.1f} s ({actor['lines_per_s']} lines/s)")
