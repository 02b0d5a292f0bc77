"""Sidecar latency: gRPC end to end vs the in-process pipeline (same queries, same run),
and a load test: N concurrent clients for S seconds against the real server on 127.0.0.1,
twice: with the in-flight cap above N (every request queues for CPU: throughput and tail
latency) and with the default cap (limits.max_concurrency 32): past the cap requests are
shed with RESOURCE_EXHAUSTED, and the table shows how fast that answer comes back.

Setup: the test split of both emoji vendors ingested into a temporary Milvus Lite base.
Queries: by stored id (no encoding: isolates the gRPC overhead) and by text.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write

BACKOFF_S = 0.05


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_manifest(data: Path, work: Path) -> Path:
    lines = [line for vendor in ("google", "twitter")
             for line in (data / f"{vendor}.jsonl").read_text().splitlines()
             if '"split": "test"' in line]
    manifest = data / "bench-test-split.jsonl"  # beside the images: paths stay relative
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "count": len(times)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--load-seconds", type=float, default=10.0)
    args = parser.parse_args()
    import grpc

    from mmsearch.app.commands.ingest import cmd_ingest
    from mmsearch.app.config import load_config
    from mmsearch.app.wiring import build_pipeline, server_settings
    from mmsearch.rerank.requests import SearchParams, SearchQuery
    from mmsearch.rerank.server import Sidecar, build_server
    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    work = Path(tempfile.mkdtemp(prefix="mmsearch-sidecar-bench-"))
    overrides = {"milvus": {"uri": str(work / "bench.db")}, "state_dir": str(work / "state"),
                 "limits": {"max_concurrency": args.clients + 8}, "base": "bench"}
    config = load_config(None, overrides=overrides)
    manifest = test_manifest(args.data, work)
    ingest_args = argparse.Namespace(base=None, state_dir=None, batch_size=None, shard="0/1",
                                     no_progress=True, metrics_port=None, runtime=None,
                                     watch=None, manifest=str(manifest), poll_seconds=1.0)
    cmd_ingest(ingest_args, config)
    ids = [line.split('"id": "')[1].split('"')[0]
           for line in manifest.read_text().splitlines()][: args.queries]
    texts = [line.split('"text": "')[1].split('"')[0]
             for line in manifest.read_text().splitlines()][: args.queries]
    pipeline = build_pipeline(config)
    sidecar = Sidecar(pipeline, server_settings(config, "127.0.0.1:0"))
    server, port, _ = build_server(sidecar, probe=lambda: True)
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = search_pb2_grpc.SearchServiceStub(channel)
    timings: dict[str, dict[str, list[float]]] = {}
    for kind, values in (("id", ids), ("text", texts)):
        local, remote = [], []
        for value in values[:10]:  # warm-up
            stub.Search(pb.SearchRequest(base="bench", top_k=10, query=pb.Query(**{kind: value})))
        for value in values:
            started = time.perf_counter()
            pipeline.search(SearchQuery(**{kind: value}), SearchParams(base="bench", top_k=10))
            local.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            stub.Search(pb.SearchRequest(base="bench", top_k=10, query=pb.Query(**{kind: value})),
                        timeout=30)
            remote.append((time.perf_counter() - started) * 1000)
        timings[kind] = {"in-process": local, "grpc": remote}
    load = run_load(port, ids, args.clients, args.load_seconds)
    server.stop(2)
    capped = server_settings(load_config(environ={}), "127.0.0.1:0")  # the default cap
    server, port, _ = build_server(Sidecar(pipeline, capped), probe=lambda: True)
    server.start()
    shed = run_load(port, ids, args.clients, args.load_seconds)
    server.stop(2)
    channel.close()
    shutil.rmtree(work, ignore_errors=True)
    manifest.unlink()
    rows = []
    for kind, pair in timings.items():
        a, b = percentiles(pair["in-process"]), percentiles(pair["grpc"])
        rows.append((f"query by {kind}", a["p50_ms"], b["p50_ms"], b["p50_ms"] - a["p50_ms"],
                     a["p99_ms"], b["p99_ms"]))
    table = markdown_table(("queries", "in-process p50 ms", "gRPC p50 ms", "gRPC overhead ms",
                            "in-process p99 ms", "gRPC p99 ms"), rows)
    load_table = markdown_table(
        ("in-flight cap", "clients", "seconds", "answered", "QPS", "p50 ms", "p99 ms",
         "shed (RESOURCE_EXHAUSTED)", "shed reply p50 ms", "other errors", "RSS start MB",
         "RSS end MB"),
        [(cap, args.clients, args.load_seconds, r["requests"], r["qps"], r["p50_ms"],
          r["p99_ms"], r["shed"], r["shed_p50_ms"], r["errors"] - r["shed"], r["rss_start_mb"],
          r["rss_end_mb"]) for cap, r in ((args.clients + 8, load),
                                          (capped.max_concurrency, shed))])
    intro = ("# Sidecar latency\n\nTest split of both emoji vendors (3,712 items) in Milvus "
             "Lite; top_k 10, 200 candidates, rerank on (shipped scorer). Same queries through "
             "the in-process pipeline and through gRPC on 127.0.0.1. Load: every client sends its "
             "next query as soon as the last one returns (50 ms back-off after a shed "
             "reply), once with the in-flight cap above the client count and once with the "
             "default cap of 32; the shed reply's latency is what it costs a client to learn "
             "it should go elsewhere, on 2 cores that are already saturated.\n\n")
    write("sidecar_latency", {"timings": {k: {m: percentiles(v) for m, v in p.items()}
                                          for k, p in timings.items()},
                             "load": {**load, "clients": args.clients,
                                      "seconds": args.load_seconds},
                             "load_default_cap": shed},
          intro + table + "\n\n## Load\n\n" + load_table + "\n\n![latency](sidecar_latency.png)")
    plot(timings, load)
    print(intro + table + "\n\n" + load_table)


def run_load(port: int, ids: list[str], clients: int, seconds: float) -> dict:
    import grpc

    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    latencies: list[float] = []
    errors: list[str] = []
    shed_ms: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds
    rss_start = rss_mb()

    def client(n: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            i = n
            while time.perf_counter() < stop_at:
                started, shed = time.perf_counter(), False
                try:
                    stub.Search(pb.SearchRequest(base="bench", top_k=10, query=pb.Query(
                        id=ids[i % len(ids)])), timeout=30)
                    with lock:
                        latencies.append((time.perf_counter() - started) * 1000)
                except grpc.RpcError as exc:
                    with lock:
                        errors.append(exc.code().name)
                        shed = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                        if shed:
                            shed_ms.append((time.perf_counter() - started) * 1000)
                    if shed:  # a well-behaved client backs off before trying again
                        time.sleep(BACKOFF_S)
                i += clients

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {"requests": len(latencies), "errors": len(errors), "error_codes": sorted(set(errors)),
            "shed": len(shed_ms),
            "shed_p50_ms": float(np.percentile(shed_ms, 50)) if shed_ms else None,
            "qps": len(latencies) / elapsed, **percentiles(latencies),
            "rss_start_mb": rss_start, "rss_end_mb": rss_mb(), "latencies_ms": latencies}


def plot(timings: dict, load: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, pair in timings.items():
        for mode, values in pair.items():
            axes[0].hist(values, bins=40, alpha=0.5, label=f"{kind} {mode}")
    axes[0].set_xlabel("ms per query")
    axes[0].set_title("single client")
    axes[0].legend(fontsize=7)
    axes[1].hist(load["latencies_ms"], bins=50, color="C3")
    axes[1].set_xlabel("ms per query")
    axes[1].set_title(f"load: {load['qps']:.0f} QPS, {load['errors']} errors")
    fig.tight_layout()
    fig.savefig(RESULTS / "sidecar_latency.png", dpi=120)


if __name__ == "__main__":
    main()
