"""Overload on a real server on 127.0.0.1: past `max_concurrency` requests in flight a
request gets RESOURCE_EXHAUSTED at once (not a place in an unbounded queue), health keeps
answering, a client with the documented retry policy (mmsearch/v1/service_config.json) tries
again, and the held requests still finish."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mmsearch.app.commands.serve import retrying_channel
from mmsearch.rerank.metrics import SidecarMetrics
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import SearchParams, SearchQuery, SearchResult
from mmsearch.rerank.server import Sidecar, build_server
from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.sidecar_stack import call_code, server_settings_for_tests


class HeldSearches:
    """The stack's real pipeline, except that each batch of searches (the admission window
    runs them) first waits at a gate: the test decides how long requests stay in flight."""

    def __init__(self, pipeline: SearchPipeline) -> None:
        self.inner = pipeline
        self.gate = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def search_batch(self, items: Sequence[tuple[SearchQuery, SearchParams]]
                     ) -> list[SearchResult | Exception]:
        self.gate.wait(60)
        return self.inner.search_batch(items)


def test_past_max_concurrency_requests_are_shed_and_health_answers(stack: dict) -> None:
    from prometheus_client import CollectorRegistry

    held = HeldSearches(stack["pipeline"])
    settings = server_settings_for_tests()  # the default cap, as a user runs it
    registry = CollectorRegistry()
    server, port, health = build_server(
        Sidecar(held, settings, SidecarMetrics.create(registry)), probe=lambda: True)
    server.start()
    health.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        search = search_pb2_grpc.SearchServiceStub(channel)
        request = pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="red face"))
        in_flight = [search.Search.future(request, timeout=60)
                     for _ in range(settings.max_concurrency)]
        deadline = time.monotonic() + 20  # every one of them holds a slot
        while (registry.get_sample_value("mmsearch_sidecar_in_flight") != settings.max_concurrency
               and time.monotonic() < deadline):
            time.sleep(0.02)
        assert registry.get_sample_value("mmsearch_sidecar_in_flight") == \
            settings.max_concurrency
        # one more: shed at once (a queued request would run out its 5 s deadline instead)
        code, details = call_code(search.Search, request, timeout=5)
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, details
        assert str(settings.max_concurrency) in details
        retrying = retrying_channel(f"127.0.0.1:{port}")  # what `mmsearch search` uses
        code, _ = call_code(search_pb2_grpc.SearchServiceStub(retrying).Search, request,
                            timeout=30)
        retrying.close()
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED  # still full after every attempt
        shed = registry.get_sample_value("mmsearch_sidecar_requests_total",
                                         {"rpc": "Search", "code": "RESOURCE_EXHAUSTED"})
        assert shed == 1 + 4  # the plain call, then the retry policy's maxAttempts
        checker = health_pb2_grpc.HealthStub(channel)
        deadline, status = time.time() + 10, None
        while time.time() < deadline and status != health_pb2.HealthCheckResponse.SERVING:
            status = checker.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING
        held.gate.set()
        assert all(len(f.result().hits) == 3 for f in in_flight)
        assert len(search.Search(request, timeout=30).hits) == 3  # slots were given back
    finally:
        held.gate.set()
        channel.close()
        health.stop()
        server.stop(0)
