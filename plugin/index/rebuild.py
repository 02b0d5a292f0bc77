"""`mmsearch index rebuild` / `rollback`: build a new version, catch up, verify, move the alias.

Writes that arrive during a rebuild are kept by catch-up, not by pausing the worker: the
bulk copy reads a snapshot of (id, content_hash); catch-up passes copy every row that is
new or changed in the live version since (and delete rows deleted there) until a pass
finds nothing; then the alias moves; then one reconciliation pass copies the writes that
landed on the old version between the last pass and the swap, skipping any id already
rewritten through the alias after the swap (the newer write wins). The worker and the
sidecar never notice: they address `B_d<w>` only, resolved by the server per call.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmsearch.plugin.collections import count, ensure_loaded
from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.index.build import build_and_load
from mmsearch.plugin.index.exact import exact_top_k, iterate_rows, read_vectors, recall_at
from mmsearch.plugin.index.versions import current_version, move_alias, versions
from mmsearch.plugin.index_spec import IndexSpec, search_params_for
from mmsearch.plugin.schema import (
    INDEX_PROPERTY,
    Layout,
    attrs_from_fields,
    build_schema,
    describe_fields,
    server_supports_nullable,
)

log = logging.getLogger(__name__)
COPY_ROWS = 1000
MAX_CATCH_UP_PASSES = 5


@dataclass(frozen=True)
class SwapReport:
    width: int
    from_version: int
    to_version: int
    copied: int
    catch_up_rows: int
    reconciled_rows: int
    entities: int
    recall_at_10: float | None
    dropped: tuple[str, ...] = ()

    def line(self) -> str:
        recall = "-" if self.recall_at_10 is None else f"{self.recall_at_10:.3f}"
        return (f"d{self.width}: v{self.from_version} -> v{self.to_version}, {self.entities} "
                f"entities (bulk {self.copied}, catch-up {self.catch_up_rows}, after swap "
                f"{self.reconciled_rows}), recall@10 sample {recall}"
                + (f", dropped {', '.join(self.dropped)}" if self.dropped else ""))


class RecallTooLowError(RuntimeError):
    """The new version failed its checks (recall floor or count): the alias was not moved."""


def snapshot(client: Any, name: str) -> dict[str, str]:
    """id -> content_hash of every row."""
    return {row["id"]: row["content_hash"]
            for rows in iterate_rows(client, name, ["id", "content_hash"]) for row in rows}


def copy_ids(client: Any, source: str, target: str, ids: list[str], fields: list[str]) -> int:
    for start in range(0, len(ids), COPY_ROWS):
        chunk = ids[start : start + COPY_ROWS]
        rows = client.query(source, filter=ids_expression(chunk), output_fields=fields)
        if rows:
            client.upsert(target, [{f: row.get(f) for f in fields} for row in rows])
    return len(ids)


def delete_ids(client: Any, target: str, ids: list[str]) -> None:
    for start in range(0, len(ids), COPY_ROWS):
        client.delete(target, filter=ids_expression(ids[start : start + COPY_ROWS]))


def catch_up(client: Any, source: str, target: str, fields: list[str]) -> tuple[int, dict]:
    """Make `target` mirror `source` (which keeps taking writes). Returns rows touched and
    the source snapshot that `target` now mirrors; writes after it are left to reconcile()
    after the swap, so a worker that never pauses cannot keep the rebuild from finishing."""
    touched = 0
    for _ in range(MAX_CATCH_UP_PASSES):
        live, copy = snapshot(client, source), snapshot(client, target)
        changed = [i for i, h in live.items() if copy.get(i) != h]
        deleted = [i for i in copy if i not in live]
        copy_ids(client, source, target, changed, fields)
        delete_ids(client, target, deleted)
        touched += len(changed) + len(deleted)
        if not changed and not deleted:
            break
    return touched, live


def reconcile(client: Any, old: str, new: str, before_swap: dict[str, str],
              fields: list[str]) -> int:
    """After the swap: carry over writes that landed on `old` after the last catch-up pass,
    unless the id was written again through the alias (then the newer write wins)."""
    now_old, now_new = snapshot(client, old), snapshot(client, new)
    untouched = [i for i in set(before_swap) | set(now_old)
                 if now_new.get(i) == before_swap.get(i)]
    changed = [i for i in untouched if i in now_old and now_old[i] != before_swap.get(i)]
    deleted = [i for i in untouched if i not in now_old and i in before_swap]
    copy_ids(client, old, new, changed, fields)
    delete_ids(client, new, deleted)
    return len(changed) + len(deleted)


def sample_recall(client: Any, name: str, spec: IndexSpec, samples: int = 100) -> float:
    """Recall@10 of the new index against brute force, on stored vectors as queries."""
    _ids, vectors = read_vectors(client, name)
    if len(vectors) < 2:
        return 1.0
    rng = np.random.default_rng(0)
    picks = rng.choice(len(vectors), min(samples, len(vectors)), replace=False)
    limit = min(10, len(vectors))
    truth = exact_top_k(vectors, vectors[picks], limit)
    hits = client.search(name, data=[vectors[i].tolist() for i in picks], limit=limit,
                         output_fields=["id"], search_params=search_params_for(spec, limit))
    found = [[h["id"] for h in row] for row in hits]
    return recall_at(found, [[_ids[j] for j in row] for row in truth.tolist()], limit)


def rebuild(client: Any, layout: Layout, width: int, spec: IndexSpec, min_recall: float,
            drop_old: bool, grace_s: float = 2.0,
            before_swap: Callable[[], None] | None = None) -> SwapReport:
    """New version with `spec` from the live data; the alias moves only if the count and
    the sampled recall check out."""
    old_version = current_version(client, layout, width)
    old = layout.physical(width, old_version)
    new_version = max(versions(client, layout, width)) + 1
    new = layout.physical(width, new_version)
    description = client.describe_collection(old)
    fields = list(describe_fields(description))
    attrs = attrs_from_fields(describe_fields(description))
    nullable = server_supports_nullable(client.get_server_version())
    properties = {**description.get("properties", {}),
                  INDEX_PROPERTY: json.dumps(spec.to_json())}
    client.create_collection(new, schema=build_schema(layout, width, attrs, nullable),
                             properties=properties)
    copied = 0
    for rows in iterate_rows(client, old, fields, batch=COPY_ROWS):
        client.upsert(new, [{f: row.get(f) for f in fields} for row in rows])
        copied += len(rows)
    client.flush(new)
    build_and_load(client, new, spec.index_type, spec.metric_type, spec.params)
    touched, last = catch_up(client, old, new, fields)
    recall = sample_recall(client, new, spec)
    entities = count(client, new)
    if recall < min_recall or entities != len(last):
        client.drop_collection(new)
        raise RecallTooLowError(
            f"{new}: recall@10 sample {recall:.3f} (floor {min_recall}), {entities} entities "
            f"vs {len(last)} live: not swapped, {new} dropped; alias {layout.alias(width)} "
            f"still points at {old}. Try other params, or lower --min-recall")
    if before_swap is not None:
        before_swap()
    return _swap(client, layout, width, old_version, new_version, last, fields, grace_s,
                 drop_old, copied, touched, recall)


def rollback(client: Any, layout: Layout, width: int, to_version: int, grace_s: float = 2.0
             ) -> SwapReport:
    """Move the alias back to a kept version, first bringing it up to date with the data
    written since (the current version is the truth)."""
    now = current_version(client, layout, width)
    current, target = layout.physical(width, now), layout.physical(width, to_version)
    if not client.has_collection(target):
        raise FileNotFoundError(f"{target} does not exist (kept versions: "
                                f"{versions(client, layout, width)})")
    ensure_loaded(client, target)
    fields = list(describe_fields(client.describe_collection(current)))
    touched, last = catch_up(client, current, target, fields)
    return _swap(client, layout, width, now, to_version, last, fields, grace_s, False, 0,
                 touched, None)


def _swap(client: Any, layout: Layout, width: int, old_version: int, new_version: int,
          last: dict[str, str], fields: list[str], grace_s: float, drop_old: bool,
          copied: int, touched: int, recall: float | None) -> SwapReport:
    old, new = layout.physical(width, old_version), layout.physical(width, new_version)
    move_alias(client, layout, width, new_version)
    log.info("alias %s now points at %s", layout.alias(width), new)
    time.sleep(grace_s)  # writes in flight at the swap land on the old version: wait for them
    reconciled = reconcile(client, old, new, last, fields)
    dropped: tuple[str, ...] = ()
    if drop_old:
        dropped = tuple(layout.physical(width, v) for v in versions(client, layout, width)
                        if v != new_version)
        for name in dropped:
            client.drop_collection(name)
    return SwapReport(width, old_version, new_version, copied, touched, reconciled,
                      count(client, new), recall, dropped)
