"""Running the sidecar: one process, or `--processes N` worker processes on one port.

Python runs one request's Python work at a time per process (the GIL); on a machine with
cores to spare, N processes each with its own pipeline serve in parallel. They share the
port the way grpcio's multiprocessing example does: every worker binds it with
SO_REUSEPORT and the kernel spreads connections over them. So that a second, unrelated
server is still refused, the parent first binds the port plainly (which fails while anyone
holds it) and then keeps a SO_REUSEPORT reservation open for its own workers only.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import shutil
import signal
import socket
import tempfile
import threading
import time
from typing import Any

from mmsearch.app.config import Config
from mmsearch.rerank.server import AddressError, split_address

log = logging.getLogger(__name__)
STARTUP_TIMEOUT_S = 300  # loading models on a busy machine
MAX_PROCESSES = 64


def run_server(config: Config, address: str | None, shared_port: bool = False,
               ready: Any = None) -> int:
    """Build the pipeline and the gRPC server and serve until SIGINT/SIGTERM. With
    shared_port the port is bound with SO_REUSEPORT (a worker of `--processes`); ready, a
    queue, hears ("ready", port) once serving or ("error", message)."""
    from mmsearch.app.wiring import build_pipeline, milvus_health_probe, server_settings
    from mmsearch.rerank.server import Sidecar, build_server

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        return_large_frees_to_the_os()
        pipeline = build_pipeline(config)
        metrics = None
        if config.server.metrics_port:
            from mmsearch.rerank.metrics import SidecarMetrics

            metrics = SidecarMetrics.create()
            if not shared_port:  # workers' metrics are served by their parent
                from mmsearch.plugin.metrics import serve_metrics

                serve_metrics(config.server.metrics_port, config.server.metrics_address)
                log.info("Prometheus metrics on http://%s:%d/metrics",
                         config.server.metrics_address, config.server.metrics_port)
        sidecar = Sidecar(pipeline, server_settings(config, address), metrics)
        server, port, health = build_server(sidecar, milvus_health_probe(pipeline.milvus),
                                            reuse_port=shared_port)
    except Exception as exc:
        if ready is not None:
            ready.put(("error", f"{type(exc).__name__}: {exc}"))
        raise
    server.start()
    health.start()
    log.info("serving mmsearch.v1 on %s (port %d, pid %d); %s", sidecar.settings.address,
             port, os.getpid(), pipeline.encoder.describe())
    if ready is not None:
        ready.put(("ready", port))
    stop.wait()
    log.info("stopping: draining in-flight requests (up to 10 s)")
    health.set(False)
    health.stop()
    server.stop(grace=10).wait()
    sidecar.stop()
    return 0


def return_large_frees_to_the_os() -> None:
    """Serve decoded images from memory the OS gets back. glibc serves a large block from
    per-thread arenas once its mmap threshold has grown past it (it grows with every large
    free), and an arena keeps its peak: 32 request threads each decoding a 39 MP image once
    would hold gigabytes. A fixed threshold (1 MB) keeps image buffers mmap'ed, so each is
    unmapped when freed (benchmarks/results/decode_memory.md)."""
    import ctypes
    import ctypes.util

    m_mmap_threshold = -3  # glibc's mallopt parameter number
    name = ctypes.util.find_library("c")
    try:
        applied = bool(ctypes.CDLL(name).mallopt(m_mmap_threshold, 1 << 20)) if name else False
    except (OSError, AttributeError):
        applied = False
    if applied:
        log.info("malloc: blocks over 1 MB are mmap'ed (freed image memory returns to the OS)")
    else:
        log.warning("malloc: no glibc mallopt here, freed image memory may stay with the "
                    "process; limits.decode_pixels_in_flight still bounds what is in use")


def reserve_port(address: str) -> tuple[socket.socket, int]:
    """The port for this server's workers: refused (AddressError) while any other socket
    holds it; then held with SO_REUSEPORT, which only sockets of this user that also set
    it can share (the workers do; `mmsearch serve` alone never does)."""
    host, port = split_address(address)
    try:
        family, kind, proto, _, where = socket.getaddrinfo(host, port,
                                                           type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise AddressError(f"cannot listen on {address!r} (server.address / --address): "
                           f"{exc.strerror}") from None
    plain = socket.socket(family, kind, proto)
    try:
        plain.bind(where)
        port = plain.getsockname()[1]
    except OSError as exc:
        raise AddressError(f"cannot listen on {address!r} (server.address / --address): "
                           f"{exc.strerror}; is another server on that port?") from None
    finally:
        plain.close()
    reservation = socket.socket(family, kind, proto)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    reservation.bind((where[0], port, *where[2:]))
    return reservation, port


def serve_processes(config: Config, address: str | None, processes: int,
                    log_settings: tuple[bool, str] = (False, "text")) -> int:
    """N workers on one port; the parent serves their merged Prometheus metrics and stops
    them all on SIGINT/SIGTERM, or when one of them dies (exit 1: let the supervisor
    restart the whole group rather than run with fewer workers unnoticed)."""
    address = address or config.server.address
    reservation, port = reserve_port(address)
    host, _ = split_address(address)
    shared = f"{host}:{port}"
    metrics_dir = _merged_metrics(config) if config.server.metrics_port else None
    spawn = multiprocessing.get_context("spawn")  # no forked grpc or ONNX Runtime state
    ready = spawn.Queue()
    workers = [spawn.Process(target=_worker, args=(config, shared, ready, log_settings),
                             name=f"mmsearch-serve-{i}") for i in range(processes)]
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        for worker in workers:
            worker.start()
        if not _all_ready(workers, ready):
            return 1
        log.info("serving mmsearch.v1 on %s with %d worker processes (pids %s)", shared,
                 processes, ", ".join(str(w.pid) for w in workers))
        while not stop.wait(0.5):
            dead = [w for w in workers if not w.is_alive()]
            if dead:
                log.error("worker pid %d exited with %s: stopping the others", dead[0].pid,
                          dead[0].exitcode)
                return 1
        return 0
    finally:
        _stop_all(workers, metrics_dir)
        reservation.close()


def _all_ready(workers: list[Any], ready: Any) -> bool:
    """Every worker reported serving; False (logged) when one failed, died or hung."""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    serving = 0
    while serving < len(workers):
        try:
            kind, detail = ready.get(timeout=0.5)
        except queue.Empty:
            if any(not w.is_alive() for w in workers):
                log.error("a worker exited while starting (see its log above)")
                return False
            if time.monotonic() > deadline:
                log.error("workers did not start within %d s", STARTUP_TIMEOUT_S)
                return False
            continue
        if kind == "error":
            log.error("a worker could not start: %s", detail)
            return False
        serving += 1
    return True


def _worker(config: Config, address: str, ready: Any, log_settings: tuple[bool, str]
            ) -> None:
    from mmsearch.app.logs import setup_logging

    setup_logging(*log_settings)
    try:
        run_server(config, address, shared_port=True, ready=ready)
    except Exception:
        log.exception("worker failed")
        raise SystemExit(1) from None


def _merged_metrics(config: Config) -> str:
    """Workers write their metrics to files in one folder (prometheus_client's
    multiprocess mode); the parent serves their sum on server.metrics_port."""
    folder = tempfile.mkdtemp(prefix="mmsearch-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder  # inherited by the spawned workers
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(config.server.metrics_port, addr=config.server.metrics_address,
                      registry=registry)
    log.info("Prometheus metrics of all workers on http://%s:%d/metrics",
             config.server.metrics_address, config.server.metrics_port)
    return folder


def _stop_all(workers: list[Any], metrics_dir: str | None) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.terminate()  # SIGTERM: each drains its in-flight requests
    for worker in workers:
        worker.join(timeout=15)
        if worker.is_alive():
            worker.kill()
            worker.join()
    if metrics_dir:  # the workers' metric files die with the group (and its /metrics)
        shutil.rmtree(metrics_dir, ignore_errors=True)
