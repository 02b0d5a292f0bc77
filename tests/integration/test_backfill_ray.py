"""`mmsearch backfill --engine ray` on a local Ray cluster the test starts (node on
127.0.0.1, usage stats off, half a CPU per actor: two whole-CPU actors on 2 cores would
wait for each other). One encoder actor is SIGKILLed mid-run: Ray restarts it and reruns
its block, and every width still holds each row exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support.data import write_items
from support.processes import WIDTHS, env, free_port

pytest.importorskip("ray", reason="the `scale` extra: pip install 'mmsearch[scale]'")

ITEMS = 240


def ray_env() -> dict[str, str]:
    # a throwaway cluster on 127.0.0.1: no token (Ray 2.60 turns token auth on by default)
    return {**env(), "RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_DOCKER_CPU_WARNING": "1",
            "RAY_AUTH_MODE": "disabled"}


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


@pytest.fixture()
def ray_cluster(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    start = subprocess.run([ray_cli(), "start", "--head", "--node-ip-address", "127.0.0.1",
                            "--port", str(port), "--num-cpus", "2", "--include-dashboard",
                            "false", "--disable-usage-stats"],
                           env=ray_env(), capture_output=True, text=True, timeout=300)
    assert start.returncode == 0, start.stderr[-3000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_cli(), "stop", "--force"], env=ray_env(), capture_output=True,
                       timeout=120)


def encoder_actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if title.startswith("ray::") and "EncodeBlocks" in title:
                pids.append(int(entry.name))
    return pids


def test_a_killed_actor_neither_loses_nor_doubles_rows(models_dir: Path, tmp_path: Path,
                                                       ray_cluster: str) -> None:
    manifest = write_items(tmp_path / "data", ITEMS)
    out = tmp_path / "bulk"
    command = [sys.executable, "-m", "mmsearch.app.cli", "backfill", "--manifest",
               str(manifest), "--base", "items", "--out", str(out), "--uri",
               str(tmp_path / "m.db"), "--models-dir", str(models_dir), "--model", "tiny",
               "--block-lines", "2", "--engine", "ray", "--address", ray_cluster,
               "--actors", "2", "--cpus-per-actor", "0.5", "--no-progress"]
    run = subprocess.Popen(command, env=ray_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    blocks = ITEMS // 2
    killed, written_at_kill = None, 0
    deadline = time.time() + 300
    while killed is None and run.poll() is None and time.time() < deadline:
        written = len(list((out / "blocks").glob("*.json"))) if out.exists() else 0
        actors = encoder_actor_pids()
        if written >= 3 and actors:
            killed, written_at_kill = actors[0], written
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = run.communicate(timeout=600)
    assert run.returncode == 0, stderr[-3000:]
    assert killed is not None and written_at_kill < blocks, "the run ended before the kill"
    manifest_out = json.loads((out / "manifest.json").read_text())
    assert manifest_out["rows"] == ITEMS
    expected = {f"item-{i}" for i in range(ITEMS)}
    for width in WIDTHS.split(","):
        ids = [row["id"] for (name,) in manifest_out["files"][width]
               for row in pq.read_table(out / name, columns=["id"]).to_pylist()]
        assert len(ids) == len(set(ids)) == ITEMS and set(ids) == expected, width
    assert "lines/s" in stdout  # the per-actor rate
    assert len(list((out / "blocks").glob("*.json"))) == blocks
