"""The gRPC sidecar: SearchService, RerankService, InfoService, grpc.health.v1, reflection.

Requests are parsed by our own deserializers so that a malformed message (e.g. a string
field that is not UTF-8) is INVALID_ARGUMENT naming it, not an opaque INTERNAL. Every
error goes through rerank.errors.status_for, the one mapping table.
"""

from __future__ import annotations

import hmac
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from mmsearch import __version__
from mmsearch.encoders.errors import MmsearchError
from mmsearch.rerank.admission import AdmissionWindow
from mmsearch.rerank.convert import (
    bad_utf8_field,
    rerank_from_pb,
    rerank_response,
    search_from_pb,
    search_response,
)
from mmsearch.rerank.errors import (
    OverloadedError,
    UnauthenticatedError,
    ValidationError,
    status_for,
)
from mmsearch.rerank.metrics import SidecarMetrics
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import SearchResult
from mmsearch.v1 import search_pb2 as pb

log = logging.getLogger(__name__)
SERVICES = ("mmsearch.v1.SearchService", "mmsearch.v1.RerankService", "mmsearch.v1.InfoService")
SPARE_THREADS = 4  # health, reflection and fast RESOURCE_EXHAUSTED replies past the cap
REQUEST_ID = "x-request-id"
# which process answered (host/pid), on every reply: tells replicas and workers apart
SERVED_BY = "x-served-by"
# failures of the server's side (logged as warnings); the rest are the client's
SERVER_SIDE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED")


@dataclass(frozen=True)
class ServerSettings:
    """What the server needs from the config's `server` and `limits` sections (the config
    holds the defaults); None means not set."""

    address: str
    max_message_bytes: int
    max_concurrency: int
    chunk_size: int
    default_deadline_ms: int | None  # for requests with no deadline of their own
    max_batch: int  # requests per SearchBatch call, and per admission-window batch
    batch_window_ms: float | None = None  # None: each Search runs alone on its thread
    batch_runners: int = 2  # admission-window batches running at once
    token: str | None = None
    tls_cert: bytes | None = None
    tls_key: bytes | None = None


class AddressError(MmsearchError):
    """The server cannot bind its address."""


class _Unparsable:
    def __init__(self, reason: str, field: str) -> None:
        self.reason, self.field = reason, field


def _deserializer(message_type: Any) -> Callable[[bytes], Any]:
    def parse(data: bytes) -> Any:
        try:
            return message_type.FromString(data)
        except DecodeError as exc:
            field = bad_utf8_field(message_type.DESCRIPTOR, data)
            return _Unparsable(str(exc), field or "request")
    return parse


