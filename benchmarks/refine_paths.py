"""Where refine should run: the two paths of SearchPipeline's refine stage, one request at a
time, on the same base and candidates, in the same run.

- `sidecar`: fetch the candidates' full-width vectors (and local features when the scorer
  runs) and compute the cosines in numpy, the path every earlier release took;
- `milvus`: one search on the full-width alias restricted to the candidates' ids, so only
  scores travel; the scorer then fetches the rerank head's rows alone.

Base: N synthetic unit vectors of the shipped model's widths (64 and 512) with local
features, written through the worker's schema. Each query: ANN at d64 for 200 candidates,
then each refine path (+ the head fetch for rerank, depth 64). Reported: p50 / p99 ms per
request and the benchmark process's CPU ms per request (the sidecar's share of the work).
Against Milvus Lite (default) or a server (`--uri http://127.0.0.1:19530`, e.g. the real
Milvus 2.3.5 started as `make bench-refine-milvus` does, inside `unshare -n`).
"""

from __future__ import annotations

import argparse
import base64
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write

WIDTHS = (64, 512)
CANDIDATES, DEPTH = 200, 64


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_base(uri: str, items: int) -> tuple[Any, Any]:
    from mmsearch.encoders import load_encoder
    from mmsearch.plugin.collections import ensure_collections
    from mmsearch.plugin.connection import MilvusTarget, Retrying
    from mmsearch.plugin.index_spec import specs_for
    from mmsearch.plugin.schema import Layout

    encoder = load_encoder("onnx", export_dir=Path("models/export/emoji-v1"))
    milvus = Retrying(MilvusTarget(uri, call_timeout_s=600))
    layout = Layout("refinebench", WIDTHS)
    specs = specs_for(WIDTHS, {})
    client = milvus.client
    for width in WIDTHS:
        if client.has_collection(layout.alias(width)):
            client.drop_alias(layout.alias(width))
            client.drop_collection(layout.physical(width))
    ensure_collections(client, layout, {}, encoder.model_id, specs)
    rng = np.random.default_rng(0)
    local = base64.b64encode(np.zeros((5, 64), np.float16).tobytes()).decode()
    for start in range(0, items, 2000):
        vectors = rng.standard_normal((min(2000, items - start), 512)).astype(np.float32)
        for width in WIDTHS:
            part = vectors[:, :width] / np.linalg.norm(vectors[:, :width], axis=1,
                                                        keepdims=True)
            rows = [{"id": f"v{start + i}", "vector": v.tolist(), "label": "",
                     "content_hash": "0" * 64, **({"local": local} if width == 512 else {})}
                    for i, v in enumerate(part)]
            client.upsert(layout.alias(width), rows)
    for width in WIDTHS:
        client.flush(layout.alias(width))
    from mmsearch.rerank.pipeline import SearchPipeline
    from mmsearch.rerank.requests import Limits

    def pipeline(where: str) -> SearchPipeline:
        return SearchPipeline(encoder, milvus, WIDTHS, specs, Limits(200, 1000, 200, DEPTH),
                              64, None, where)
    return pipeline, layout


def measure(pipeline: Any, layout: Any, queries: np.ndarray) -> dict[str, Any]:
    from mmsearch.rerank.requests import Hit

    times, cpu_start = [], cpu_s()
    for query in queries:
        started = time.perf_counter()
        found = pipeline._ann(layout, 64, [query], CANDIDATES, "", None)[0]
        hits = [Hit(f["id"], f["ann"], f["label"], f["ann"]) for f in found]
        hits, rows = pipeline.full_width.refine(layout, hits, query, True, None)
        head = [h.id for h in hits[:DEPTH] if h.id not in rows]
        if head:  # what the scorer would read
            rows.update(pipeline.full_width.fetch(layout, head, None))
        times.append((time.perf_counter() - started) * 1000)
    cpu_ms = (cpu_s() - cpu_start) * 1000 / len(queries)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
            "cpu_ms_per_request": cpu_ms, "requests": len(queries)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", help="a Milvus server URI (default: a temporary Milvus Lite)")
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--name", default=None, help="result name (default by server)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        uri = args.uri or str(Path(tmp) / "lite.db")
        pipeline, layout = build_base(uri, args.items)
        server = pipeline("sidecar").milvus.call("version", lambda c: c.get_server_version())
        rng = np.random.default_rng(1)
        queries = rng.standard_normal((args.queries, 512)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        runs = {}
        for where in ("sidecar", "milvus"):
            measure(pipeline(where), layout, queries[:5])  # warm-up
            runs[where] = measure(pipeline(where), layout, queries)
            print(where, runs[where], flush=True)
    name = args.name or ("refine_paths_lite" if server.startswith("milvus_lite")
                         else "refine_paths_server")
    rows = [(where, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['cpu_ms_per_request']:.1f}")
            for where, r in runs.items()]
    ratio = runs["sidecar"]["p50_ms"] / runs["milvus"]["p50_ms"]
    cpu_ratio = runs["sidecar"]["cpu_ms_per_request"] / runs["milvus"]["cpu_ms_per_request"]
    markdown = (f"# Refine paths on {server}, {args.items} items, {CANDIDATES} candidates, "
                f"rerank head {DEPTH}\n\n"
                + markdown_table(("refine in", "p50 ms", "p99 ms", "sidecar CPU ms/request"),
                                 rows)
                + f"\n\nsidecar / milvus: {ratio:.2f}x p50 latency, {cpu_ratio:.2f}x sidecar "
                  "CPU. One request at a time; ANN + refine + the head's fetch.\n")
    write(name, {"server": server, "items": args.items, "runs": runs}, markdown)
    _plot(name, runs, server)
    print(markdown)


def _plot(name: str, runs: dict[str, dict[str, Any]], server: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    wheres = list(runs)
    ax.bar([f"{w} p50" for w in wheres], [runs[w]["p50_ms"] for w in wheres], color="#48a")
    ax.bar([f"{w} CPU" for w in wheres], [runs[w]["cpu_ms_per_request"] for w in wheres],
           color="#a84")
    ax.set(ylabel="ms per request", title=f"refine paths, {server}")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=110)


if __name__ == "__main__":
    main()
