"""Memory per index type for the d64 width at 1M rows on a real Milvus server, checked
against `mmsearch index show`'s estimates (plugin/index/estimate.py), then every width and
100M rows from the same formulas, stated as estimates.

Measured per index type on one collection of 1M synthetic unit vectors (loaded by bulk
import, mmsearch's d64 schema): the server's own figure (the sum of the loaded segments'
mem_size from `utility.get_query_segment_info`) and the growth of the server process's
RSS when the collection (its index built) is loaded into a freshly restarted server, one
server and data folder per index type. Run with `make bench-sizing-milvus` (inside a
network namespace: the server binds every interface)."""

from __future__ import annotations

import argparse
import math
import signal
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks._report import RESULTS, markdown_table, write
from benchmarks.bulk_import import WIDTH, synthetic_rows
from mmsearch.plugin.bulk.encode import EncodedBlock
from mmsearch.plugin.bulk.files import BackfillFolder
from mmsearch.plugin.bulk.importer import import_backfill
from mmsearch.plugin.bulk.plan import Block
from mmsearch.plugin.bulk.submit import import_api_for
from mmsearch.plugin.connection import MilvusTarget, connect
from mmsearch.plugin.index.estimate import estimate_bytes, human
from mmsearch.plugin.index_spec import IndexSpec
from mmsearch.plugin.schema import Layout, server_supports_nullable

GIB = 1024**3
CONFIGS = [
    ("FLAT", {}),
    ("IVF_FLAT", {"nlist": 1024}),
    ("IVF_SQ8", {"nlist": 1024}),
    ("IVF_PQ", {"nlist": 1024, "m": 16, "nbits": 8}),
    ("HNSW", {"M": 16, "efConstruction": 200}),  # the default at d64
]
WIDTHS = (32, 64, 128, 256, 512)
SCALAR_BYTES = 8 + 16 + 64 + 8  # id (~8 chars), label, content_hash (64), row overhead


def server_rss() -> int:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"milvus\x00run\x00standalone" in command:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1]) * 1024
    raise RuntimeError("no `milvus run standalone` process in this network namespace")


def write_files(folder: Path, layout: Layout, items: int, nullable: bool) -> BackfillFolder:
    """The bulk files of `items` synthetic rows, written once and imported per index type."""
    bulk = BackfillFolder(folder)
    bulk.write_plan({"id": "sizing", "model_id": "synthetic", "attrs": {}})
    blocks = []
    for i, start in enumerate(range(0, items, 100_000)):
        block = Block(i, 0, start + 1, min(100_000, items - start))
        rows = synthetic_rows(block.lines, seed=i)
        for n, row in enumerate(rows):
            row["id"] = f"s-{start + n}"
        bulk.write_block(EncodedBlock(block, {WIDTH: rows}, []), layout, {}, nullable)
        blocks.append(block)
    bulk.finish(blocks, layout.widths)
    return bulk


class Server:
    """An embedded 2.3.5 server in its own folder, on a new port at every start (pymilvus
    keeps one channel per address, and a channel that saw a server go away waits out
    gRPC's reconnect backoff)."""

    def __init__(self, python: str, port: int) -> None:
        self.script = str(Path(__file__).resolve().parents[1] / "tests" / "integration" /
                          "milvus_server_start.py")
        self.python, self.port = python, port - 1
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, folder: Path) -> Any:
        self.port += 1
        self.process = subprocess.Popen([self.python, self.script, str(folder),
                                         str(self.port)], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        if not self.process.stdout.readline().startswith("READY"):
            raise RuntimeError("the Milvus server did not start")
        deadline = time.monotonic() + 180
        while True:  # READY comes before the proxy takes connections
            try:
                client = connect(MilvusTarget(self.uri))
                client.list_collections()
                return client
            except Exception:  # pymilvus raises MilvusException until the server is up
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=180)
            self.process = None