class Sidecar:
    def __init__(self, pipeline: SearchPipeline, settings: ServerSettings,
                 metrics: SidecarMetrics | None = None) -> None:
        self.pipeline = pipeline
        self.settings = settings
        self.metrics = metrics
        self._slots = threading.BoundedSemaphore(settings.max_concurrency)
        self.served_by = f"{socket.gethostname()}/{os.getpid()}"
        cache = pipeline.full_width.cache
        if metrics and cache is not None:
            cache.observe = metrics.observe_cache
        self.admission = None if settings.batch_window_ms is None else AdmissionWindow(
            pipeline.search_batch, settings.batch_window_ms, settings.max_batch,
            settings.batch_runners, metrics.batch_size.observe if metrics else None)

    # -- the guard every RPC goes through -------------------------------------------
    def _guard(self, name: str, handler: Callable[[Any, grpc.ServicerContext], Any]
               ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def run(request: Any, context: grpc.ServicerContext) -> Any:
            if not self._slots.acquire(blocking=False):
                self._count(name, "RESOURCE_EXHAUSTED")
                return self._abort(context, name, OverloadedError(
                    f"more than {self.settings.max_concurrency} requests in flight"))
            if self.metrics:
                self.metrics.in_flight.inc()
            try:
                self._authenticate(context)
                if isinstance(request, _Unparsable):
                    raise ValidationError(f"not a valid {name} message ({request.reason}); "
                                          "string fields must be UTF-8", request.field)
                reply = handler(request, context)
                self._count(name, "OK")
                context.set_trailing_metadata(((SERVED_BY, self.served_by),))
                return reply
            except Exception as exc:  # noqa: BLE001 - mapped by the one table
                self._count(name, status_for(exc)[0])
                return self._abort(context, name, exc)
            finally:
                if self.metrics:
                    self.metrics.in_flight.dec()
                self._slots.release()
        return run

    def stop(self) -> None:
        """After the server has drained: the admission window's runners end."""
        if self.admission:
            self.admission.stop()

    def _count(self, message: str, code: str) -> None:
        if self.metrics:  # "SearchRequest" -> rpc="Search"
            self.metrics.requests.labels(message.removesuffix("Request"), code).inc()

    def _authenticate(self, context: grpc.ServicerContext) -> None:
        if not self.settings.token:
            return
        sent = dict(context.invocation_metadata()).get("authorization", "")
        if not hmac.compare_digest(sent.encode(), f"Bearer {self.settings.token}".encode()):
            raise UnauthenticatedError("missing or wrong bearer token", "authorization")

    def _abort(self, context: grpc.ServicerContext, name: str, error: BaseException) -> Any:
        """One status per error (the one table), one log line per failed request with its
        request id (the client's x-request-id, or one made here and sent back), and a
        traceback only for INTERNAL: expected failures are not bugs."""
        code, message = status_for(error)
        request_id = dict(context.invocation_metadata()).get(REQUEST_ID) or uuid.uuid4().hex[:16]
        context.set_trailing_metadata(((REQUEST_ID, request_id), (SERVED_BY, self.served_by)))
        rpc = name.removesuffix("Request")
        if code == "INTERNAL":
            log.error("request %s %s: unexpected error", request_id, rpc, exc_info=error)
        elif code in SERVER_SIDE:  # the client's message leaves out Milvus's address
            log.warning("request %s %s: %s: %s", request_id, rpc, code, error)
        else:
            log.info("request %s %s: %s: %s", request_id, rpc, code, message)
        context.abort(getattr(grpc.StatusCode, code), message)

    # -- RPCs -----------------------------------------------------------------------
    def search(self, request: pb.SearchRequest, context: grpc.ServicerContext
               ) -> pb.SearchResponse:
        query, params = search_from_pb(request, context.time_remaining(),
                                       self.settings.default_deadline_ms)
        result = (self.admission.search(query, params) if self.admission
                  else self.pipeline.search(query, params))
        self._observe(result)
        return search_response(result, self.pipeline.encoder.model_id)

    def _observe(self, result: SearchResult) -> None:
        if self.metrics:
            self.metrics.observe_search(result.timings_ms, result.candidates,
                                        result.degraded_reasons)

    def search_batch(self, request: pb.SearchBatchRequest, context: grpc.ServicerContext
                     ) -> pb.SearchBatchResponse:
        if len(request.requests) > self.settings.max_batch:
            raise ValidationError(f"{len(request.requests)} requests, the cap is "
                                  f"{self.settings.max_batch}", "requests")
        items: list[pb.SearchBatchItem | None] = [None] * len(request.requests)
        runnable = []
        remaining = context.time_remaining()
        for index, item in enumerate(request.requests):
            try:
                runnable.append((index, *search_from_pb(item, remaining,
                                                        self.settings.default_deadline_ms)))
            except Exception as exc:  # noqa: BLE001 - one bad item fails alone
                items[index] = self._item_error(exc)
        outcomes = self.pipeline.search_batch([(q, p) for _, q, p in runnable])
        model_id = self.pipeline.encoder.model_id
        for (index, _, _), outcome in zip(runnable, outcomes, strict=True):
            if isinstance(outcome, Exception):
                items[index] = self._item_error(outcome)
            else:
                items[index] = pb.SearchBatchItem(response=search_response(outcome, model_id))
                self._observe(outcome)
        return pb.SearchBatchResponse(items=items)

    @staticmethod
    def _item_error(error: BaseException) -> pb.SearchBatchItem:
        code, message = status_for(error)
        if code == "INTERNAL":
            log.error("SearchBatch item: unexpected error", exc_info=error)
        return pb.SearchBatchItem(error=pb.ItemError(code=code, message=message))

    def rerank(self, request: pb.RerankRequest, context: grpc.ServicerContext
               ) -> pb.RerankResponse:
        query, candidates, params = rerank_from_pb(request, context.time_remaining(),
                                                   self.settings.default_deadline_ms)
        result = self.pipeline.rerank(query, candidates, params)
        return rerank_response(result, self.pipeline.encoder.model_id, request)

    def info(self, request: pb.InfoRequest, context: grpc.ServicerContext) -> pb.InfoResponse:
        pipeline, encoder = self.pipeline, self.pipeline.encoder
        return pb.InfoResponse(
            version=__version__, model_id=encoder.model_id, model_name=encoder.config.name,
            widths=list(pipeline.widths), default_coarse_width=pipeline.coarse_width,
            max_candidates=pipeline.limits.max_candidates, max_top_k=pipeline.limits.max_top_k,
            max_message_bytes=self.settings.max_message_bytes,
            chunk_size=self.settings.chunk_size, max_batch=self.settings.max_batch,
            scorer=pipeline.scorer.name if pipeline.scorer else "")

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        def unary(name: str, fn: Callable[..., Any], request: type, response: type) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                self._guard(name, fn), request_deserializer=_deserializer(request),
                response_serializer=response.SerializeToString)

        return [
            grpc.method_handlers_generic_handler("mmsearch.v1.SearchService", {
                "Search": unary("SearchRequest", self.search, pb.SearchRequest,
                                pb.SearchResponse),
                "SearchBatch": unary("SearchBatchRequest", self.search_batch,
                                     pb.SearchBatchRequest, pb.SearchBatchResponse)}),
            grpc.method_handlers_generic_handler("mmsearch.v1.RerankService", {
                "Rerank": unary("RerankRequest", self.rerank, pb.RerankRequest,
                                pb.RerankResponse)}),
            grpc.method_handlers_generic_handler("mmsearch.v1.InfoService", {
                "Info": unary("InfoRequest", self.info, pb.InfoRequest, pb.InfoResponse)}),
        ]


