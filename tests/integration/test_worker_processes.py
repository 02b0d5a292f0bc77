"""Real processes: SIGKILL the worker anywhere, stop or hang the Milvus server mid-run."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from support.data import write_items
from support.processes import (
    assert_complete,
    checkpoint,
    env,
    free_port,
    start_lite_server,
    worker_command,
)


def test_sigkill_at_ten_random_points_loses_nothing(models_dir: Path, tmp_path: Path) -> None:
    # each kill lands a random moment after the checkpoint first advances, so kills land
    # mid-run whatever the machine's speed (fixed sleeps let a fast machine finish first)
    items = 3000
    manifest = write_items(tmp_path / "data", items)
    uri, state = str(tmp_path / "milvus.db"), tmp_path / "state"
    rng = random.Random(20261123)
    offsets = []
    for _ in range(10):
        proc = subprocess.Popen(worker_command(manifest, uri, state, models_dir, batch=2),
                                env=env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before, deadline = checkpoint(state)["offset"], time.time() + 60
        while (checkpoint(state)["offset"] <= before and proc.poll() is None
               and time.time() < deadline):
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        offsets.append(checkpoint(state)["offset"])
    assert offsets == sorted(offsets)
    mid_run = [offset for offset in offsets if 0 < offset < items]
    assert len(mid_run) >= 5, f"too few kills landed mid-run: {offsets}"
    done = subprocess.run(worker_command(manifest, uri, state, models_dir), env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert checkpoint(state)["finished"]
    assert_complete(uri, items)


def server_setup(tmp_path: Path) -> tuple[int, Path, str, Path, Path, int]:
    """300 items, and where a milvus-lite server for them will listen and keep its data."""
    items = 300
    port = free_port()
    return (items, write_items(tmp_path / "data", items), f"http://127.0.0.1:{port}",
            tmp_path / "state", tmp_path / "lite", port)


def start_mid_run(manifest: Path, uri: str, state: Path, data_dir: Path, port: int,
                  models_dir: Path, environ: dict[str, str]
                  ) -> tuple[subprocess.Popen, subprocess.Popen]:
    """The server, then a worker against it; returns once the checkpoint first advances."""
    server = start_lite_server(data_dir, port)
    worker = subprocess.Popen(worker_command(manifest, uri, state, models_dir), env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while checkpoint(state)["offset"] == 0 and time.time() < deadline:
        time.sleep(0.1)
    return server, worker


def test_milvus_server_stopped_mid_run_then_started_again(models_dir: Path,
                                                          tmp_path: Path) -> None:
    items, manifest, uri, state, data_dir, port = server_setup(tmp_path)
    server, worker = start_mid_run(manifest, uri, state, data_dir, port, models_dir, env())
    try:
        server.send_signal(signal.SIGKILL)
        server.wait()
        time.sleep(2.0)
        server = start_lite_server(data_dir, port)
        _, err = worker.communicate(timeout=300)
        if worker.returncode == 3:  # gave up after its retries: the documented message
            assert "re-run the same command to resume" in err
            again = subprocess.run(worker_command(manifest, uri, state, models_dir), env=env(),
                                   capture_output=True, text=True, timeout=300)
            assert again.returncode == 0, again.stderr[-2000:]
        else:
            assert worker.returncode == 0, err[-2000:]
            assert "Milvus unavailable during" in err  # it did retry
        assert_complete(uri, items)
    finally:
        worker.kill()
        server.kill()
        server.wait()


def test_hung_milvus_server_fails_the_worker_with_the_resume_message(
        models_dir: Path, tmp_path: Path) -> None:
    # SIGSTOP: connections stay open and nothing answers. Without a per-call timeout the
    # worker would wait forever; with milvus.call_timeout_s each call times out, is retried
    # with backoff, and the worker exits 3 with the documented message, then resumes.
    items, manifest, uri, state, data_dir, port = server_setup(tmp_path)
    hung_env = {**env(), "MMSEARCH_MILVUS__CALL_TIMEOUT_S": "1"}
    server, worker = start_mid_run(manifest, uri, state, data_dir, port, models_dir, hung_env)
    try:
        server.send_signal(signal.SIGSTOP)
        _, err = worker.communicate(timeout=120)
        assert worker.returncode == 3, err[-2000:]
        assert "re-run the same command to resume" in err
        server.send_signal(signal.SIGCONT)
        again = subprocess.run(worker_command(manifest, uri, state, models_dir), env=hung_env,
                               capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr[-2000:]
        assert_complete(uri, items)
    finally:
        worker.kill()
        server.send_signal(signal.SIGCONT)
        server.kill()
        server.wait()


def test_sigkill_during_deletes_then_resume_deletes_exactly_them(models_dir: Path,
                                                                 tmp_path: Path) -> None:
    """A manifest mixing deletes of stored items with new upserts, SIGKILLed at random
    moments after its checkpoint advances: the resumed run leaves every width without the
    deleted ids and with all the others."""
    import json

    from mmsearch.plugin.collections import ensure_loaded
    from mmsearch.plugin.connection import MilvusTarget, connect
    from support.processes import WIDTHS

    stored = 400
    first = write_items(tmp_path / "data", stored)
    uri, state = str(tmp_path / "milvus.db"), tmp_path / "state"
    subprocess.run(worker_command(first, uri, state, models_dir, batch=64), env=env(),
                   check=True, capture_output=True, timeout=300)
    extra = write_items(tmp_path / "data2", 100, seed=1, prefix="new")
    deleted = {f"item-{i}" for i in range(0, stored, 2)}
    lines = [json.dumps({"id": i, "op": "delete"}) for i in sorted(deleted)]
    lines += extra.read_text().splitlines()
    random.Random(7).shuffle(lines)
    mixed = tmp_path / "data2" / "mixed.jsonl"
    mixed.write_text("\n".join(lines) + "\n")
    rng = random.Random(20261202)

    def offset() -> int:
        for path in (state / "checkpoints").glob("*.json"):
            data = json.loads(path.read_text())
            if data.get("source", "").endswith("mixed.jsonl"):
                return int(data["offset"])
        return 0

    offsets = []
    for _ in range(5):
        proc = subprocess.Popen(worker_command(mixed, uri, state, models_dir, batch=2),
                                env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        before, deadline = offset(), time.time() + 60
        while offset() <= before and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        offsets.append(offset())
    assert sum(0 < o < len(lines) for o in offsets) >= 3, f"kills not mid-run: {offsets}"
    done = subprocess.run(worker_command(mixed, uri, state, models_dir), env=env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = ({f"item-{i}" for i in range(stored)} - deleted) | {f"new-{i}" for i in
                                                                   range(100)}
    client = connect(MilvusTarget(uri))
    for width in WIDTHS.split(","):
        ensure_loaded(client, f"items_d{width}")
        ids = [r["id"] for r in client.query(f"items_d{width}", filter='id != ""',
                                             output_fields=["id"], limit=16384)]
        assert len(ids) == len(set(ids)) and set(ids) == expected, width
    client.close()
