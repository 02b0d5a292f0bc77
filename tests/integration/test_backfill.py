"""`mmsearch backfill` on Milvus Lite and the tiny model: the bulk files hold exactly the
rows the upsert path writes (same ids, vectors and fields, per width), bad lines are
rejected by name, a rerun resumes instead of rewriting, and `--import` on Lite says it
cannot and points to `mmsearch ingest` before encoding anything."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from mmsearch.app.cli import main
from mmsearch.plugin.collections import ensure_loaded
from mmsearch.plugin.connection import MilvusTarget, connect
from support.data import write_items
from support.processes import WIDTHS


@pytest.fixture()
def widths(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setenv("MMSEARCH_WIDTHS", WIDTHS)
    return [int(w) for w in WIDTHS.split(",")]


def items_with_bad_lines(folder: Path) -> Path:
    path = write_items(folder, 30)
    lines = path.read_text().splitlines()
    lines[4] = "{not json"
    lines[11] = json.dumps({"id": "item-2", "text": "a duplicate id"})
    lines[17] = json.dumps({"id": "gone", "op": "delete"})
    lines[20] = json.dumps({"id": "item-20", "image": "img/missing.png"})
    path.write_text("\n".join(lines) + "\n")
    return path


def flags(models_dir: Path, uri: Path) -> list[str]:
    return ["--models-dir", str(models_dir), "--model", "tiny", "--uri", str(uri)]


def bulk_rows(out: Path, width: int) -> dict[str, dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    rows: dict[str, dict] = {}
    for (name,) in manifest["files"][str(width)]:
        for row in pq.read_table(out / name).to_pylist():
            assert row["id"] not in rows, f"{row['id']} written twice"
            rows[row["id"]] = row
    return rows


def test_bulk_files_hold_exactly_the_upserted_rows(models_dir: Path, tmp_path: Path,
                                                   widths: list[int]) -> None:
    manifest = items_with_bad_lines(tmp_path / "data")
    upserted = tmp_path / "upsert.db"
    assert main(["ingest", "--manifest", str(manifest), "--base", "items", "--state-dir",
                 str(tmp_path / "state"), "--no-progress", *flags(models_dir, upserted)]) == 0
    out = tmp_path / "bulk"
    assert main(["backfill", "--manifest", str(manifest), "--base", "items", "--out",
                 str(out), "--block-lines", "7", "--no-progress",
                 *flags(models_dir, tmp_path / "other.db")]) == 0
    client = connect(MilvusTarget(str(upserted)))
    for width in widths:
        ensure_loaded(client, f"items_d{width}")
        stored = {r["id"]: r for r in client.query(f"items_d{width}", filter='id != ""',
                                                   output_fields=["*"], limit=1000)}
        written = bulk_rows(out, width)
        assert set(written) == set(stored) and len(written) == 26
        for item_id, row in stored.items():
            bulk = written[item_id]
            np.testing.assert_array_equal(np.asarray(bulk.pop("vector"), np.float32),
                                          np.asarray(row.pop("vector"), np.float32))
            assert bulk == row, item_id  # label, content_hash, attrs, local: identical
    client.close()
    rejected = [json.loads(line) for f in sorted((out / "rejected").glob("*.jsonl"))
                for line in f.read_text().splitlines()]
    assert [(r["line"], r["field"]) for r in rejected] == \
        [(5, "line"), (12, "id"), (18, "op"), (21, "image")]
    assert json.loads((out / "manifest.json").read_text())["rejected"] == 4


def test_a_rerun_resumes_and_another_manifest_is_refused(models_dir: Path, tmp_path: Path,
                                                         widths: list[int],
                                                         capsys: pytest.CaptureFixture
                                                         ) -> None:
    manifest = write_items(tmp_path / "data", 12)
    out = tmp_path / "bulk"
    command = ["backfill", "--manifest", str(manifest), "--base", "items", "--out", str(out),
               "--block-lines", "5", "--no-progress", *flags(models_dir, tmp_path / "m.db")]
    assert main(command) == 0
    (out / "blocks" / "000001.json").unlink()  # as if killed before block 1 was recorded
    kept = {p: p.stat().st_mtime_ns for p in out.rglob("*.parquet") if "000001" not in str(p)}
    assert main(command) == 0
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # finished blocks not rewritten
    assert len(bulk_rows(out, widths[-1])) == 12
    with open(manifest, "a") as handle:
        handle.write(json.dumps({"id": "new", "text": "x"}) + "\n")
    capsys.readouterr()
    assert main(command) == 1
    assert "another plan" in capsys.readouterr().err


def test_import_on_milvus_lite_says_so_before_encoding(models_dir: Path, tmp_path: Path,
                                                       widths: list[int],
                                                       capsys: pytest.CaptureFixture) -> None:
    manifest = write_items(tmp_path / "data", 3)
    out = tmp_path / "bulk"
    assert main(["backfill", "--manifest", str(manifest), "--out", str(out), "--import",
                 *flags(models_dir, tmp_path / "m.db")]) == 1
    error = capsys.readouterr().err
    assert "Milvus Lite" in error and "no bulk import" in error and "mmsearch ingest" in error
    assert not out.exists()