class HealthWatcher:
    """NOT_SERVING until models and Milvus are ready; then follows Milvus's health."""

    def __init__(self, servicer: health.HealthServicer, probe: Callable[[], bool],
                 interval_s: float = 5.0) -> None:
        self.servicer, self.probe, self.interval_s = servicer, probe, interval_s
        self._stop = threading.Event()
        self.set(False)

    def set(self, serving: bool) -> None:
        status = (health_pb2.HealthCheckResponse.SERVING if serving
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", *SERVICES):
            self.servicer.set(name, status)

    def start(self) -> None:
        def loop() -> None:
            while not self._stop.is_set():
                try:
                    healthy = self.probe()
                except Exception:  # noqa: BLE001 - any failure means not serving
                    healthy = False
                self.set(healthy)
                self._stop.wait(self.interval_s)
        threading.Thread(target=loop, name="health", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


def split_address(address: str) -> tuple[str, int]:
    """HOST:PORT (HOST may be [v6]), or AddressError naming the setting."""
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit() or int(port_text) > 65535:
        raise AddressError(f"cannot listen on {address!r} (server.address / "
                           "--address): not HOST:PORT with a port in 0..65535")
    return host.removeprefix("[").removesuffix("]"), int(port_text)


def build_server(sidecar: Sidecar, probe: Callable[[], bool], reuse_port: bool = False
                 ) -> tuple[grpc.Server, int, HealthWatcher]:
    """The gRPC server on settings.address. so_reuseport stays off (grpcio turns it on
    by default, which lets a second server on a busy port start and take part of the
    traffic instead of failing) except for the workers of `serve --processes`, whose
    parent holds the port for them (app/serving.py)."""
    settings = sidecar.settings
    options = [("grpc.max_receive_message_length", settings.max_message_bytes),
               ("grpc.max_send_message_length", settings.max_message_bytes),
               ("grpc.so_reuseport", int(reuse_port))]
    # Threads beyond the in-flight cap: with no more threads than the cap, a request past
    # it would wait in the executor's queue, unseen by the guard, instead of getting
    # RESOURCE_EXHAUSTED; the spares also keep health checks answering under overload.
    threads = settings.max_concurrency + SPARE_THREADS
    server = grpc.server(ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rpc"),
                         options=options)
    server.add_generic_rpc_handlers(sidecar.handlers())
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    split_address(settings.address)
    try:
        if settings.tls_cert and settings.tls_key:
            credentials = grpc.ssl_server_credentials([(settings.tls_key, settings.tls_cert)])
            port = server.add_secure_port(settings.address, credentials)
        else:
            port = server.add_insecure_port(settings.address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise AddressError(f"cannot listen on {settings.address!r} (server.address / "
                           "--address): the port is in use by another process, or the address "
                           "is not HOST:PORT on this machine")
    return server, port, HealthWatcher(health_servicer, probe)
