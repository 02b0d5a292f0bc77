"""Sidecar memory under large images: peak RSS of a real `mmsearch serve` process while 32
clients at once (the default in-flight cap) send Rerank requests whose query is a
39-megapixel PNG of a few KB (one colour compresses to almost nothing; decoded it is
~117 MB of RGB, more while converting).

Same run, same process setup, two settings of limits.decode_pixels_in_flight: unbounded
(the baseline: 10^12 pixels, no waiting) and the default (64 MP). Peak RSS is the kernel's
high-water mark (VmHWM in /proc/<pid>/status), read after the load.
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS, markdown_table, write

SIDE = 6245  # 6245^2 = 39.0 MP, under the 40 MP bomb limit
UNBOUNDED = 10**12


def big_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (SIDE, SIDE), (250, 250, 250)).save(buffer, format="PNG")
    return buffer.getvalue()


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def start_server(work: Path, port: int, budget: int) -> subprocess.Popen:
    env = {**os.environ, "MMSEARCH_LIMITS__DECODE_PIXELS_IN_FLIGHT": str(budget),
           "MMSEARCH_LIMITS__DEADLINE_MS": "600000"}
    log = open(work / f"serve-{budget}.log", "w")  # noqa: SIM115 - the server's lifetime
    proc = subprocess.Popen([sys.executable, "-m", "mmsearch.app.cli", "serve", "--address",
                             f"127.0.0.1:{port}", "--uri", str(work / f"m{budget}.db")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    import grpc

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            grpc.channel_ready_future(grpc.insecure_channel(f"127.0.0.1:{port}")).result(1)
            return proc
        except grpc.FutureTimeoutError:
            if proc.poll() is not None:
                log = (work / f"serve-{budget}.log").read_text()
                raise RuntimeError(f"serve exited: {log}") from None
    raise RuntimeError("serve did not start in 120 s")


def run_load(port: int, image: bytes, clients: int) -> dict[str, Any]:
    import grpc

    from mmsearch.v1 import search_pb2 as pb
    from mmsearch.v1 import search_pb2_grpc

    codes: list[str] = []
    seconds: list[float] = []
    lock = threading.Lock()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}",
                                    options=[("grpc.max_send_message_length", 64 << 20)])
    stub = search_pb2_grpc.RerankServiceStub(channel)
    request = pb.RerankRequest(query=pb.Query(image=image), candidates=[
        pb.RerankCandidate(vector=pb.Vector(values=[1.0] * 512))])

    def one() -> None:
        started = time.perf_counter()
        try:
            stub.Rerank(request, timeout=600)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        with lock:
            codes.append(code)
            seconds.append(time.perf_counter() - started)

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    channel.close()
    return {"codes": {c: codes.count(c) for c in sorted(set(codes))},
            "max_seconds": max(seconds), "mean_seconds": sum(seconds) / len(seconds)}


def measure(budget: int, image: bytes, clients: int, work: Path, port: int) -> dict[str, Any]:
    proc = start_server(work, port, budget)
    try:
        idle_mb = status_kb(proc.pid, "VmRSS") / 1024
        load = run_load(port, image, clients)
        peak_mb = status_kb(proc.pid, "VmHWM") / 1024
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"budget_pixels": budget, "idle_rss_mb": round(idle_mb), "peak_rss_mb": round(peak_mb),
            **load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    image = big_png()
    from mmsearch.app.demo import free_port

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in (UNBOUNDED, 64_000_000):
            runs.append(measure(budget, image, args.clients, Path(tmp), free_port()))
            print(runs[-1], flush=True)
    rows = [("unbounded (baseline)" if r["budget_pixels"] == UNBOUNDED else
             f"{r['budget_pixels'] // 1_000_000} MP (default)", r["idle_rss_mb"],
             r["peak_rss_mb"], f"{r['mean_seconds']:.1f}", f"{r['max_seconds']:.1f}",
             ", ".join(f"{k} {v}" for k, v in r["codes"].items())) for r in runs]
    ratio = runs[0]["peak_rss_mb"] / runs[1]["peak_rss_mb"]
    markdown = (f"# Sidecar memory under {args.clients} concurrent {SIDE}x{SIDE} PNG queries "
                f"({len(image)} bytes each)\n\n"
                + markdown_table(["decode budget", "idle RSS MB", "peak RSS MB",
                                  "mean s/request", "max s", "replies"], rows)
                + f"\n\nPeak RSS: default / unbounded = 1 / {ratio:.1f}. Target: peak < 2 GB "
                  f"({'met' if runs[1]['peak_rss_mb'] < 2048 else 'NOT met'}).\n")
    write("decode_memory", {"clients": args.clients, "png_bytes": len(image), "runs": runs},
          markdown)
    _plot(runs)
    print(markdown)


def _plot(runs: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    labels = ["unbounded", "64 MP"]
    ax.bar(labels, [r["peak_rss_mb"] for r in runs], color=["#c44", "#48a"])
    ax.axhline(2048, color="k", linestyle="--", linewidth=1, label="2 GB target")
    ax.set(ylabel="peak RSS (MB)", title="32 concurrent 39 MP PNG queries")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "decode_memory.png", dpi=110)


if __name__ == "__main__":
    main()
