"""`mmsearch serve --processes 2` as a user runs it: two worker processes on one port over
a shared Milvus (a milvus-lite server), both answering; a second, unrelated server on that
address is refused; SIGTERM stops the group."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.data import write_items
from support.processes import (
    env,
    free_port,
    serve_command,
    start_lite_server,
    wait_serving,
    worker_command,
)


def child_pids(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.add(int(entry.name))
    return found


@pytest.fixture(scope="module")
def shared_milvus(models_dir: Path, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[str]:
    root = tmp_path_factory.mktemp("processes")
    port = free_port()
    lite = start_lite_server(root / "milvus", port)
    uri = f"http://127.0.0.1:{port}"
    manifest = write_items(root / "data", 24)
    subprocess.run(worker_command(manifest, uri, root / "state", models_dir), env=env(),
                   check=True, capture_output=True, timeout=300)
    yield uri
    lite.kill()
    lite.wait()


def test_two_worker_processes_share_the_port_and_a_stranger_is_refused(
        shared_milvus: str, models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    environ = {**env(), "MMSEARCH_MODELS__SCORER": ""}  # the tiny models folder has none
    group = subprocess.Popen(serve_command(shared_milvus, models_dir, port, 2), env=environ,
                             stderr=subprocess.PIPE, text=True)
    try:
        wait_serving(port)
        workers = child_pids(group.pid)
        assert len(workers) >= 2  # spawn's resource tracker may be a third child
        answered_by: set[str] = set()
        for _ in range(40):  # fresh connections: the kernel spreads them over the workers
            with grpc.insecure_channel(f"127.0.0.1:{port}",
                                       options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
                reply, call = search_pb2_grpc.SearchServiceStub(ch).Search.with_call(
                    pb.SearchRequest(base="items", top_k=3, query=pb.Query(id="item-3")),
                    timeout=30)
                assert len(reply.hits) == 3
                answered_by.add(dict(call.trailing_metadata())["x-served-by"])
        assert len(answered_by) == 2, answered_by
        for processes in (1, 2):  # a second server, single or grouped, gets the port error
            second = subprocess.run(serve_command(shared_milvus, models_dir, port, processes),
                                    env=environ, capture_output=True, text=True, timeout=120)
            assert second.returncode != 0
            assert "cannot listen on" in second.stderr, second.stderr[-2000:]
        wait_serving(port, timeout_s=10)  # the group still serves
    finally:
        group.send_signal(signal.SIGTERM)
        try:
            _, errors = group.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            group.kill()
            _, errors = group.communicate()
    assert group.returncode == 0, errors[-3000:]
    time.sleep(0.5)
    alive = [pid for pid in workers if Path(f"/proc/{pid}").exists()
             and "Z" not in (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1][:3])]
    assert not alive, f"workers left running: {alive}"


def test_processes_must_be_positive(models_dir: Path) -> None:
    result = subprocess.run(serve_command("x.db", models_dir, free_port(), 0), env=env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "--processes" in result.stderr


def test_a_worker_that_cannot_start_stops_the_group(tmp_path: Path) -> None:
    empty = tmp_path / "models"
    empty.mkdir()
    result = subprocess.run(serve_command(str(tmp_path / "x.db"), empty, free_port(), 2),
                            env=env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "a worker could not start" in result.stderr and "no model" in result.stderr
