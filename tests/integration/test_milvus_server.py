"""The worker's kill-and-resume test against a real Milvus 2.3.5 server.

Marked `milvus_server` (not in the default run: the server package is ~200 MB and must run
in a network namespace). `make test-milvus-2.3` installs it into its own venv and runs this
inside `unshare -n`."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.data import write_items
from support.processes import (
    assert_complete,
    checkpoint,
    env,
    free_port,
    worker_command,
)

SERVER_PYTHON = os.environ.get("TEST_MILVUS23_PYTHON")
pytestmark = [
    pytest.mark.milvus_server,
    pytest.mark.skipif(not SERVER_PYTHON, reason="set TEST_MILVUS23_PYTHON to a python "
                       "with milvus==2.3.5 (make test-milvus-2.3 does)"),
]


@pytest.fixture()
def milvus_uri(tmp_path: Path):  # noqa: ANN201
    port = free_port()
    server = subprocess.Popen([str(SERVER_PYTHON), str(Path(__file__).with_name(
        "milvus_server_start.py")), str(tmp_path / "milvus"), str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert server.stdout is not None
        line = server.stdout.readline()  # blocks until started (or the process died)
        assert line.startswith("READY"), "Milvus 2.3.5 server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()


def test_sigkill_resume_against_milvus_2_3(models_dir: Path, tmp_path: Path,
                                           milvus_uri: str) -> None:
    items = 1200
    manifest = write_items(tmp_path / "data", items)
    # one record without label/attrs: Milvus 2.3 has no nullable fields (zero values instead)
    with open(manifest, "a") as handle:
        handle.write('{"id": "item-1200", "text": "red face"}\n')
    state = tmp_path / "state"
    rng = random.Random(7)
    for _ in range(4):
        proc = subprocess.Popen(worker_command(manifest, milvus_uri, state, models_dir, batch=2),
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(2.0, 6.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done = subprocess.run(worker_command(manifest, milvus_uri, state, models_dir), env=env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "has no nullable fields" in done.stderr
    assert checkpoint(state)["finished"]
    assert_complete(milvus_uri, items + 1)


def test_index_bench_and_rebuild_against_milvus_2_3(models_dir: Path, tmp_path: Path,
                                                    milvus_uri: str) -> None:
    """IVF_PQ and SCANN exist on a real server (Milvus Lite has neither)."""
    manifest = write_items(tmp_path / "data", 400)
    done = subprocess.run(worker_command(manifest, milvus_uri, tmp_path / "state", models_dir,
                                         batch=64), env=env(), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    configs = tmp_path / "configs.json"
    configs.write_text(json.dumps([
        {"index_type": "FLAT"},
        {"index_type": "IVF_FLAT", "params": {"nlist": 16}, "search": [{"nprobe": 16}]},
        {"index_type": "IVF_PQ", "params": {"nlist": 16, "m": 4, "nbits": 8},
         "search": [{"nprobe": 16}]},
        {"index_type": "SCANN", "params": {"nlist": 16}, "search": [{"nprobe": 16,
                                                                     "reorder_k": 100}]},
    ]))
    results = tmp_path / "bench"
    bench = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "index", "bench", "--uri",
                            milvus_uri, "--width", "16", "--configs", str(configs),
                            "--results", str(results), "--queries", "50"],
                           env=env(), capture_output=True, text=True, timeout=900)
    assert bench.returncode == 0, bench.stderr[-3000:]
    payload = json.loads((results / "items_d16.json").read_text())
    assert payload["server"].startswith("v2.3")
    by_type = {c["index_type"]: c for c in payload["configs"]}
    assert "points" in by_type["IVF_PQ"] and "points" in by_type["SCANN"], by_type
    assert by_type["FLAT"]["points"][0]["recall@10"] == pytest.approx(1.0)
    rebuild = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "index", "rebuild",
                              "--uri", milvus_uri, "--width", "16", "--index-config",
                              '{"index_type": "IVF_FLAT", "params": {"nlist": 16}, '
                              '"search_params": {"nprobe": 16}}'],
                             env=env(), capture_output=True, text=True, timeout=900)
    assert rebuild.returncode == 0, rebuild.stderr[-3000:]
    assert "v1 -> v2" in rebuild.stdout


def backfill_command(manifest: Path, out: Path, uri: str, models_dir: Path,
                     *extra: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch.app.cli", "backfill", "--manifest", str(manifest),
            "--base", "items", "--out", str(out), "--uri", uri, "--models-dir",
            str(models_dir), "--model", "tiny", "--block-lines", "64", "--no-progress", *extra]


def test_backfill_import_against_milvus_2_3(models_dir: Path, tmp_path: Path,
                                            milvus_uri: str) -> None:
    """Bulk import on a real server (it reads the files from the shared filesystem): every
    width holds every row once behind its alias; an existing base needs --replace, which
    serves a new version and keeps the old; a failed import drops what it made and moves
    no alias."""
    from mmsearch.plugin.connection import MilvusTarget, connect

    items = 300
    manifest = write_items(tmp_path / "data", items)
    out = tmp_path / "bulk"
    done = subprocess.run(backfill_command(manifest, out, milvus_uri, models_dir, "--import"),
                          env=env(), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "utility.do_bulk_insert" in done.stdout
    assert_complete(milvus_uri, items)  # exact ids per width, no duplicates
    client = connect(MilvusTarget(milvus_uri))
    assert client.describe_alias("items_d32")["collection_name"] == "items_d32_v1"
    again = subprocess.run(backfill_command(manifest, out, milvus_uri, models_dir, "--import"),
                           env=env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 1 and "--replace" in again.stderr
    broken = json.loads((out / "manifest.json").read_text())["files"]["16"][0][0]
    original = (out / broken).read_bytes()
    (out / broken).write_bytes(b"not parquet")
    failed = subprocess.run(backfill_command(manifest, out, milvus_uri, models_dir, "--import",
                                             "--replace"),
                            env=env(), capture_output=True, text=True, timeout=900)
    assert failed.returncode == 1, failed.stderr[-3000:]
    names = set(client.list_collections())
    assert not {"items_d8_v2", "items_d16_v2", "items_d32_v2"} & names  # dropped
    assert client.describe_alias("items_d16")["collection_name"] == "items_d16_v1"
    (out / broken).write_bytes(original)
    replaced = subprocess.run(backfill_command(manifest, out, milvus_uri, models_dir,
                                               "--import", "--replace"),
                              env=env(), capture_output=True, text=True, timeout=900)
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    for width in (8, 16, 32):
        assert client.describe_alias(f"items_d{width}")["collection_name"] == \
            f"items_d{width}_v2"
        assert client.has_collection(f"items_d{width}_v1")  # kept for rollback
    client.close()
    assert_complete(milvus_uri, items)
