"""64 queries: one SearchBatch call against 64 Search calls, same server, same run.

Setup: the emoji test split of both vendors ingested into a temporary Milvus Lite base (or
`--uri`, a running server: the real Milvus 2.3.5 of `make bench-search-batch-milvus`) with
the shipped model; the sidecar runs in this process on 127.0.0.1. Queries: 64 emoji names
(text queries: each needs the text encoder, which SearchBatch runs as one batch). Four
ways, each repeated and the median kept: 64 Search calls one after another, 64 Search
calls from 64 threads at once (through the admission window, and with server.batching
off), and one SearchBatch of 64.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from benchmarks._report import RESULTS, markdown_table, write
from benchmarks.sidecar_latency import test_manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--uri", help="a running Milvus server (default: a temporary Lite)")
    args = parser.parse_args()
    import grpc

    from mmsearch.app.commands.ingest import cmd_ingest
    from mmsearch.app.config import load_config
    from mmsearch.app.wiring import build_pipeline, server_settings
    from mmsearch.rerank.server import Sidecar, build_server
    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    work = Path(tempfile.mkdtemp(prefix="mmsearch-batch-bench-"))
    config = load_config(None, overrides={
        "milvus": {"uri": args.uri or str(work / "bench.db")}, "state_dir": str(work / "state"),
        "base": "batchbench", "limits": {"max_concurrency": args.queries + 8,
                                    "deadline_ms": 600_000}})
    manifest = test_manifest(args.data, work)
    cmd_ingest(argparse.Namespace(base=None, state_dir=None, batch_size=None, shard="0/1",
                                  no_progress=True, metrics_port=None, metrics_address=None,
                                  watch=None, manifest=str(manifest), poll_seconds=1.0),
               config)
    texts = [line.split('"text": "')[1].split('"')[0]
             for line in manifest.read_text().splitlines()][: args.queries]
    requests = [pb.SearchRequest(base="batchbench", top_k=10, query=pb.Query(text=t))
                for t in texts]
    pipeline = build_pipeline(config)
    server_name = pipeline.milvus.call("version", lambda c: c.get_server_version())
    settings = server_settings(config, "127.0.0.1:0")
    server, port, _ = build_server(Sidecar(pipeline, settings), probe=lambda: True)
    unbatched, unbatched_port, _ = build_server(
        Sidecar(pipeline, replace(settings, batch_window_ms=None)), probe=lambda: True)
    server.start()
    unbatched.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = search_pb2_grpc.SearchServiceStub(channel)
    unbatched_channel = grpc.insecure_channel(f"127.0.0.1:{unbatched_port}")
    unbatched_stub = search_pb2_grpc.SearchServiceStub(unbatched_channel)

    def sequential() -> None:
        for request in requests:
            stub.Search(request, timeout=600)

    def concurrent(on: object = stub) -> None:
        threads = [threading.Thread(target=on.Search, args=(r,), kwargs={"timeout": 600})
                   for r in requests]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def batched() -> None:
        reply = stub.SearchBatch(pb.SearchBatchRequest(requests=requests), timeout=600)
        assert all(item.HasField("response") for item in reply.items)

    timings = {}
    try:
        batched()  # warm-up
        for name, run in (("64 Search calls, one after another", sequential),
                          ("64 Search calls from 64 threads", concurrent),
                          ("64 Search calls from 64 threads, batching off",
                           lambda: concurrent(unbatched_stub)),
                          ("one SearchBatch of 64", batched)):
            walls = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                run()
                walls.append((time.perf_counter() - started) * 1000)
            timings[name] = statistics.median(walls)
            print(name, f"{timings[name]:.0f} ms", flush=True)
    finally:
        channel.close()
        unbatched_channel.close()
        server.stop(0)
        unbatched.stop(0)
        shutil.rmtree(work, ignore_errors=True)
    batch_ms = timings["one SearchBatch of 64"]
    rows = [(name, f"{ms:.0f}", f"{ms / args.queries:.1f}", f"{ms / batch_ms:.2f}x")
            for name, ms in timings.items()]
    markdown = (f"# {args.queries} text queries: SearchBatch vs Search calls ({server_name}, "
                "shipped model)\n\n"
                + markdown_table(("how", "wall ms", "ms per query", "vs SearchBatch"), rows)
                + f"\n\nMedian of {args.repeats} runs each, same server and base.\n")
    name = "search_batch" if server_name.startswith("milvus_lite") else "search_batch_server"
    write(name, {"server": server_name, "queries": args.queries, "repeats": args.repeats,
                 "wall_ms": timings}, markdown)
    _plot(name, timings)
    print(markdown)


def _plot(name: str, timings: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.barh(list(timings), list(timings.values()), color="#48a")
    ax.set(xlabel="wall ms for 64 queries", title="SearchBatch vs Search")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
