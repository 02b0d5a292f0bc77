"""Sidecar throughput under 64 concurrent clients against a Milvus server, beside a frozen
naive pymilvus client doing the same calls, in one run.

Milvus: a milvus-lite server started here (default), or a running server (`--uri`, e.g. the
real Milvus 2.3.5 that `make bench-load-milvus` starts inside `unshare -n`). Base: the emoji
test split (3,712 items, encoded by `mmsearch ingest`), then filled with synthetic rows to
`--items` (vectors shaped like ours: a stored emoji vector plus noise, normalised per width,
with that emoji's local features), so that overlapping candidate lists of a small base do
not flatter batching. Widths 64 (ANN) and 512 (refine, rerank): the two search reads.

Arms, each `--seconds` long after a warm-up, 64 closed-loop clients (each sends its next
query when the last returns), queries by id / text / image in turn:
- `sidecar`: `mmsearch serve` as shipped (admission window on), in its own process;
- `sidecar, batching off`: the same with server.batching false (each request alone: the
  path before the admission window);
- `sidecar, N processes`: `--processes N`;
- `naive client`: 64 threads of plain pymilvus doing the sidecar's calls naively: ANN at
  d64 limit 200, fetch the 200 candidates' full-width vectors as lists, numpy refine, top
  10. It is handed each query's d512 vector (no encoding and no rerank: flattering it).
CPU per request from /proc: the sidecar's processes, Milvus's, and this load client's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write

WIDTHS = "64,512"
BASE = "bench"
CLIENTS = 64
TOP_K, CANDIDATES = 10, 200
CLOCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / CLOCK  # utime + stime
    return total


def rss_mb(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
        except OSError:
            continue
    return total


def processes_matching(word: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if word in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def tree(pid: int) -> list[int]:
    """pid and its children (the workers of --processes)."""
    out = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if parent == pid:
                out.append(int(entry.name))
    return out


def env(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "MMSEARCH_WIDTHS": WIDTHS, "MMSEARCH_BASE": BASE,
            "MMSEARCH_LIMITS__MAX_CONCURRENCY": str(CLIENTS + 8), "PYTHONUNBUFFERED": "1",
            **extra}


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmsearch.app.cli", *args]


def build_base(uri: str, data: Path, items: int, work: Path, reuse: bool) -> dict[str, Any]:
    """Ingest the emoji test split, then add synthetic rows up to `items`; with reuse, a
    base an earlier run built on this server is measured as it is."""
    from mmsearch.plugin.collections import ensure_loaded
    from mmsearch.plugin.connection import MilvusTarget, connect

    lines = [json.loads(line) for vendor in ("google", "twitter")
             for line in (data / f"{vendor}.jsonl").read_text().splitlines()
             if '"split": "test"' in line]
    manifest = data / "bench-load-test-split.jsonl"  # beside the images: paths stay relative
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    client = connect(MilvusTarget(uri, call_timeout_s=600))
    reuse = reuse and client.has_collection(f"{BASE}_d512")
    started = time.perf_counter()
    if not reuse:
        subprocess.run(cli("ingest", "--manifest", str(manifest), "--uri", uri, "--state-dir",
                           str(work / "state"), "--no-progress"), env=env({}), check=True)
    ingest_s = time.perf_counter() - started
    for width in (64, 512):
        ensure_loaded(client, f"{BASE}_d{width}", 600)
    stored = client.query(f"{BASE}_d512", filter='not id like "synthetic-%"', limit=16384,
                          output_fields=["*"])
    vectors = np.asarray([row["vector"] for row in stored], np.float32)
    local = [row["local"] for row in stored]
    # the attr columns (category, vendor, ...) a server without nullable fields requires
    attrs = [{k: v for k, v in row.items()
              if k not in ("id", "vector", "local", "label", "content_hash")} for row in stored]
    rng = np.random.default_rng(0)
    filled = time.perf_counter()
    for start in range(len(stored), 0 if reuse else items, 5000):
        count = min(5000, items - start)
        source = rng.integers(0, len(stored), count)
        noisy = vectors[source] + 0.08 * rng.standard_normal((count, 512)).astype(np.float32)
        for width in (64, 512):
            part = noisy[:, :width] / np.linalg.norm(noisy[:, :width], axis=1, keepdims=True)
            rows = [{**attrs[s], "id": f"synthetic-{start + i}", "vector": v.tolist(),
                     "label": "", "content_hash": "0" * 64,
                     **({"local": local[s]} if width == 512 else {})}
                    for i, (v, s) in enumerate(zip(part, source, strict=True))]
            client.insert(f"{BASE}_d{width}", rows)
    for width in () if reuse else (64, 512):
        client.flush(f"{BASE}_d{width}")
        wait_for_index(client, f"{BASE}_d{width}")
        client.release_collection(f"{BASE}_d{width}")
        ensure_loaded(client, f"{BASE}_d{width}", 600)
    by_id = {row["id"]: v / np.linalg.norm(v) for row, v in zip(stored, vectors, strict=True)}
    queries = [{"id": line["id"], "text": line["text"],
                "image": (data / line["image"]).read_bytes(), "vector": by_id[line["id"]]}
               for line in lines if line["id"] in by_id]
    total = client.get_collection_stats(f"{BASE}_d512")["row_count"]
    client.close()
    return {"queries": queries, "ingest_s": ingest_s, "items": int(total), "reused": reuse,
            "fill_s": time.perf_counter() - filled, "manifest": manifest}


def wait_for_index(client: Any, alias: str) -> None:
    """A server builds indexes per sealed segment in the background: measure the index,
    not brute force over unindexed segments (Milvus Lite reports no progress)."""
    name = client.describe_alias(alias)["collection_name"]
    index = client.list_indexes(name)[0]
    while True:
        info = client.describe_index(name, index)
        if "total_rows" not in info or (int(info.get("pending_index_rows", 0)) == 0 and int(
                info.get("indexed_rows", 0)) >= int(info["total_rows"])):
            return
        time.sleep(2)


def scrape(metrics_port: int) -> dict[str, float]:
    """The sidecar's own counters: vector cache hits / misses, batch sizes."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "mmsearch_sidecar_vector_cache_rows_total":
                out[f"cache_{sample.labels['result']}"] = sample.value
            elif sample.name in ("mmsearch_sidecar_batch_size_sum",
                                 "mmsearch_sidecar_batch_size_count"):
                out[sample.name.rsplit("_", 1)[1]] = sample.value
    return out


