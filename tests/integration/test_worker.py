"""The worker against real Milvus Lite: every width, typed attrs, idempotence, dead letters."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import ModelMismatchError
from mmsearch.plugin.collections import SchemaMismatchError, count, ensure_collections
from mmsearch.plugin.connection import MilvusTarget, Retrying
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker, Shard
from support.data import write_items

WIDTHS = (8, 16, 32)


@pytest.fixture(scope="module")
def encoder(models_dir: Path):  # noqa: ANN201
    return load_encoder("onnx", export_dir=models_dir / "export" / "tiny", batch_size=8)


def make_worker(encoder, tmp_path: Path, base: str = "items", shard: Shard | None = None,  # noqa: ANN001
                declared: dict | None = None) -> tuple[IngestWorker, Retrying]:
    milvus = Retrying(MilvusTarget(str(tmp_path / "milvus.db")))
    options = IngestOptions(Layout(base, WIDTHS), specs_for(WIDTHS, {}), tmp_path / "state",
                            batch_size=8, shard=shard or Shard(), declared_attrs=declared,
                            progress=False)
    return IngestWorker(encoder, milvus, options), milvus


def ids_in(milvus: Retrying, alias: str) -> list[str]:
    return sorted(r["id"] for r in milvus.client.query(alias, filter='id != ""',
                                                          output_fields=["id"], limit=16384))


def test_ingest_writes_every_width_with_typed_attrs(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = write_items(tmp_path / "data", 30)
    worker, milvus = make_worker(encoder, tmp_path)
    summary = worker.run(open_source(manifest))
    assert (summary.ingested, summary.unchanged, summary.rejected) == (30, 0, 0)
    expected = sorted(f"item-{i}" for i in range(30))
    for width in WIDTHS:
        assert ids_in(milvus, f"items_d{width}") == expected
        row = milvus.client.query(f"items_d{width}", filter='id == "item-4"',
                                  output_fields=["vector", "category", "rank", "score", "flag"])[0]
        assert len(row["vector"]) == width
        assert abs(np.linalg.norm(row["vector"]) - 1) < 1e-4
        assert (row["category"], row["rank"], row["flag"]) == ("b", 4, True)
        assert abs(row["score"] - 0.4) < 1e-9
    # filters work on typed attrs
    hits = milvus.client.query("items_d8", filter='category == "a" and rank >= 9',
                               output_fields=["id"])
    assert sorted(h["id"] for h in hits) == [f"item-{i}" for i in (12, 15, 18, 21, 24, 27, 9)]
    # 2x2 spatial cells + the colour cell
    local = milvus.client.query("items_d32", filter='id == "item-0"', output_fields=["local"])
    cells = np.frombuffer(base64.b64decode(local[0]["local"]), dtype="<f2").reshape(5, 8)
    np.testing.assert_allclose(np.linalg.norm(cells.astype(np.float32), axis=1), 1, atol=2e-3)
    # the stored full-width vector is what the encoder gives for that item
    item = json.loads(manifest.read_text().splitlines()[0])
    fresh = encoder.encode_items([(manifest.parent / item["image"]).read_bytes()], [item["text"]])
    stored = milvus.client.query("items_d32", filter='id == "item-0"', output_fields=["vector"])
    np.testing.assert_allclose(stored[0]["vector"], fresh.at_width(32)[0], atol=1e-5)


def test_rerun_is_a_noop_and_changed_content_is_replaced(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = write_items(tmp_path / "data", 12)
    worker, milvus = make_worker(encoder, tmp_path)
    worker.run(open_source(manifest))
    assert make_worker(encoder, tmp_path)[0].run(open_source(manifest)).already_finished
    lines = manifest.read_text().splitlines()
    changed = json.loads(lines[3])
    changed["text"] = "a green heart"
    lines[3] = json.dumps(changed)
    manifest.write_text("\n".join(lines) + "\n")
    summary = make_worker(encoder, tmp_path)[0].run(open_source(manifest))
    assert (summary.ingested, summary.unchanged) == (1, 11)
    for width in WIDTHS:
        assert count(milvus.client, f"items_d{width}") == 12


def test_bad_records_are_dead_lettered_and_good_ones_ingested(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    manifest = write_items(data, 6)
    (data / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "outside.png").write_bytes((data / "img" / "item-0.png").read_bytes())
    bad = [
        b'{"id": "unreadable", "image": "broken.png", "text": "x"}',
        b'{"id": "missing", "image": "img/nope.png"}',
        b'{"id": "escape", "image": "../outside.png"}',
        b'{"id": "absolute", "image": "/etc/hostname"}',
        b'{"id": "badattr", "text": "red face", "attrs": {"rank": "high"}}',
        b'{"id": "nested", "text": "red face", "attrs": {"category": {"x": 1}}}',
        b'{"id": "newattr", "text": "red face", "attrs": {"colour": "red"}}',
        b'{"id": "item-2", "text": "duplicate of line 3"}',
        b'{"id": "surrogate", "text": "\\ud800"}',
        b'{"id": "empty", "text": "   "}',
        b'{"id": "nothing", "image": null, "text": null}',
        b'{"id": 5, "text": "number id"}',
        b'{"text": "no id"}',
        b'["not", "an", "object"]',
        b'{"id": "latin1", "text": "caf\xe9"}',
        b'{"id": "truncated json", ',
    ]
    with open(manifest, "ab") as handle:
        handle.write(b"\n".join(bad) + b"\n")
    worker, milvus = make_worker(encoder, tmp_path)
    summary = worker.run(open_source(manifest))
    assert (summary.ingested, summary.rejected) == (6, len(bad))
    dead = [json.loads(line) for line in
            next((tmp_path / "state" / "deadletter").glob("*.jsonl")).read_text().splitlines()]
    by_line = {d["line"]: d for d in dead}
    expect = {7: ("image", "decodable"), 8: ("image", "not found"), 9: ("image", "escapes"),
              10: ("image", "absolute"), 11: ("attrs.rank", "conflicts"),
              12: ("attrs.category", "unsupported"), 13: ("attrs.colour", "not a field"),
              14: ("id", "duplicate id in this manifest (first on line 3)"),
              15: ("text", "surrogates"), 16: ("text", "empty"), 17: ("image,text", "neither"),
              18: ("id", "missing"), 19: ("id", "missing"), 20: ("line", "not a JSON object"),
              21: ("line", "UTF-8"), 22: ("line", "not valid JSON")}
    assert set(by_line) == set(expect)
    for line, (field, reason) in expect.items():
        assert by_line[line]["field"] == field, by_line[line]
        assert reason in by_line[line]["reason"], by_line[line]
    assert by_line[7]["id"] == "unreadable" and by_line[7]["source"].endswith("items.jsonl")
    assert ids_in(milvus, "items_d8") == [f"item-{i}" for i in range(6)]


def test_existing_collection_with_other_schema_is_not_touched(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    milvus = Retrying(MilvusTarget(str(tmp_path / "milvus.db")))
    milvus.client.create_collection("items_d16_v1", dimension=12)
    milvus.client.create_alias("items_d16_v1", "items_d16")
    worker, _ = make_worker(encoder, tmp_path)
    with pytest.raises(SchemaMismatchError, match="items_d16.*exists with another schema"):
        worker.run(open_source(write_items(tmp_path / "data", 3)))
    assert count(milvus.client, "items_d16") == 0


def test_collections_built_by_another_model_are_refused(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    milvus = Retrying(MilvusTarget(str(tmp_path / "milvus.db")))
    ensure_collections(milvus.client, Layout("items", WIDTHS), {}, "someothermodel",
                       specs_for(WIDTHS, {}))
    worker, _ = make_worker(encoder, tmp_path, declared={})
    with pytest.raises(ModelMismatchError, match="someothermodel"):
        worker.run(open_source(write_items(tmp_path / "data", 3)))


def test_shards_split_a_manifest_exactly(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = write_items(tmp_path / "data", 20)
    totals = 0
    for index in range(3):
        worker, milvus = make_worker(encoder, tmp_path, shard=Shard(index, 3))
        totals += worker.run(open_source(manifest)).ingested
    assert totals == 20
    assert ids_in(milvus, "items_d32") == sorted(f"item-{i}" for i in range(20))


def test_parquet_and_image_folder_sources(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = write_items(tmp_path / "data", 5)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for row in rows:
        row["attrs"] = json.dumps(row["attrs"])
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "items.parquet")
    worker, milvus = make_worker(encoder, tmp_path, base="pq")
    assert worker.run(open_source(tmp_path / "data" / "items.parquet")).ingested == 5
    (tmp_path / "data" / "img" / "item-1.txt").write_text("a caption")
    worker, _ = make_worker(encoder, tmp_path, base="folder")
    assert worker.run(open_source(tmp_path / "data" / "img")).ingested == 5
    assert ids_in(milvus, "folder_d8") == [f"item-{i}.png" for i in range(5)]


@contextmanager
def watching(worker: IngestWorker, inbox: Path) -> Iterator[None]:
    """A --watch worker on `inbox` in a thread for the duration of the block."""
    import threading

    from mmsearch.app.commands.ingest import watch

    stop = threading.Event()
    thread = threading.Thread(target=watch, args=(worker, inbox, 0.2, stop), daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def wait_for_count(milvus: Retrying, alias: str, count_: int, deadline: float) -> None:
    while count_or_zero(milvus, alias) < count_ and time.time() < deadline:
        time.sleep(0.2)


def test_watch_processes_each_new_manifest_once(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    inbox = tmp_path / "inbox"
    write_items(inbox, 4, prefix="first").rename(inbox / "a.jsonl")
    worker, milvus = make_worker(encoder, tmp_path)
    deadline = time.time() + 60
    with watching(worker, inbox):
        wait_for_count(milvus, "items_d8", 4, deadline)
        write_items(inbox, 3, seed=5, prefix="second").rename(inbox / "b.jsonl")
        wait_for_count(milvus, "items_d8", 7, deadline)
    assert ids_in(milvus, "items_d8") == sorted(
        [f"first-{i}" for i in range(4)] + [f"second-{i}" for i in range(3)])
    checkpoints = sorted((tmp_path / "state" / "checkpoints").glob("*.json"))
    assert [json.loads(p.read_text())["finished"] for p in checkpoints] == [True, True]


def count_or_zero(milvus: Retrying, alias: str) -> int:
    return count(milvus.client, alias) if milvus.client.has_collection(alias) else 0


def test_metrics_count_what_the_worker_did(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    from prometheus_client import CollectorRegistry

    from mmsearch.plugin.metrics import WorkerMetrics

    manifest = write_items(tmp_path / "data", 5)
    with open(manifest, "a") as handle:
        handle.write('{"id": "bad", "image": "img/missing.png"}\n')
    registry = CollectorRegistry()
    worker, _ = make_worker(encoder, tmp_path)
    worker.metrics = WorkerMetrics.create(registry)
    worker.run(open_source(manifest))

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("mmsearch_worker_records_read_total") == 6
    assert value("mmsearch_worker_records_encoded_total") == 5
    assert value("mmsearch_worker_records_written_total", width="32") == 5
    assert value("mmsearch_worker_records_rejected_total", field="image") == 1
    assert value("mmsearch_worker_batch_seconds_count") >= 1


def test_ids_with_quotes_backslashes_and_non_ascii_round_trip_and_control_chars_are_dead_letters(
        encoder, tmp_path: Path) -> None:  # noqa: ANN001
    odd = ['say "cheese"', "back\\slash", "café", "emoji-😀", "quote'single", 'mix\\"ed']
    data = tmp_path / "data"
    data.mkdir()
    lines = [json.dumps({"id": i, "text": "red face"}) for i in odd]
    lines[2:2] = [json.dumps({"id": "nul\x00id", "text": "red face"}),
                  json.dumps({"id": "new\nline", "text": "red face"})]
    manifest = data / "odd.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    worker, milvus = make_worker(encoder, tmp_path)
    summary = worker.run(open_source(manifest))
    assert (summary.ingested, summary.rejected) == (len(odd), 2)
    dead = [json.loads(line) for line in
            next((tmp_path / "state" / "deadletter").glob("*.jsonl")).read_text().splitlines()]
    assert sorted((d["line"], d["field"]) for d in dead) == [(3, "id"), (4, "id")]
    assert all("control character" in d["reason"] for d in dead)
    for width in WIDTHS:
        assert ids_in(milvus, f"items_d{width}") == sorted(odd)
    copy = data / "odd-again.jsonl"  # another source: no checkpoint, so the lookup by id runs
    copy.write_text(manifest.read_text())
    again = worker.run(open_source(copy))
    assert (again.ingested, again.unchanged) == (0, len(odd))


def _ingest_into(encoder, store: Path, state: Path, manifest: Path):  # noqa: ANN001, ANN202
    milvus = Retrying(MilvusTarget(str(store)))
    options = IngestOptions(Layout("items", WIDTHS), specs_for(WIDTHS, {}), state,
                            batch_size=8, progress=False)
    summary = IngestWorker(encoder, milvus, options).run(open_source(manifest))
    found = ids_in(milvus, "items_d8")
    milvus.client.close()
    return summary, found


def test_the_checkpoint_belongs_to_the_store_it_describes(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    """Same manifest, same state folder: another store, a dropped base, a store recreated
    under the same path are each ingested in full, never 'already finished'."""
    import shutil

    from mmsearch.plugin.collections import drop_base

    manifest = write_items(tmp_path / "data", 12)
    state = tmp_path / "state"
    expected = sorted(f"item-{i}" for i in range(12))
    first, found = _ingest_into(encoder, tmp_path / "a.db", state, manifest)
    assert first.ingested == 12 and found == expected
    again, _ = _ingest_into(encoder, tmp_path / "a.db", state, manifest)
    assert again.already_finished  # the same store: nothing to do
    other, found = _ingest_into(encoder, tmp_path / "b.db", state, manifest)
    assert other.ingested == 12 and found == expected  # another store: a job of its own
    milvus = Retrying(MilvusTarget(str(tmp_path / "a.db")))
    milvus.call("drop", lambda c: drop_base(c, Layout("items", WIDTHS)))
    milvus.client.close()
    dropped, found = _ingest_into(encoder, tmp_path / "a.db", state, manifest)
    assert dropped.ingested == 12 and found == expected
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_server(str(tmp_path / "b.db"))  # as a process exit does
    shutil.rmtree(tmp_path / "b.db")  # recreated under the same path
    recreated, found = _ingest_into(encoder, tmp_path / "b.db", state, manifest)
    assert recreated.ingested == 12 and found == expected


POISON = [  # every bad-record kind, each one line; the first batch holds the attr-name ones
    {"id": "reserved-attr", "text": "red face", "attrs": {"label": "x"}},
    {"id": "vector-attr", "text": "red face", "attrs": {"vector": 1}},
    {"id": "dash-attr", "text": "red face", "attrs": {"bad-key": "x"}},
    {"id": "nul\x00id", "text": "red face"},
    {"id": "line\nbreak", "text": "red face"},
    {"id": "", "text": "red face"},
    {"id": 7, "text": "red face"},
    {"text": "no id"},
    {"id": "nothing"},
    {"id": "badtext", "text": 5},
    {"id": "badattrs", "text": "red face", "attrs": [1]},
    {"id": "noimage", "image": "img/none.png"},
    {"id": "escape", "image": "../x.png"},
    {"id": "emptytext", "text": "  "},
]


def test_poisoned_manifest_never_stops_a_watch_worker(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    inbox = tmp_path / "inbox"
    good = [json.loads(line) for line in
            write_items(tmp_path / "src", 10, prefix="good").read_text().splitlines()]
    lines = [json.dumps(r) for pair in zip(POISON, good, strict=False) for r in pair]
    lines += [json.dumps(r) for r in POISON[len(good):]]
    lines += ["{not json", json.dumps(["not", "an", "object"])]
    inbox.mkdir()
    (tmp_path / "src" / "img").rename(inbox / "img")
    (inbox / "a.jsonl").write_text("\n".join(lines) + "\n")
    worker, milvus = make_worker(encoder, tmp_path)
    deadline = time.time() + 90
    with watching(worker, inbox):
        wait_for_count(milvus, "items_d8", 10, deadline)
        write_items(inbox / "next", 3, seed=5, prefix="next")
        (inbox / "next" / "items.jsonl").rename(inbox / "b.jsonl")
        for image in (inbox / "next" / "img").iterdir():
            image.rename(inbox / "img" / image.name)
        wait_for_count(milvus, "items_d8", 13, deadline)
    expected = sorted([f"good-{i}" for i in range(10)] + [f"next-{i}" for i in range(3)])
    for width in WIDTHS:
        assert ids_in(milvus, f"items_d{width}") == expected
    dead = [json.loads(line) for path in (tmp_path / "state" / "deadletter").glob("*.jsonl")
            for line in path.read_text().splitlines()]
    assert len(dead) == len(POISON) + 2  # one dead letter per bad record
    fields = {d["id"]: d["field"] for d in dead if d["id"]}
    assert fields["reserved-attr"] == "attrs.label" and fields["dash-attr"] == "attrs.bad-key"
    assert fields["vector-attr"] == "attrs.vector"
    described = milvus.client.describe_collection("items_d8")
    names = {f["name"] for f in described["fields"]}
    assert "bad-key" not in names and {"category", "rank", "score", "flag"} <= names


def test_image_folder_rejects_non_utf8_captions_and_counts_orphans(encoder,  # noqa: ANN001
                                                                   tmp_path: Path) -> None:
    folder = write_items(tmp_path / "data", 4).parent / "img"
    (folder / "item-1.txt").write_bytes(b"caf\xe9 au lait")  # Latin-1, not UTF-8
    (folder / "item-2.txt").write_text("a caption")
    (folder / "lonely.txt").write_text("no image of mine")
    worker, milvus = make_worker(encoder, tmp_path, base="folder")
    source = open_source(folder)
    summary = worker.run(source)
    assert (summary.ingested, summary.rejected) == (3, 1)
    assert summary.deadletter and "why:" in summary.line()
    dead = [json.loads(line) for line in Path(summary.deadletter).read_text().splitlines()]
    assert [(d["id"], d["field"]) for d in dead] == [("item-1.png", "text")]
    assert "not UTF-8" in dead[0]["reason"]
    assert ids_in(milvus, "folder_d8") == ["item-0.png", "item-2.png", "item-3.png"]
    assert source.notes() == ["1 caption file(s) with no image beside them were not read "
                              "(first: lonely.txt)"]


def test_deletes_remove_items_from_every_width(encoder, tmp_path: Path) -> None:  # noqa: ANN001
    manifest = write_items(tmp_path / "data", 10)
    worker, milvus = make_worker(encoder, tmp_path)
    worker.run(open_source(manifest))
    deletes = tmp_path / "data" / "deletes.jsonl"
    deletes.write_text("".join(json.dumps({"id": i, "op": "delete"}) + "\n"
                               for i in ("item-2", "item-7", "never-stored")))
    summary = worker.run(open_source(deletes))
    assert (summary.deleted, summary.not_stored, summary.rejected) == (2, 1, 0)
    assert "deleted 2 (1 not stored)" in summary.line()
    expected = sorted(f"item-{i}" for i in range(10) if i not in (2, 7))
    for width in WIDTHS:
        assert ids_in(milvus, f"items_d{width}") == expected
    bad = tmp_path / "data" / "bad-op.jsonl"
    bad.write_text(json.dumps({"id": "item-1", "op": "remove"}) + "\n")
    assert worker.run(open_source(bad)).rejected == 1  # an unknown op is a dead letter
    assert "item-1" in ids_in(milvus, "items_d8")
