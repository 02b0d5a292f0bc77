"""The ingestion worker: validate -> batch -> encode once -> upsert every width -> checkpoint.

Order inside a batch: smaller widths first, the full-width collection last, then the
dead-letter lines, then the checkpoint. The full-width collection's content_hash is what
"unchanged" is judged by, so an item counts as stored only once every width has it; a crash
anywhere replays the batch, and upsert by primary key makes the replay harmless.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm

from mmsearch.encoders.errors import ConfigError, UsageError
from mmsearch.encoders.runtimes.base import Embeddings, Encoder
from mmsearch.plugin.collections import (
    collection_uuids,
    ensure_collections,
    ensure_loaded,
    existing_attrs,
)
from mmsearch.plugin.connection import Retrying
from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.index_spec import IndexSpec
from mmsearch.plugin.metrics import WorkerMetrics
from mmsearch.plugin.rows import RowBuilder
from mmsearch.plugin.schema import Layout, attr_type_of, server_supports_nullable
from mmsearch.plugin.sources import RawRecord, Source
from mmsearch.plugin.state import Checkpoint, StateStore
from mmsearch.plugin.validate import Candidate, Deletion, RecordValidator, Rejection, check_attrs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError("--shard", f"must look like i/N, got {text!r}") from None
        if count < 1 or not 0 <= index < count:
            raise UsageError("--shard", f"{text}: need 0 <= i < N")
        return cls(index, count)

    def owns(self, record: RawRecord) -> bool:
        """sha1(id) mod N == i (stable across machines); records without a usable id go to
        shard 0 so they are dead-lettered exactly once."""
        record_id = record.data.get("id") if record.data else None
        if not isinstance(record_id, str):
            return self.index == 0
        return int(hashlib.sha1(record_id.encode()).hexdigest(), 16) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class IngestOptions:
    layout: Layout
    specs: Mapping[int, IndexSpec]
    state_dir: Any
    batch_size: int = 64
    shard: Shard = field(default_factory=Shard)
    declared_attrs: Mapping[str, str] | None = None
    progress: bool = True


@dataclass(frozen=True)
class PreparedBatch:
    """A batch encoded and ready to write: what the writer thread needs, nothing more."""

    records: int
    rejections: list[Rejection]
    items: list[Candidate]
    embeddings: Embeddings | None
    unchanged: int
    deletions: list[str] = field(default_factory=list)  # stored ids to delete
    not_stored: int = 0  # deletes of ids that are not stored: counted, not an error


@dataclass
class IngestSummary:
    ingested: int = 0
    unchanged: int = 0
    rejected: int = 0
    already_finished: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    deadletter: str | None = None  # the dead-letter file, when anything was rejected
    deleted: int = 0
    not_stored: int = 0

    def line(self) -> str:
        if self.already_finished:
            return "already finished: nothing to do (the manifest has not changed)"
        line = f"ingested {self.ingested}, unchanged {self.unchanged}, rejected {self.rejected}"
        if self.deleted or self.not_stored:
            line += f", deleted {self.deleted} ({self.not_stored} not stored)"
        return line + (f" (why: {self.deadletter})" if self.rejected and self.deadletter
                       else "")


def infer_attrs(candidates: list[Candidate]) -> dict[str, str]:
    """First-seen type per attr name; fixed from then on by the collection schema."""
    attrs: dict[str, str] = {}
    for candidate in candidates:
        for name, value in candidate.attrs.items():
            kind = attr_type_of(value)
            if kind is not None and name not in attrs:
                attrs[name] = kind
    return attrs


def check_widths(widths: tuple[int, ...], encoder: Encoder) -> None:
    """The last configured width is the full-width collection: it must be the model's."""
    if widths[-1] != encoder.config.width_max:
        raise ConfigError("widths", f"{list(widths)} must end at the model's width "
                          f"{encoder.config.width_max} (model {encoder.config.name})")


