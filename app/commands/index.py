"""Command handlers for `mmsearch index ...` (see plugin/index/*.py for each tool)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mmsearch.app.config import Config
from mmsearch.app.exits import Exit
from mmsearch.app.wiring import layout_of, milvus_target
from mmsearch.encoders.errors import ConfigError
from mmsearch.plugin.collections import ensure_loaded
from mmsearch.plugin.connection import connect
from mmsearch.plugin.index.configs import default_configs, load_configs
from mmsearch.plugin.index.funnel import funnel_sweep, funnel_table
from mmsearch.plugin.index.rebuild import RecallTooLowError, rebuild, rollback
from mmsearch.plugin.index.report import config_block, load_bench, pick_cheapest, write_bench
from mmsearch.plugin.index.show import show_table, show_width
from mmsearch.plugin.index.sweep import SweepOptions, run_sweep
from mmsearch.plugin.index.versions import previous_version
from mmsearch.plugin.index_spec import parse_spec
from mmsearch.plugin.schema import Layout


def _client(config: Config, layout: Layout | None = None) -> Any:
    """A client with the base's existing collections loaded (Milvus Lite forgets the load
    state when the store is reopened)."""
    client = connect(milvus_target(config))
    for width in layout.widths if layout else ():
        if client.has_collection(layout.alias(width)):
            ensure_loaded(client, layout.alias(width))
    return client


def _check_width(config: Config, width: int) -> None:
    if width not in config.widths:
        raise ConfigError("--width", f"{width} is not one of the configured widths "
                          f"{list(config.widths)}")


def _check_target(target: float) -> None:
    if not 0 < target <= 1:
        raise ConfigError("--target", f"a recall between 0 and 1, got {target}")


def cmd_index_show(args: argparse.Namespace, config: Config) -> int:
    layout = layout_of(config, args.base)
    client = _client(config, layout)
    specs = config.index
    report = [show_width(client, layout, w, specs[w]) for w in layout.widths]
    print(json.dumps(report, indent=2) if args.json else show_table(report))
    return 0


def cmd_index_bench(args: argparse.Namespace, config: Config) -> int:
    _check_width(config, args.width)
    if args.queries < 1:
        raise ConfigError("--queries", f"at least 1, got {args.queries}")
    layout = layout_of(config, args.base)
    client = _client(config, layout)
    alias = layout.alias(args.width)
    rows = client.query(alias, filter="", output_fields=["count(*)"])[0]["count(*)"]
    configs = (load_configs(args.configs) if args.configs
               else default_configs(int(rows), args.width, 100))
    queries = np.load(args.query_file).astype(np.float32) if args.query_file else None
    metric = config.index[args.width].metric_type
    sweep = run_sweep(client, alias, configs, SweepOptions(queries=args.queries, metric=metric),
                      queries)
    paths = write_bench(args.results, sweep, client.get_server_version())
    print(paths[1].read_text())
    print("written: " + ", ".join(str(p) for p in paths))
    return 0


def cmd_index_recommend(args: argparse.Namespace, config: Config) -> int:
    _check_target(args.target)
    layout = layout_of(config, args.base)
    picks, missing = {}, []
    for width in layout.widths:
        path_alias = layout.alias(width)
        try:
            payload = load_bench(args.results, path_alias)
        except FileNotFoundError:
            missing.append(width)
            continue
        k = args.k or (10 if width == layout.full_width else 100)
        point = pick_cheapest(payload, k, args.target)
        if point is None:
            print(f"d{width}: no swept config reaches recall@{k} >= {args.target}",
                  file=sys.stderr)
            continue
        picks[width] = point
        print(f"d{width}: {point['label']} search {point['search']}: recall@{k} "
              f"{point[f'recall@{k}']:.3f}, {point['qps_batch1']:.1f} QPS at batch 1",
              file=sys.stderr)
    if missing:
        print(f"no sweep for widths {missing} in {args.results} (run `mmsearch index bench`)",
              file=sys.stderr)
    if not picks:
        return Exit.BAD_INPUT
    metric = config.index[layout.full_width].metric_type
    print(config_block(picks, metric))
    return 0


def _parse_index_config(text: str) -> dict[str, Any]:
    import yaml

    path = Path(text)
    raw = yaml.safe_load(path.read_text() if path.is_file() else text)
    if not isinstance(raw, dict):
        raise ConfigError("--index-config", "must be a mapping (JSON/YAML text or a file)")
    return raw


def cmd_index_rebuild(args: argparse.Namespace, config: Config) -> int:
    _check_width(config, args.width)
    spec = parse_spec("--index-config", _parse_index_config(args.index_config))
    layout = layout_of(config, args.base)
    try:
        report = rebuild(_client(config, layout), layout, args.width, spec, args.min_recall,
                         args.drop_old)
    except RecallTooLowError as exc:
        print(f"mmsearch: error: {exc}", file=sys.stderr)
        return Exit.BAD_INPUT
    print(report.line())
    if not args.drop_old:
        print(f"old version kept: `mmsearch index rollback --base {layout.base} --width "
              f"{args.width}` moves the alias back")
    print(f"the sidecar reads search params from config: set `index.{args.width}` to "
          f"{json.dumps(spec.to_json())}")
    return 0


def cmd_index_rollback(args: argparse.Namespace, config: Config) -> int:
    _check_width(config, args.width)
    layout = layout_of(config, args.base)
    client = _client(config, layout)
    target = args.to_version or previous_version(client, layout, args.width)
    print(rollback(client, layout, args.width, target).line())
    return 0


def cmd_index_funnel(args: argparse.Namespace, config: Config) -> int:
    _check_target(args.target)
    if args.queries < 1:
        raise ConfigError("--queries", f"at least 1, got {args.queries}")
    layout = layout_of(config, args.base)
    try:
        candidates = [int(c) for c in args.candidates.split(",") if c.strip()]
    except ValueError:
        raise ConfigError("--candidates", f"comma-separated integers, got "
                          f"{args.candidates!r}") from None
    specs = config.index
    result = funnel_sweep(_client(config, layout), layout, specs, args.queries, candidates)
    print(json.dumps(result, indent=2) if args.json else funnel_table(result, args.target))
    return 0
