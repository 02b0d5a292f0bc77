"""Real processes for tests: a worker command line, a milvus-lite server, what a finished
ingest must hold."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mmsearch.app.demo import free_port
from mmsearch.plugin.collections import count, ensure_loaded
from mmsearch.plugin.connection import MilvusTarget, connect, milvus_lite_executable

__all__ = ["free_port", "worker_command", "env", "checkpoint", "assert_complete",
           "start_lite_server", "serve_command", "wait_serving", "WIDTHS"]

WIDTHS = "8,16,32"


def worker_command(manifest: Path, uri: str, state: Path, models_dir: Path,
                   batch: int = 4) -> list[str]:
    return [sys.executable, "-m", "mmsearch.app.cli", "ingest", "--manifest", str(manifest),
            "--base", "items", "--uri", uri, "--state-dir", str(state),
            "--models-dir", str(models_dir), "--model", "tiny", "--batch-size", str(batch),
            "--no-progress"]


def env() -> dict[str, str]:
    return {**os.environ, "MMSEARCH_WIDTHS": WIDTHS, "PYTHONUNBUFFERED": "1"}


def checkpoint(state: Path) -> dict:
    files = list((state / "checkpoints").glob("*.json"))
    return json.loads(files[0].read_text()) if files else {"offset": 0, "finished": False}


def assert_complete(uri: str, count_expected: int) -> None:
    client = connect(MilvusTarget(uri))
    expected = {f"item-{i}" for i in range(count_expected)}
    for width in WIDTHS.split(","):
        alias = f"items_d{width}"
        ensure_loaded(client, alias)  # Lite does not keep the load state across a reopen
        rows = client.query(alias, filter='id != ""', output_fields=["id"], limit=16384)
        ids = [r["id"] for r in rows]
        assert len(ids) == len(set(ids)), f"duplicates in {alias}"
        assert set(ids) == expected, f"{alias}: {len(expected - set(ids))} missing"
        assert count(client, alias) == count_expected
    client.close()


def start_lite_server(data_dir: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen([milvus_lite_executable(), "server", "--data-dir", str(data_dir),
                             "--host", "127.0.0.1", "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.2)
    proc.kill()
    pytest.fail("milvus-lite server did not start in 60 s")


def serve_command(uri: str, models_dir: Path, port: int, processes: int) -> list[str]:
    return [sys.executable, "-m", "mmsearch.app.cli", "serve", "--uri", uri,
            "--models-dir", str(models_dir), "--model", "tiny",
            "--address", f"127.0.0.1:{port}", "--processes", str(processes)]


def wait_serving(port: int, timeout_s: float = 120) -> None:
    deadline = time.time() + timeout_s
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        checker = health_pb2_grpc.HealthStub(channel)
        while time.time() < deadline:
            try:
                if checker.Check(health_pb2.HealthCheckRequest(), timeout=2).status == \
                        health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.3)
    pytest.fail(f"no SERVING answer on port {port} in {timeout_s} s")