class IngestWorker:
    def __init__(self, encoder: Encoder, milvus: Retrying, options: IngestOptions,
                 metrics: WorkerMetrics | None = None) -> None:
        self.encoder = encoder
        self.milvus = milvus
        self.options = options
        self.metrics = metrics
        self.attrs: dict[str, str] | None = None
        self.collections: dict[str, str | None] = {}  # alias -> collection uuid
        self.nullable = True
        self.stages: dict[str, float] = {}  # seconds per stage, for the summary and benchmarks
        check_widths(options.layout.widths, encoder)
        milvus.on_reconnect = self._reload
        if metrics is not None:
            milvus.on_retry = metrics.retries.inc

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - started

    def _reload(self, client: Any) -> None:
        if self.attrs is not None:
            for width in self.options.layout.widths:
                ensure_loaded(client, self.options.layout.alias(width))

    def _ensure(self, attrs: Mapping[str, str]) -> None:
        with self._stage("create/verify collections"):
            self.milvus.call("create collections", lambda c: ensure_collections(
                c, self.options.layout, attrs, self.encoder.model_id, self.options.specs))
            self.collections = self.milvus.call(
                "describe collections", lambda c: collection_uuids(c, self.options.layout))
            version = self.milvus.call("server version", lambda c: c.get_server_version())
        self.nullable = server_supports_nullable(version)
        if not self.nullable:
            log.warning("Milvus %s has no nullable fields: a missing label or attr is stored as "
                        "its type's zero value ('', 0, 0.0, false)", version)
        self.attrs = dict(attrs)

    def _batches(self, source: Source, start_after: int
                 ) -> Iterator[tuple[list[RawRecord], int]]:
        """(records of this shard, last line covered) in groups of batch_size."""
        batch: list[RawRecord] = []
        last = start_after
        for record in source.records(start_after):
            last = record.line
            if self.options.shard.owns(record):
                batch.append(record)
            if len(batch) >= self.options.batch_size:
                yield batch, last
                batch = []
        if batch or last > start_after:
            yield batch, last

    def run(self, source: Source) -> IngestSummary:
        store = StateStore(self.options.state_dir, source.path, self.options.layout.base,
                           str(self.options.shard), self.milvus.target.identity())
        with self._stage("fingerprint source"):
            fingerprint = source.fingerprint()
        checkpoint = self._checkpoint_for_this_store(store, source)
        if checkpoint and checkpoint.fingerprint == fingerprint and checkpoint.finished:
            log.info("%s: already finished for base %s", source.path, self.options.layout.base)
            return IngestSummary(already_finished=True)
        if checkpoint and checkpoint.fingerprint != fingerprint:
            log.warning("%s changed since the last run: processing it again from line 1 "
                        "(unchanged items are skipped)", source.path)
            checkpoint = None
        checkpoint = checkpoint or Checkpoint(store.source, fingerprint,
                                              self.options.layout.base, str(self.options.shard),
                                              store.target, dict(self.collections))
        if checkpoint.offset:
            log.info("resuming %s after line %d", source.path, checkpoint.offset)
        validator = RecordValidator(source.root)
        for raw in source.records(0):  # ids before the checkpoint, for duplicate detection
            if raw.line > checkpoint.offset:
                break
            if raw.data and isinstance(raw.data.get("id"), str):
                validator.remember(raw.data["id"], raw.line)
        self._start_schema()
        store.open_deadletter(checkpoint.deadletter_bytes)
        try:
            self._loop(source, store, checkpoint, validator)
        finally:
            store.close()
        counts = checkpoint.counts
        return IngestSummary(counts["ingested"], counts["unchanged"], counts["rejected"],
                             stage_seconds={k: round(v, 3) for k, v in self.stages.items()},
                             deadletter=str(store.deadletter_path),
                             deleted=counts.get("deleted", 0),
                             not_stored=counts.get("not_stored", 0))

    def _checkpoint_for_this_store(self, store: StateStore, source: Source
                                   ) -> Checkpoint | None:
        """The stored checkpoint, if the collections it describes are the base's now: the
        same uuids (the same store, even reached through another URI, as a lite-server on
        another port), or, for collections made before they carried one, the same target.
        Another store, or a base dropped or recreated since, is ingested again from line 1."""
        self.collections = self.milvus.call(
            "describe collections", lambda c: collection_uuids(c, self.options.layout))
        checkpoint = store.load()
        same = checkpoint is not None and checkpoint.collections == self.collections and (
            all(self.collections.values()) or checkpoint.target == store.target)
        if checkpoint and not same:
            log.warning("%s: base %s at %s is not the one the checkpoint describes (dropped "
                        "or recreated since): ingesting again from line 1", source.path,
                        self.options.layout.base, self.milvus.target.describe())
            return None
        return checkpoint

    def _start_schema(self) -> None:
        existing = self.milvus.call("describe collections",
                                    lambda c: existing_attrs(c, self.options.layout))
        declared = self.options.declared_attrs
        if declared is not None or existing is not None:
            self._ensure(declared if declared is not None else existing)

    def _loop(self, source: Source, store: StateStore, checkpoint: Checkpoint,
              validator: RecordValidator) -> None:
        """Encode batch N+1 while a single writer thread upserts batch N and then commits
        its checkpoint: batches are committed strictly in order, each only after Milvus
        acknowledged all its widths; an error in the writer surfaces here and stops the run."""
        bar = tqdm(desc=f"ingest {source.path.name}", unit="item",
                   disable=not self.options.progress)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-writer") as writer:
            pending: Future[None] | None = None
            for records, last_line in self._batches(source, checkpoint.offset):
                started = time.perf_counter()
                batch = self._prepare(records, validator)
                if pending is not None:
                    pending.result()
                pending = writer.submit(self._commit, batch, last_line, source, store,
                                        checkpoint, started)
                bar.update(len(records))
                bar.set_postfix(checkpoint.counts)
            if pending is not None:
                pending.result()
        bar.close()
        for width in self.options.layout.widths:
            if self.attrs is not None:
                alias = self.options.layout.alias(width)
                with self._stage("final flush"):
                    self.milvus.call("flush", lambda c, a=alias: c.flush(
                        a, timeout=self.milvus.timeout))
        checkpoint.finished = True
        store.commit(checkpoint)

    def _commit(self, batch: PreparedBatch, last_line: int, source: Source, store: StateStore,
                checkpoint: Checkpoint, started: float) -> None:
        ingested = self._write(batch.items, batch.embeddings) if batch.embeddings else 0
        self._delete(batch.deletions)
        checkpoint.counts["deleted"] = checkpoint.counts.get("deleted", 0) + len(batch.deletions)
        checkpoint.counts["not_stored"] = checkpoint.counts.get("not_stored", 0) + \
            batch.not_stored
        for rejection in batch.rejections:
            store.reject(rejection, str(source.path))
            if self.metrics:
                self.metrics.rejected.labels(rejection.field).inc()
        checkpoint.counts["ingested"] += ingested
        checkpoint.counts["unchanged"] += batch.unchanged
        checkpoint.counts["rejected"] += len(batch.rejections)
        checkpoint.offset = last_line
        checkpoint.collections = dict(self.collections)
        with self._stage("checkpoint"):
            store.commit(checkpoint)
        if self.metrics:
            self.metrics.read.inc(batch.records)
            self.metrics.batch_seconds.observe(time.perf_counter() - started)

    def _prepare(self, records: list[RawRecord], validator: RecordValidator) -> PreparedBatch:
        """Validate, look up stored hashes, encode what is new or changed (no writes)."""
        rejections: list[Rejection] = []
        candidates: list[Candidate] = []
        deletions: list[Deletion] = []
        with self._stage("read+validate"):
            for record in records:
                result = validator.validate(record)
                if isinstance(result, Rejection):
                    rejections.append(result)
                elif isinstance(result, Deletion):
                    deletions.append(result)
                else:
                    candidates.append(result)
        if candidates and self.attrs is None:
            self._ensure(infer_attrs(candidates))
        if self.attrs is not None:
            checked = [(c, check_attrs(c, self.attrs)) for c in candidates]
            rejections += [r for _, r in checked if r is not None]
            candidates = [c for c, r in checked if r is None]
        with self._stage("hash lookup"):  # one lookup for the upserts and the deletes
            stored = self._stored_hashes([c.id for c in candidates] + [d.id for d in deletions])
        changed = [c for c in candidates if stored.get(c.id) != c.content_hash]
        unchanged = len(candidates) - len(changed)
        deleting = {"deletions": [d.id for d in deletions if d.id in stored],
                    "not_stored": sum(d.id not in stored for d in deletions)}
        if not changed:
            return PreparedBatch(len(records), sorted(rejections, key=lambda r: r.line), [],
                                 None, unchanged, **deleting)
        with self._stage("encode"):
            embeddings = self.encoder.encode_items([c.image for c in changed],
                                                   [c.text for c in changed],
                                                   [c.id for c in changed])
        rejections += [Rejection(changed[p.index].line, p.item, p.field, p.reason)
                       for p in embeddings.problems]
        if self.metrics:
            self.metrics.encoded.inc(len(embeddings.indices))
        return PreparedBatch(len(records), sorted(rejections, key=lambda r: r.line),
                             [changed[i] for i in embeddings.indices], embeddings, unchanged,
                             **deleting)

    def _stored_hashes(self, ids: list[str]) -> dict[str, str]:
        """{id: content_hash} of the ids the base holds (the full width is written last)."""
        alias = self.options.layout.alias(self.options.layout.full_width)
        if not ids or self.collections.get(alias) is None:  # no base yet: nothing stored
            return {}
        rows = self.milvus.call("query hashes", lambda c: c.query(
            alias, filter=ids_expression(ids), output_fields=["id", "content_hash"],
            timeout=self.milvus.timeout))
        return {row["id"]: row["content_hash"] for row in rows}

    def _delete(self, ids: list[str]) -> None:
        """From every width, the full width last (its row is what 'stored' means), so a
        crash midway leaves the id stored and the replayed batch deletes it again."""
        layout = self.options.layout
        for width in layout.widths if ids else ():
            alias = layout.alias(width)
            with self._stage(f"delete d{width}"):
                self.milvus.call(f"delete {alias}", lambda c, a=alias: c.delete(
                    a, filter=ids_expression(ids), timeout=self.milvus.timeout))

    def _write(self, items: list[Candidate], embeddings: Embeddings) -> int:
        if not items:
            return 0
        layout = self.options.layout
        builder = RowBuilder(layout, self.attrs or {}, self.nullable)
        scalar_rows = builder.scalar_rows(items)
        for width in layout.widths:  # full width last: it is the "stored" marker
            rows = builder.width_rows(scalar_rows, embeddings, width)
            alias = layout.alias(width)
            with self._stage(f"upsert d{width}"):
                self.milvus.call(f"upsert {alias}", lambda c, a=alias, r=rows: c.upsert(
                    a, r, timeout=self.milvus.timeout))
            if self.metrics:
                self.metrics.written.labels(str(width)).inc(len(rows))
        return len(items)