def measure(server: Server, folder: Path, bulk: BackfillFolder, index_type: str,
            params: dict) -> dict[str, Any]:
    """A fresh server per index type: import (the index built), stop, start again, then
    the RSS growth of loading that one collection into a process that loaded nothing."""
    from pymilvus import connections, utility

    layout = Layout("sizing", (WIDTH,))
    client = server.start(folder)
    version = client.get_server_version()
    nullable = server_supports_nullable(version)
    started = time.perf_counter()
    api = import_api_for(MilvusTarget(server.uri), version)
    try:
        (report,) = import_backfill(client, api, layout, bulk,
                                    {WIDTH: IndexSpec(index_type, "IP", params, {})}, False,
                                    nullable, progress=False)
    finally:
        api.close()
    seconds = time.perf_counter() - started
    client.close()
    server.stop()
    client = server.start(folder)
    client.release_collection(report.collection)  # a restarted 2.3 reloads what was loaded
    time.sleep(5)
    before = server_rss()
    client.load_collection(report.collection)
    time.sleep(5)  # let the segments settle in the query node
    after = server_rss()
    connections.connect(alias="sizing", uri=server.uri)
    segments = utility.get_query_segment_info(report.collection, using="sizing")
    connections.disconnect("sizing")
    client.close()
    server.stop()
    return {"index_type": index_type, "params": params, "import_build_load_s": round(seconds),
            "server_mem_size": int(sum(s.mem_size for s in segments)),
            "rss_growth": after - before, "segments": len(segments)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--server-python", required=True,
                        help="a python with milvus==2.3.5 (a server per index type)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=19530)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--node-memory-gib", type=float, default=64.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")
    server = Server(args.server_python, args.port)
    measured = []
    with tempfile.TemporaryDirectory() as files:
        bulk = write_files(Path(files), Layout("sizing", (WIDTH,)), args.items, False)
        for index_type, params in CONFIGS:
            try:
                row = measure(server, args.data_dir / index_type.lower(), bulk, index_type,
                              params)
            finally:
                server.stop()
            row["estimate"] = estimate_bytes(index_type, params, args.items, WIDTH)["memory"]
            row["estimate_with_scalars"] = row["estimate"] + args.items * SCALAR_BYTES
            measured.append(row)
            print(row, flush=True)
    write_report(args, "v2.3.5", measured)


def write_report(args: argparse.Namespace, server: str, measured: list[dict]) -> None:
    rows = [[m["index_type"], human(m["estimate"]), human(m["estimate_with_scalars"]),
             human(max(m["rss_growth"], 0)),
             human(m["server_mem_size"]) if m["server_mem_size"] else "0 (not reported)",
             f"{m['rss_growth'] / m['estimate_with_scalars']:.2f}", m["import_build_load_s"]]
            for m in measured]
    hundred_m = 100_000_000
    ratio = {m["index_type"]: max(m["rss_growth"], 1) / m["estimate_with_scalars"]
             for m in measured}
    by_width = []
    for index_type, params in CONFIGS:
        formula = [estimate_bytes(index_type, params, hundred_m, w)["memory"]
                   + hundred_m * SCALAR_BYTES for w in WIDTHS]
        by_width.append([index_type, f"{ratio.get(index_type, 1):.2f}"] + [
            f"{human(f)} / {human(int(f * ratio.get(index_type, 1)))}" for f in formula])
    # the node counts use the measured ratios: the formulas alone undercount (table above)
    hnsw = int((estimate_bytes("HNSW", {"M": 16}, hundred_m, 64)["memory"]
                + hundred_m * SCALAR_BYTES) * ratio.get("HNSW", 1))
    full = int((estimate_bytes("FLAT", {}, hundred_m, 512)["memory"]
                + hundred_m * (SCALAR_BYTES + 700)) * ratio.get("FLAT", 1))
    usable = args.node_memory_gib * GIB * 0.7  # headroom: loading, compaction, growth
    nodes_hnsw = math.ceil(hnsw / usable)
    nodes_all = math.ceil((hnsw + full) / usable)
    markdown = (
        f"# Sizing: memory per index type, d{WIDTH} at {args.items:,} rows (Milvus {server}), "
        "and every width at 100M (estimates)\n\n"
        "## Measured at 1M, d64\n\n"
        + markdown_table(["index", "estimate (index)", "estimate + scalars",
                          "server RSS growth", "server mem_size", "RSS / estimate",
                          "import+build+load s"], rows)
        + "\n\n`estimate` is `mmsearch index show`'s formula for the vector index alone; "
        f"`+ scalars` adds {SCALAR_BYTES} bytes per row for mmsearch's scalar fields (id, "
        "label, content_hash). `RSS growth` is how much the server process's resident "
        "memory grew loading that collection (its index built) into a freshly started "
        "server that had loaded nothing, one server and data folder per index type "
        "(allocator and caches included): the figure a query node's "
        "memory limit meets. `server mem_size` is the loaded segments' size as the server "
        "reports it (`utility.get_query_segment_info`); Milvus 2.3.5 reports 0 for sealed "
        "segments, so RSS is the server's own figure here.\n\n"
        "## Every width at 100M rows (estimates, scalars included)\n\n"
        "Each cell: the formula / the formula times the ratio measured for that index type "
        "at 1M d64 (the ratio is assumed to hold at every width and at 100M: an estimate, "
        "not a measurement).\n\n"
        + markdown_table(["index", "measured ratio", *[f"d{w}" for w in WIDTHS]], by_width)
        + f"\n\n## Query nodes at 100M (from the measured ratios)\n\n- The d64 HNSW (the "
        "coarse stage) needs about "
        f"{human(hnsw)}: **{nodes_hnsw} query node(s)** of {args.node_memory_gib:.0f} GiB "
        f"at 70 % use ({human(int(usable))} each).\n"
        f"- The full-width d512 collection is only fetched by id (refine), never searched: "
        f"FLAT plus the local features (~700 B per row) is about {human(full)}; loaded in "
        f"memory it brings the total to **{nodes_all} nodes**.\n"
        "- **mmap** (queryNode.mmap.* in `deploy/kubernetes/milvus-values.yaml`, "
        "Milvus 2.4+; not measured here: 2.3.5 has no per-collection mmap): with "
        "`vectorField` and `scalarField` mapped, the raw vectors and scalars of the full "
        "width stay on local disk and only the pages refine touches sit in the page "
        "cache, so its memory falls to the working set and the node count to about "
        f"{nodes_hnsw} + a fraction. For the d64 HNSW, mmap of the index (`vectorIndex`) "
        "trades every graph hop for a possible page fault: keep it in memory. IVF_* and "
        "FLAT index files map the same way as raw data; IVF_SQ8 and IVF_PQ are already "
        "4x and 16x smaller than the raw vectors, which is the other way to fewer nodes "
        "at some recall (`mmsearch index bench`).\n")
    write("sizing", {"server": server, "items": args.items, "width": WIDTH,
                     "measured": measured, "node_memory_gib": args.node_memory_gib,
                     "nodes_hnsw_d64_100m": nodes_hnsw, "nodes_with_full_width": nodes_all},
          markdown)
    _plot(measured)
    print(markdown)


def _plot(measured: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["index_type"] for m in measured]
    fig, ax = plt.subplots(figsize=(6, 3))
    y = range(len(names))
    ax.barh([i + 0.2 for i in y], [m["estimate_with_scalars"] / 2**20 for m in measured],
            height=0.4, label="estimate + scalars")
    ax.barh([i - 0.2 for i in y], [max(m["rss_growth"], 0) / 2**20 for m in measured],
            height=0.4, label="server RSS growth")
    ax.set_yticks(list(y), names)
    ax.set(xlabel="MiB at 1M rows, d64", title="memory per index type")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "sizing.png", dpi=110)


if __name__ == "__main__":
    main()
