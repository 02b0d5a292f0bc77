"""Ingestion speed into Milvus Lite: end to end vs encoder-only, per stage, peak memory;
and the write path's own ceiling on 100k synthetic items (random vectors, no encoder).

Target: end-to-end items/s >= 0.9 x encoder-only items/s (Milvus writes are not the
bottleneck). Both are measured in this run on the same records, same batch size.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from mmsearch.encoders import load_encoder
from mmsearch.encoders.runtimes.base import Embeddings
from mmsearch.plugin.connection import MilvusTarget, Retrying
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.validate import Candidate, RecordValidator
from mmsearch.plugin.worker import IngestOptions, IngestWorker


def peak_mb() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"self_mb": round(own, 1), "children_mb": round(children, 1)}


def encoder_only(encoder, manifests: list[Path], batch: int) -> tuple[int, float]:  # noqa: ANN001
    """Read + validate + encode exactly as the worker does, with no Milvus at all."""
    items, started = 0, time.perf_counter()
    for manifest in manifests:
        source = open_source(manifest)
        validator = RecordValidator(source.root)
        pending: list[Candidate] = []
        for raw in source.records():
            candidate = validator.validate(raw)
            if isinstance(candidate, Candidate):
                pending.append(candidate)
            if len(pending) == batch:
                items += len(encoder.encode_items([c.image for c in pending],
                                                  [c.text for c in pending]).indices)
                pending = []
        if pending:
            items += len(encoder.encode_items([c.image for c in pending],
                                              [c.text for c in pending]).indices)
    return items, time.perf_counter() - started


def end_to_end(encoder, manifests: list[Path], batch: int, workdir: Path  # noqa: ANN001
               ) -> tuple[int, float, dict[str, float]]:
    widths = encoder.config.widths
    options = IngestOptions(Layout("bench", widths), specs_for(widths, {}), workdir / "state",
                            batch_size=batch, progress=False)
    worker = IngestWorker(encoder, Retrying(MilvusTarget(str(workdir / "e2e.db"))), options)
    items, started = 0, time.perf_counter()
    for manifest in manifests:
        items += worker.run(open_source(manifest)).ingested
    return items, time.perf_counter() - started, dict(worker.stages)


def write_path(encoder, count: int, batch: int, workdir: Path) -> tuple[float, dict]:  # noqa: ANN001
    """Random unit vectors through the worker's write path (every width + local features)."""
    widths = encoder.config.widths
    options = IngestOptions(Layout("synthetic", widths), specs_for(widths, {}),
                            workdir / "state2", batch_size=batch, progress=False)
    worker = IngestWorker(encoder, Retrying(MilvusTarget(str(workdir / "write.db"))), options)
    worker._ensure({"category": "varchar"})
    rng = np.random.default_rng(0)
    cells, dim = encoder.config.local.cells, encoder.config.local.dim
    started = time.perf_counter()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        items = [Candidate(0, f"s{start + i}", None, None, None, {"category": "x"}, "h" * 64)
                 for i in range(n)]
        vectors = rng.standard_normal((n, encoder.config.width_max)).astype(np.float32)
        local = rng.standard_normal((n, cells, dim)).astype(np.float32)
        worker._write(items, Embeddings(np.arange(n), vectors, local, np.ones(n, bool), ()))
    return time.perf_counter() - started, dict(worker.stages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/emoji-v1"))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--synthetic", type=int, default=100_000)
    args = parser.parse_args()
    manifests = [args.data / "google.jsonl", args.data / "twitter.jsonl"]
    encoder = load_encoder("onnx", export_dir=args.export_dir, batch_size=args.batch)
    workdir = Path(tempfile.mkdtemp(prefix="mmsearch-ingest-bench-"))
    try:
        enc_items, enc_s = encoder_only(encoder, manifests, args.batch)
        e2e_items, e2e_s, stages = end_to_end(encoder, manifests, args.batch, workdir)
        memory = peak_mb()
        syn_s, syn_stages = write_path(encoder, args.synthetic, 1000, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    enc_rate, e2e_rate = enc_items / enc_s, e2e_items / e2e_s
    ratio = e2e_rate / enc_rate
    # once per base / per manifest, not per item: shown separately, never hidden
    one_time = stages.get("create/verify collections", 0.0) + stages.get("final flush", 0.0)
    steady_ratio = (e2e_items / (e2e_s - one_time)) / enc_rate
    rows = [("encoder only (read+validate+encode)", enc_items, enc_s, enc_rate),
            ("end to end (worker into Milvus Lite, 5 widths)", e2e_items, e2e_s, e2e_rate),
            (f"write path only ({args.synthetic} synthetic, batch 1000)", args.synthetic, syn_s,
             args.synthetic / syn_s)]
    table = markdown_table(("run", "items", "seconds", "items/s"), rows)
    stage_table = markdown_table(("stage (end-to-end run)", "seconds", "share"),
                                 [(k, v, v / e2e_s) for k, v in sorted(stages.items(),
                                                                       key=lambda kv: -kv[1])])
    size = encoder.config.image_tower.input_size
    intro = (f"# Ingestion speed\n\nEmoji manifests (google + twitter, {e2e_items} items) into "
             f"Milvus Lite, ONNX Runtime CPU, batch {args.batch}, image {size}px. "
             f"**End-to-end / encoder-only = {ratio:.3f}** (target >= 0.9); without the "
             f"one-time collection creation and final flush ({one_time:.1f} s): "
             f"{steady_ratio:.3f}. Peak RSS: "
             f"{memory['self_mb']} MB (this process, incl. in-process Milvus Lite client), "
             f"{memory['children_mb']} MB (largest child: the Lite server).\n\n")
    write("ingest_speed", {"encoder_only": {"items": enc_items, "seconds": enc_s},
                           "end_to_end": {"items": e2e_items, "seconds": e2e_s,
                                          "stages": stages},
                           "ratio": ratio, "steady_state_ratio": steady_ratio,
                           "one_time_seconds": one_time, "peak_memory": memory,
                           "synthetic_write_path": {"items": args.synthetic, "seconds": syn_s,
                                                    "stages": syn_stages}},
          intro + table + "\n\n" + stage_table + "\n\n![stages](ingest_speed.png)")
    plot(stages, e2e_s)
    print(intro + table + "\n\n" + stage_table)


def plot(stages: dict[str, float], total: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted(stages, key=lambda k: -stages[k])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh(names[::-1], [stages[n] for n in names][::-1], color="C0")
    ax.set_xlabel(f"seconds (end-to-end total {total:.1f} s)")
    ax.set_title("Where ingestion time goes")
    fig.tight_layout()
    fig.savefig(RESULTS / "ingest_speed.png", dpi=120)


if __name__ == "__main__":
    main()
