"""`mmsearch backfill --import`: the written files into a fresh physical version per width,
verified, then the aliases moved, with the alias discipline of `index rebuild`: a base is
served only once every width holds all its rows.

Import is insert-only, so it never touches a version that serves: each width gets a new
`<base>_d<w>_v<n>` marked with BULK_PROPERTY, and a failed, interrupted or retried import
drops the versions it made (a rerun first drops marked versions no alias points at)
instead of importing the same rows twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mmsearch.encoders.errors import MmsearchError
from mmsearch.encoders.manifest import require_same_model
from mmsearch.plugin.bulk.files import BackfillFolder
from mmsearch.plugin.bulk.submit import ImportApi
from mmsearch.plugin.collections import count, create_version, describe_or_none
from mmsearch.plugin.index.versions import versions
from mmsearch.plugin.index_spec import IndexSpec
from mmsearch.plugin.schema import MODEL_ID_PROPERTY, Layout

log = logging.getLogger(__name__)
BULK_PROPERTY = "mmsearch.bulk_import"  # marks a version a backfill import created
POLL_S = 1.0


class ImportFailedError(MmsearchError):
    """An import task failed or the counts did not match: nothing was swapped."""


@dataclass(frozen=True)
class ImportReport:
    width: int
    collection: str
    rows: int
    replaced: str | None  # the version the alias pointed at before, kept for rollback

    def line(self) -> str:
        before = f" (was {self.replaced}, kept)" if self.replaced else ""
        return f"d{self.width}: {self.rows} rows imported into {self.collection}{before}"


def locate_files(folder: BackfillFolder, files: list[list[str]],
                 upload: Callable[[Path, str], str] | None) -> list[list[str]]:
    """What the server reads: absolute paths on a shared filesystem, or object keys after
    `upload(local path, relative name)` put them in the server's bucket."""
    located = []
    for group in files:
        paths = [(folder.root / name).resolve() for name in group]
        located.append([str(p) if upload is None else upload(p, name)
                        for p, name in zip(paths, group, strict=True)])
    return located


def drop_leftovers(client: Any, layout: Layout, width: int) -> list[str]:
    """Versions an earlier import made that no alias points at (it failed or was killed)."""
    alias = describe_or_none(client, layout.alias(width))
    serving = alias["collection_name"] if alias else None
    dropped = []
    for version in versions(client, layout, width):
        name = layout.physical(width, version)
        if name == serving:
            continue
        properties = client.describe_collection(name).get("properties", {})
        if BULK_PROPERTY in properties:
            client.drop_collection(name)
            dropped.append(name)
    if dropped:
        log.warning("dropped %s: left by an import that did not finish", ", ".join(dropped))
    return dropped


def import_backfill(client: Any, api: ImportApi, layout: Layout, folder: BackfillFolder,
                    specs: dict[int, IndexSpec], replace: bool, nullable: bool,
                    upload: Callable[[Path, str], str] | None = None, progress: bool = True
                    ) -> list[ImportReport]:
    plan, manifest = folder.plan(), folder.manifest()
    model_id, attrs = plan["model_id"], plan["attrs"]
    serving = check_target(client, layout, model_id, replace)
    created: list[str] = []
    tasks: list[tuple[str, Any]] = []
    try:
        for width in layout.widths:
            drop_leftovers(client, layout, width)
            version = max(versions(client, layout, width), default=0) + 1
            name = create_version(client, layout, width, version, attrs, model_id,
                                  specs[width], nullable, {BULK_PROPERTY: plan["id"]})
            created.append(name)
            for files in locate_files(folder, manifest["files"][str(width)], upload):
                tasks.append((name, api.submit(name, files)))
        _wait(api, tasks, manifest["rows"] * len(layout.widths), progress)
        reports = []
        for width, name in zip(layout.widths, created, strict=True):
            wait_for_index(client, name, manifest["rows"])
            client.load_collection(name)
            found = count(client, name)
            if found != manifest["rows"]:
                raise ImportFailedError(f"{name} holds {found} rows after the import, "
                                        f"expected {manifest['rows']}")
            reports.append(ImportReport(width, name, found, serving.get(width)))
    except BaseException:
        _settle(api, tasks)
        for name in created:
            client.drop_collection(name)
        log.error("import failed: dropped %s; the aliases were not moved", ", ".join(created))
        raise
    for report in reports:  # every width verified: now serve them, the full width last
        if report.replaced:
            client.alter_alias(report.collection, layout.alias(report.width))
        else:
            client.create_alias(report.collection, layout.alias(report.width))
    return reports


def check_target(client: Any, layout: Layout, model_id: str, replace: bool
                  ) -> dict[int, str]:
    """{width: collection the alias serves now}; an existing base needs --replace and the
    same model (the sidecar encodes queries with one model)."""
    serving = {}
    for width in layout.widths:
        description = describe_or_none(client, layout.alias(width))
        if description is None:
            continue
        if not replace:
            raise ImportFailedError(
                f"base {layout.base!r} exists ({layout.alias(width)} -> "
                f"{description['collection_name']}): import loads a fresh base; add to it "
                "with `mmsearch ingest`, or pass --replace to serve the backfill instead "
                "(the old versions are kept for `mmsearch index rollback`)")
        require_same_model(description.get("properties", {}).get(MODEL_ID_PROPERTY),
                           model_id, f"collection {layout.alias(width)}")
        serving[width] = description["collection_name"]
    return serving


def wait_for_index(client: Any, name: str, rows: int) -> None:
    """Until the vector index covers every imported row: an import task completes before
    its segments are indexed (2.3.5), and a collection loaded then serves brute force."""
    while True:
        info = client.describe_index(name, index_name="vector") or {}
        state = str(info.get("state", ""))
        if state.endswith("Failed"):
            raise ImportFailedError(f"building the index of {name} failed: "
                                    f"{info.get('index_state_fail_reason') or info}")
        if state.endswith("Finished") and int(info.get("indexed_rows", rows)) >= rows:
            return
        time.sleep(POLL_S)


def _settle(api: ImportApi, tasks: list[tuple[str, Any]]) -> None:
    """Let tasks already submitted end (see _wait) before their collections go."""
    with contextlib.suppress(Exception):  # cleanup while the first error is raised
        _wait(api, tasks, 0, progress=False)


def _wait(api: ImportApi, tasks: list[tuple[str, Any]], total_rows: int,
          progress: bool) -> None:
    """Until every task has ended. A failure is raised only then: dropping a collection
    under a running import task leaves that task stuck on Milvus 2.3, and the server runs
    import tasks one after another, so every later import would wait behind it forever."""
    bar = tqdm(total=total_rows, desc="bulk import", unit="row", disable=not progress)
    pending = dict(enumerate(tasks))
    rows: dict[int, int] = {}
    failures: list[str] = []
    while pending:
        for key, (name, task) in list(pending.items()):
            state = api.state(task)
            rows[key] = state.rows
            if state.failed is not None:
                failures.append(f"{name}: {state.failed}")
            if state.finished or state.failed is not None:
                del pending[key]
        bar.update(sum(rows.values()) - bar.n)
        if pending:
            time.sleep(POLL_S)
    bar.close()
    if failures:
        raise ImportFailedError(f"{len(failures)} import task(s) failed, first {failures[0]}")