def start_sidecar(uri: str, port: int, batching: bool, cache: bool, processes: int,
                  metrics_port: int) -> subprocess.Popen:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    proc = subprocess.Popen(cli("serve", "--uri", uri, "--address", f"127.0.0.1:{port}",
                                "--processes", str(processes)),
                            env=env({"MMSEARCH_SERVER__BATCHING": str(batching).lower(),
                                     "MMSEARCH_SERVER__METRICS_PORT": str(metrics_port),
                                     **({} if cache else {
                                         "MMSEARCH_SERVER__VECTOR_CACHE_MB": "null"})}),
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        checker = health_pb2_grpc.HealthStub(channel)
        while time.time() < deadline:
            try:
                if checker.Check(health_pb2.HealthCheckRequest(), timeout=2).status == 1:
                    return proc
            except grpc.RpcError:
                time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the sidecar did not become SERVING in 300 s")


def sidecar_request(query: dict[str, Any], kind: str) -> Any:
    from mmsearch.v1 import search_pb2 as pb

    return pb.SearchRequest(base=BASE, top_k=TOP_K, query=pb.Query(**{kind: query[kind]}))


KINDS = ("id", "text", "image")


def run_arm(name: str, send: Any, queries: list[dict[str, Any]], seconds: float,
            sidecar_pids: list[int], milvus_pids: list[int], clients: int = CLIENTS
            ) -> dict[str, Any]:
    """`clients` closed-loop threads calling send(query, kind) -> stage timings | None."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    rss_curve: list[tuple[float, float]] = []
    lock = threading.Lock()
    warm_until = time.perf_counter() + min(5.0, seconds / 4)
    stop_at = warm_until + seconds
    counted = threading.Event()
    start_cpu: dict[str, float] = {}

    def client(n: int) -> None:
        i = n
        while (now := time.perf_counter()) < stop_at:
            query, kind = queries[i % len(queries)], KINDS[i % len(KINDS)]
            started = now
            try:
                timings = send(query, kind)
                error = None
            except Exception as exc:  # noqa: BLE001 - counted by code
                code = exc.code() if callable(getattr(exc, "code", None)) else None
                timings, error = None, getattr(code, "name", type(exc).__name__)
            done = time.perf_counter()
            if started >= warm_until:
                with lock:
                    if error is None:
                        latencies.append((done - started) * 1000)
                        for stage, ms in (timings or {}).items():
                            stages[stage] += ms
                    else:
                        errors[error] += 1
            i += clients

    def sampler() -> None:
        while time.perf_counter() < warm_until:
            time.sleep(0.01)
        start_cpu.update(sidecar=cpu_s(sidecar_pids), milvus=cpu_s(milvus_pids),
                         client=cpu_s([os.getpid()]), wall=time.perf_counter())
        counted.set()
        while time.perf_counter() < stop_at:
            rss_curve.append((time.perf_counter() - warm_until, rss_mb(sidecar_pids)))
            time.sleep(2)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    watcher = threading.Thread(target=sampler)
    watcher.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    watcher.join()
    wall = time.perf_counter() - start_cpu["wall"]
    answered = len(latencies)
    per = 1000 / max(1, answered + sum(errors.values()))
    result = {
        "arm": name, "clients": clients, "seconds": wall, "answered": answered,
        "qps": answered / wall, "errors": dict(errors),
        "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
        "sidecar_cpu_ms": (cpu_s(sidecar_pids) - start_cpu["sidecar"]) * per,
        "milvus_cpu_ms": (cpu_s(milvus_pids) - start_cpu["milvus"]) * per,
        "client_cpu_ms": (cpu_s([os.getpid()]) - start_cpu["client"]) * per,
        "stages_ms": {k: v / max(1, answered) for k, v in stages.items()},
        "rss_mb": rss_curve,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "rss_mb"}), flush=True)
    return result


def sidecar_sender(port: int) -> Any:
    import grpc

    from mmsearch.v1 import search_pb2_grpc

    channels = [grpc.insecure_channel(f"127.0.0.1:{port}",
                                      options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(8)]  # several connections: --processes spreads them
    stubs = [search_pb2_grpc.SearchServiceStub(c) for c in channels]
    counter = iter(range(10**12))

    def send(query: dict[str, Any], kind: str) -> dict[str, float]:
        reply = stubs[next(counter) % len(stubs)].Search(sidecar_request(query, kind),
                                                          timeout=30)
        return dict(reply.metadata.timings_ms)
    return send, channels


def naive_sender(uri: str) -> Any:
    """The frozen reference: what a user would write with pymilvus alone."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)

    def send(query: dict[str, Any], kind: str) -> dict[str, float]:
        vector = query["vector"]
        coarse = vector[:64] / np.linalg.norm(vector[:64])
        hits = client.search(f"{BASE}_d64", data=[coarse.tolist()], limit=CANDIDATES,
                             search_params={"params": {"ef": CANDIDATES}})[0]
        ids = [h["id"] for h in hits]
        quoted = ", ".join(json.dumps(i) for i in ids)
        rows = client.query(f"{BASE}_d512", filter=f"id in [{quoted}]",
                            output_fields=["id", "vector"])
        matrix = np.asarray([row["vector"] for row in rows], np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        np.argsort(-(matrix @ vector))[:TOP_K]  # the top 10 it would show
        return {}
    return send, client


def single_client(send: Any, queries: list[dict[str, Any]], count: int = 150) -> float:
    """p50 ms of queries by id from one client, one at a time."""
    times = []
    for query in queries[:count]:
        started = time.perf_counter()
        send(query, "id")
        times.append((time.perf_counter() - started) * 1000)
    return float(np.percentile(times[10:], 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", help="a running Milvus server (default: start milvus-lite)")
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--name", help="result name (default by server)")
    parser.add_argument("--arms", nargs="+", help="run only these arms (names as in the "
                        "table), e.g. one long `sidecar` arm for the memory curve")
    parser.add_argument("--reuse-base", action="store_true",
                        help="measure the base an earlier run left on this server")
    args = parser.parse_args()
    from mmsearch.plugin.connection import milvus_lite_executable

    work = Path(tempfile.mkdtemp(prefix="mmsearch-load-"))
    lite = None
    uri = args.uri
    if uri is None:
        port = free_port()
        lite = subprocess.Popen([milvus_lite_executable(), "server", "--data-dir",
                                 str(work / "lite"), "--host", "127.0.0.1", "--port",
                                 str(port)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        uri = f"http://127.0.0.1:{port}"
        time.sleep(3)
    milvus_pids = [lite.pid] if lite else processes_matching("milvus")
    try:
        report = run_all(args, uri, work, milvus_pids)
    finally:
        if lite:
            lite.kill()
            lite.wait()
    write_report(args, report)


def run_all(args: argparse.Namespace, uri: str, work: Path, milvus_pids: list[int]
            ) -> dict[str, Any]:
    from pymilvus import MilvusClient

    base = build_base(uri, args.data, args.items, work, args.reuse_base)
    base.pop("manifest").unlink()
    server = MilvusClient(uri=uri).get_server_version()
    print(f"base ready on {server}: {base['items']} items", flush=True)
    queries = base.pop("queries")
    arms, single = [], {}
    for name, batching, cache, processes in (
            ("sidecar", True, True, 1),
            ("sidecar, vector cache off", True, False, 1),
            ("sidecar, batching and cache off (before)", False, False, 1),
            (f"sidecar, {args.processes} processes", True, True, args.processes)):
        if args.arms and name not in args.arms:
            continue
        port, metrics_port = free_port(), free_port()
        sidecar = start_sidecar(uri, port, batching, cache, processes, metrics_port)
        try:
            send, channels = sidecar_sender(port)
            if processes == 1:
                single[name] = single_client(send, queries)
            before = scrape(metrics_port)
            arms.append(run_arm(name, send, queries, args.seconds, tree(sidecar.pid),
                                milvus_pids))
            after = scrape(metrics_port)
            counted = {k: after.get(k, 0) - before.get(k, 0) for k in after}
            arms[-1]["sidecar_counters"] = counted
            if counted.get("count"):
                arms[-1]["mean_batch"] = counted["sum"] / counted["count"]
            looked_up = counted.get("cache_hit", 0) + counted.get("cache_miss", 0)
            if looked_up:
                arms[-1]["cache_hit_rate"] = counted["cache_hit"] / looked_up
            for channel in channels:
                channel.close()
        finally:
            sidecar.terminate()
            sidecar.wait(60)
    if not args.arms or "naive client" in args.arms:
        send, client = naive_sender(uri)
        single["naive client"] = single_client(send, queries)
        arms.append(run_arm("naive client", send, queries, args.seconds, [], milvus_pids))
        client.close()
    return {"server": server, "milvus": "lite" if server.startswith("milvus_lite") else "server",
            **base, "arms": arms, "single_client_p50_ms": single}


def free_port() -> int:
    from mmsearch.app.demo import free_port as pick

    return pick()


def write_report(args: argparse.Namespace, report: dict[str, Any]) -> None:
    server = report["server"]
    lite = server.startswith("milvus_lite")
    name = args.name or ("sidecar_load_lite" if lite else "sidecar_load_server")
    arms = {a["arm"]: a for a in report["arms"]}
    naive = arms.get("naive client", {"qps": float("nan")})
    rows = []
    for arm in report["arms"]:
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(arm["stages_ms"].items())
                           if k != "total")
        curve = arm["rss_mb"]
        rows.append((arm["arm"], f"{arm['qps']:.1f}", f"{arm['qps'] / naive['qps']:.2f}x",
                     f"{arm['p50_ms']:.0f}", f"{arm['p99_ms']:.0f}",
                     ", ".join(f"{k} {v}" for k, v in arm["errors"].items()) or "0",
                     f"{arm['sidecar_cpu_ms']:.1f}", f"{arm['milvus_cpu_ms']:.1f}",
                     f"{arm['client_cpu_ms']:.1f}",
                     f"{curve[0][1]:.0f} -> {curve[-1][1]:.0f}" if curve and curve[0][1] else "-",
                     f"{arm['mean_batch']:.1f}" if "mean_batch" in arm else "-",
                     f"{arm['cache_hit_rate']:.2f}" if "cache_hit_rate" in arm else "-",
                     stages or "-"))
    table = markdown_table(("arm", "QPS", "vs naive", "p50 ms", "p99 ms", "errors",
                            "sidecar CPU ms/req", "Milvus CPU ms/req", "load client CPU ms/req",
                            "sidecar RSS MB", "mean batch", "cache hit rate",
                            "mean stage ms (sidecar's own)"), rows)
    single = report["single_client_p50_ms"]
    delay = (single.get("sidecar, vector cache off", float("nan"))
             - single.get("sidecar, batching and cache off (before)", float("nan")))
    markdown = (
        f"# Sidecar under load: {server}, {report['items']:,} items\n\n"
        f"{CLIENTS} closed-loop clients for {args.seconds:.0f} s per arm (after a warm-up), "
        "queries by id / text / image in turn, top_k 10 from 200 candidates, rerank on "
        "(shipped scorer) for the sidecar arms; the naive client gets each query's vector "
        "and skips encoding and rerank. Widths 64 and 512; sidecar, Milvus and this load "
        "client share one 2-core machine. "
        + ("Base: built by an earlier run on this server, measured as it stood "
           "(`--reuse-base`)." if report.get("reused") else
           "Base: the emoji test split ingested by `mmsearch ingest` "
           f"({report['ingest_s']:.0f} s) plus synthetic rows ({report['fill_s']:.0f} s).")
        + "\n\n" + table + "\n\n"
        "Single client, queries by id, p50 ms: "
        + ", ".join(f"{k} {v:.1f}" for k, v in single.items())
        + f". A lone request's added batching delay (cache off, batching on - off): "
          f"{delay:+.1f} ms.\n\n"
        f"![load]({name}.png)\n"
    )
    write(name, report, markdown)
    plot(name, report)
    print(markdown)


def plot(name: str, report: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    arms = report["arms"]
    axes[0].barh([a["arm"] for a in arms], [a["qps"] for a in arms], color="#48a")
    axes[0].set(xlabel="QPS at 64 clients", title=report["server"])
    for arm in arms:
        if arm["rss_mb"] and arm["rss_mb"][0][1]:
            axes[1].plot(*zip(*arm["rss_mb"], strict=True), label=arm["arm"])
    axes[1].set(xlabel="seconds under load", ylabel="sidecar RSS MB", title="memory")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
