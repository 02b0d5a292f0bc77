"""Ordinary mistakes end in one line naming the flag or the line, with the exit code of
the table (mmsearch.app.exits), never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.data import write_items
from support.processes import env, free_port, start_lite_server


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmsearch.app.cli", *argv], cwd=cwd,
                          capture_output=True, text=True, env=env(), timeout=300)


def assert_one_line(done: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert done.returncode == code, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, done.stderr[-2000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_items(tmp_path_factory.mktemp("cli") / "data", 4)


def test_a_store_held_by_another_process(models_dir: Path, data: Path, tmp_path: Path) -> None:
    store = tmp_path / "held.db"
    server = start_lite_server(store, free_port())
    try:
        done = run("collections", "describe", "--uri", str(store), cwd=tmp_path)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert_one_line(done, 1, "open in another process", "mmsearch lite-server")


@pytest.mark.parametrize(("argv", "code", "needle"), [
    (["--shard", "9/2"], 2, "--shard"),
    (["--shard", "x"], 2, "--shard"),
    (["--batch-size", "-5"], 2, "--batch-size"),
    (["--uri", "{tmp}/not-a-db-folder"], 1, "ending in .db"),
])
def test_bad_ingest_flags(models_dir: Path, data: Path, tmp_path: Path, argv: list[str],
                          code: int, needle: str) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    base = ["ingest", "--manifest", str(data), "--models-dir", str(models_dir), "--model",
            "tiny", "--state-dir", str(tmp_path / "state"), "--no-progress"]
    if "--uri" not in argv:
        base += ["--uri", str(tmp_path / "m.db")]
    assert_one_line(run(*base, *argv, cwd=tmp_path), code, needle)


def test_a_malformed_queries_line_names_the_line(models_dir: Path, tmp_path: Path) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"qid": 1, "text": "red"}) + "\n{broken\n")
    done = run("search", "--queries", str(queries), "--output", str(tmp_path / "out.jsonl"),
               "--uri", str(tmp_path / "m.db"), "--models-dir", str(models_dir),
               "--model", "tiny", cwd=tmp_path)
    assert_one_line(done, 1, f"{queries}:2")


def test_the_shipped_model_is_found_from_any_folder(tmp_path: Path) -> None:
    """No --models-dir, run from a folder with no models/: the project's own folder."""
    done = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "collections", "create",
                           "--uri", str(tmp_path / "m.db")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "created: items_d32" in done.stdout
    missing = run("collections", "create", "--uri", str(tmp_path / "m.db"), "--model",
                  "nosuch", cwd=tmp_path)
    assert_one_line(missing, 1, "no model 'nosuch'", "MMSEARCH_MODELS", "--models-dir")


def test_describing_a_base_that_does_not_exist_fails(tmp_path: Path) -> None:
    done = run("collections", "describe", "--base", "nosuch", "--uri", str(tmp_path / "m.db"),
               cwd=tmp_path)
    assert_one_line(done, 1, "base 'nosuch' has no collections")


def test_delete_command_reads_ids_from_stdin(models_dir: Path, data: Path,
                                             tmp_path: Path) -> None:
    common = ["--uri", str(tmp_path / "m.db"), "--models-dir", str(models_dir), "--model",
              "tiny", "--state-dir", str(tmp_path / "state"), "--no-progress"]
    run("ingest", "--manifest", str(data), *common, cwd=tmp_path)
    done = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "delete", "--ids", "-",
                           *common], input="item-1\nitem-3\nghost\n", cwd=tmp_path,
                          capture_output=True, text=True, env=env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "deleted 2 (1 not stored)" in done.stdout
    again = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "delete", "--ids", "-",
                            *common], input="item-1\nitem-3\nghost\n", cwd=tmp_path,
                           capture_output=True, text=True, env=env(), timeout=300)
    assert "already finished" in again.stdout  # the same deletes: checkpointed
