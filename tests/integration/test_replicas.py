"""Two `mmsearch serve` replicas on one Milvus (a milvus-lite server), reached the way the
README tells clients to: one channel over both addresses with the shipped service config
(round_robin + retries). One replica is SIGKILLed under a 16-client load: every request is
still answered, and the survivor's health stays SERVING."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mmsearch.app.commands.serve import retrying_channel
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

CLIENTS = 16


@pytest.fixture()
def replicas(models_dir: Path, tmp_path: Path) -> Iterator[list[tuple[int, subprocess.Popen]]]:
    lite_port = free_port()
    lite = start_lite_server(tmp_path / "milvus", lite_port)
    uri = f"http://127.0.0.1:{lite_port}"
    manifest = write_items(tmp_path / "data", 24)
    subprocess.run(worker_command(manifest, uri, tmp_path / "state", models_dir), env=env(),
                   check=True, capture_output=True, timeout=300)
    environ = {**env(), "MMSEARCH_MODELS__SCORER": ""}  # the tiny models folder has none
    started = []
    try:
        for _ in range(2):
            port = free_port()
            started.append((port, subprocess.Popen(serve_command(uri, models_dir, port, 1),
                                                   env=environ, stderr=subprocess.DEVNULL)))
        for port, _proc in started:
            wait_serving(port)
        yield started
    finally:
        for _port, proc in started:
            proc.kill()
            proc.wait()
        lite.kill()
        lite.wait()


def test_killing_a_replica_under_load_loses_no_request(
        replicas: list[tuple[int, subprocess.Popen]]) -> None:
    (port_a, victim), (port_b, survivor) = replicas
    channel = retrying_channel(f"ipv4:127.0.0.1:{port_a},127.0.0.1:{port_b}")
    stub = search_pb2_grpc.SearchServiceStub(channel)
    stop = threading.Event()
    lock = threading.Lock()
    answered: list[tuple[float, str]] = []  # (when, served by)
    failures: list[str] = []

    def client(worker: int) -> None:
        n = 0
        while not stop.is_set():
            request = pb.SearchRequest(base="items", top_k=3,
                                       query=pb.Query(id=f"item-{(worker + n) % 24}"))
            n += 1
            try:
                reply, call = stub.Search.with_call(request, timeout=30)
            except grpc.RpcError as exc:
                with lock:
                    failures.append(f"{exc.code().name}: {exc.details()}")
                continue
            with lock:
                if len(reply.hits) != 3:
                    failures.append(f"{len(reply.hits)} hits for {request.query.id}")
                answered.append((time.monotonic(), dict(call.trailing_metadata())["x-served-by"]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        deadline = time.monotonic() + 60
        while len({who for _, who in answered}) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)  # both replicas take load before one dies
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = time.monotonic()
        while sum(when > killed_at + 1 for when, _ in answered) < 4 * CLIENTS and \
                time.monotonic() < deadline + 60:
            time.sleep(0.1)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
    channel.close()

    assert not failures, failures[:5]
    before = {who for when, who in answered if when < killed_at}
    after = {who for when, who in answered if when > killed_at + 1}
    assert len(before) == 2, before  # the channel balanced over both replicas
    assert len(after) == 1 and after < before, after  # then over the survivor alone
    assert sum(when > killed_at + 1 for when, _ in answered) >= 4 * CLIENTS
    assert survivor.poll() is None
    with grpc.insecure_channel(f"127.0.0.1:{port_b}") as direct:
        health = health_pb2_grpc.HealthStub(direct).Check(health_pb2.HealthCheckRequest(),
                                                          timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
