"""The sidecar over a real `milvus-lite server` process that hangs (SIGSTOP), is killed and
is started again: health follows Milvus (SERVING -> NOT_SERVING -> SERVING); a search while
Milvus hangs gets DEADLINE_EXCEEDED from the sidecar at its deadline (not a hold on its slot
forever), and one while Milvus is down gets UNAVAILABLE inside its deadline, not after the
whole retry backoff."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mmsearch.app.demo import free_port
from mmsearch.app.wiring import milvus_health_probe
from mmsearch.encoders import load_encoder
from mmsearch.plugin.connection import MilvusTarget, Retrying
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import Limits
from mmsearch.rerank.server import Sidecar, build_server
from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.data import write_items
from support.processes import start_lite_server
from support.sidecar_stack import call_code, server_settings_for_tests

WIDTHS = (8, 16, 32)
SERVING, NOT_SERVING = (health_pb2.HealthCheckResponse.SERVING,
                        health_pb2.HealthCheckResponse.NOT_SERVING)


def wait_for(check: object, want: object, seconds: float = 30) -> object:
    deadline, got = time.time() + seconds, None
    while time.time() < deadline:
        got = check()
        if got == want:
            break
        time.sleep(0.2)
    return got


def test_health_follows_milvus_and_search_fails_fast_while_it_is_down(
        models_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    uri, data_dir = f"http://127.0.0.1:{port}", tmp_path / "lite"
    lite = start_lite_server(data_dir, port)
    server = None
    try:
        encoder = load_encoder("onnx", export_dir=models_dir / "export" / "tiny")
        milvus = Retrying(MilvusTarget(uri))
        options = IngestOptions(Layout("items", WIDTHS), specs_for(WIDTHS, {}),
                                tmp_path / "state", batch_size=16, progress=False)
        IngestWorker(encoder, milvus, options).run(open_source(write_items(tmp_path / "d", 20)))
        pipeline = SearchPipeline(encoder, milvus, WIDTHS, specs_for(WIDTHS, {}),
                                  Limits(max_top_k=20, max_candidates=50, default_candidates=20,
                                         rerank_depth=64),
                                  coarse_width=16)
        server, grpc_port, health = build_server(
            Sidecar(pipeline, server_settings_for_tests()),
            probe=milvus_health_probe(milvus, timeout_s=1.0))
        health.interval_s = 0.2
        server.start()
        health.start()
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        search = search_pb2_grpc.SearchServiceStub(channel)
        checker = health_pb2_grpc.HealthStub(channel)

        def status() -> int:
            return checker.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status

        request = pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="red face"),
                                   deadline_ms=3000)
        assert wait_for(status, SERVING) == SERVING
        assert len(search.Search(request, timeout=30).hits) == 3

        lite.send_signal(signal.SIGSTOP)  # hung: connections open, nothing answers
        assert wait_for(status, NOT_SERVING) == NOT_SERVING
        code, details = call_code(search.Search, request, timeout=10)
        assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
        assert "Milvus did not answer" in details  # the sidecar's answer at 3 s, not grpc's
        lite.send_signal(signal.SIGCONT)
        assert wait_for(status, SERVING) == SERVING

        lite.send_signal(signal.SIGKILL)
        lite.wait()
        assert wait_for(status, NOT_SERVING) == NOT_SERVING
        # 3 s budget, 10 s gRPC deadline: the retries stop at the budget and say why
        code, details = call_code(search.Search, request, timeout=10)
        assert code == grpc.StatusCode.UNAVAILABLE, details
        assert "127.0.0.1" not in details and str(port) not in details  # no internal address

        lite = start_lite_server(data_dir, port)
        assert wait_for(status, SERVING, 60) == SERVING

        def hits() -> int:
            try:
                return len(search.Search(request, timeout=30).hits)
            except grpc.RpcError:
                return -1  # collections still loading after the restart
        assert wait_for(hits, 3, 60) == 3
        channel.close()
        health.stop()
    finally:
        if server is not None:
            server.stop(0)
        lite.kill()
        lite.wait()
