"""Memory per index type for the d64 width at 1M rows on a real Milvus server, checked
against `mmsearch index show`'s estimates (plugin/index/estimate.py), then every width and
100M rows from the same formulas, stated as estimates.

Measured per index type on one collection of 1M synthetic unit vectors (loaded by bulk
import, mmsearch's d64 schema): the server's own figure (the sum of the loaded segments'
mem_size from `utility.get_query_segment_info`) and the growth of the server process's
RSS while each index type's collection is imported and loaded on top of the previous ones
(none released, so no freed memory is reused). Run with `make bench-sizing-milvus`."""

from __future__ import annotations

import argparse
import math
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
from mmsearch.plugin.collections import drop_base
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


def measure(client: Any, target: MilvusTarget, bulk: BackfillFolder, index_type: str,
            params: dict, nullable: bool) -> dict[str, Any]:
    """One collection per index type, imported and loaded on top of the ones before (none
    is released: freed memory would be reused by the next load and hide its growth)."""
    from pymilvus import connections, utility

    layout = Layout(f"sizing_{index_type.lower()}", (WIDTH,))
    drop_base(client, layout)
    spec = IndexSpec(index_type, "IP", params, {})
    before = server_rss()
    started = time.perf_counter()
    api = import_api_for(target, client.get_server_version())
    try:
        (report,) = import_backfill(client, api, layout, bulk, {WIDTH: spec}, False, nullable,
                                    progress=False)  # waits for the index, then loads
    finally:
        api.close()
    seconds = time.perf_counter() - started
    time.sleep(5)  # let the segments settle in the query node
    connections.connect(alias="sizing", uri=target.uri)
    segments = utility.get_query_segment_info(report.collection, using="sizing")
    connections.disconnect("sizing")
    return {"index_type": index_type, "params": params, "import_build_load_s": round(seconds),
            "server_mem_size": int(sum(s.mem_size for s in segments)),
            "rss_growth": server_rss() - before, "segments": len(segments)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--node-memory-gib", type=float, default=64.0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message=".*ORM-style PyMilvus API.*")
    target = MilvusTarget(args.uri)
    client = connect(target)
    version = client.get_server_version()
    nullable = server_supports_nullable(version)
    measured = []
    with tempfile.TemporaryDirectory() as folder:
        bulk = write_files(Path(folder), Layout("sizing", (WIDTH,)), args.items, nullable)
        for index_type, params in CONFIGS:
            row = measure(client, target, bulk, index_type, params, nullable)
            row["estimate"] = estimate_bytes(index_type, params, args.items, WIDTH)["memory"]
            row["estimate_with_scalars"] = row["estimate"] + args.items * SCALAR_BYTES
            measured.append(row)
            print(row, flush=True)
    for index_type, _params in CONFIGS:
        drop_base(client, Layout(f"sizing_{index_type.lower()}", (WIDTH,)))
    write_report(args, version, measured)


def write_report(args: argparse.Namespace, server: str, measured: list[dict]) -> None:
    rows = [[m["index_type"], human(m["estimate"]), human(m["estimate_with_scalars"]),
             human(max(m["rss_growth"], 0)),
             human(m["server_mem_size"]) if m["server_mem_size"] else "0 (not reported)",
             f"{m['rss_growth'] / m['estimate_with_scalars']:.2f}", m["import_build_load_s"]]
            for m in measured]
    hundred_m = 100_000_000
    by_width = []
    for index_type, params in CONFIGS:
        by_width.append([index_type] + [
            human(estimate_bytes(index_type, params, hundred_m, w)["memory"]
                  + hundred_m * SCALAR_BYTES) for w in WIDTHS])
    hnsw = estimate_bytes("HNSW", {"M": 16}, hundred_m, 64)["memory"] + hundred_m * SCALAR_BYTES
    full = estimate_bytes("FLAT", {}, hundred_m, 512)["memory"] + hundred_m * (SCALAR_BYTES + 700)
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
        "label, content_hash). `RSS growth` is how much the server process's resident memory grew "
        "while that index type's collection was imported and loaded, on top of the ones "
        "before (none released) (allocator and caches included), the figure a query node's "
        "memory limit meets. `server mem_size` is the loaded segments' size as the server "
        "reports it (`utility.get_query_segment_info`); Milvus 2.3.5 reports 0 for sealed "
        "segments, so RSS is the server's own figure here.\n\n"
        "## Every width at 100M rows (estimates from the same formulas, scalars included)\n\n"
        + markdown_table(["index", *[f"d{w}" for w in WIDTHS]], by_width)
        + f"\n\n## Query nodes at 100M\n\n- The d64 HNSW (the coarse stage) needs about "
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
