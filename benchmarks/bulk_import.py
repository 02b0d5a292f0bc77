"""Bulk import vs the upsert path on a real Milvus server: items/s to a searchable d64
base of synthetic items (random vectors; no encoding, which both paths share).

- upsert path: what `mmsearch ingest` does per batch after encoding: look up the stored
  content hashes, then upsert the rows (batches of --batch), then flush and load;
- bulk path: what `mmsearch backfill --import` does after encoding: write the Parquet
  files per block (pymilvus LocalBulkWriter), import them into a fresh version, wait,
  verify the count, load, move the alias.

Both end with the index built and the collection loaded, so they finish at the same
place. Run it with `make bench-bulk-milvus` (a fresh 2.3.5 server in a network
namespace)."""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import bar_chart, markdown_table, write
from mmsearch.plugin.bulk.encode import EncodedBlock
from mmsearch.plugin.bulk.files import BackfillFolder
from mmsearch.plugin.bulk.importer import import_backfill
from mmsearch.plugin.bulk.plan import Block
from mmsearch.plugin.bulk.submit import import_api_for
from mmsearch.plugin.collections import count, create_version, drop_base, ensure_loaded
from mmsearch.plugin.connection import MilvusTarget, connect
from mmsearch.plugin.expressions import ids_expression
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout, server_supports_nullable

WIDTH = 64
MODEL_ID = "synthetic"


def synthetic_rows(items: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((items, WIDTH)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [{"id": f"s-{i}", "label": f"L{i % 1000}",
             "content_hash": hashlib.sha256(str(i).encode()).hexdigest(),
             "vector": vectors[i].tolist(), "local": ""} for i in range(items)]


def upsert_path(client: object, rows: list[dict], batch: int) -> dict[str, float]:
    layout = Layout("bulkbench_upsert", (WIDTH,))
    drop_base(client, layout)
    spec = specs_for(layout.widths, {})[WIDTH]
    name = create_version(client, layout, WIDTH, 1, {}, MODEL_ID, spec, False)
    client.load_collection(name)
    client.create_alias(name, layout.alias(WIDTH))
    alias = layout.alias(WIDTH)
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        client.query(alias, filter=ids_expression([r["id"] for r in chunk]),
                     output_fields=["id", "content_hash"])
        client.upsert(alias, chunk)
    written = time.perf_counter() - started
    client.flush(alias)
    client.release_collection(name)
    ensure_loaded(client, name)  # loads the flushed segments with their index
    total = time.perf_counter() - started
    assert count(client, alias) == len(rows)
    drop_base(client, layout)
    return {"write_s": written, "total_s": total}


def bulk_path(client: object, target: MilvusTarget, rows: list[dict], block_rows: int,
              folder: Path) -> dict[str, float]:
    layout = Layout("bulkbench_bulk", (WIDTH,))
    drop_base(client, layout)
    version = client.get_server_version()
    nullable = server_supports_nullable(version)
    bulk = BackfillFolder(folder)
    blocks = [Block(i, 0, 1 + start, min(block_rows, len(rows) - start))
              for i, start in enumerate(range(0, len(rows), block_rows))]
    bulk.write_plan({"id": "bench", "model_id": MODEL_ID, "attrs": {}})
    started = time.perf_counter()
    for block in blocks:
        part = rows[block.first_line - 1 : block.first_line - 1 + block.lines]
        bulk.write_block(EncodedBlock(block, {WIDTH: part}, []), layout, {}, nullable)
    bulk.finish(blocks, layout.widths)
    written = time.perf_counter() - started
    api = import_api_for(target, version)
    try:
        import_backfill(client, api, layout, bulk, specs_for(layout.widths, {}), False,
                        nullable, progress=False)
    finally:
        api.close()
    total = time.perf_counter() - started
    assert count(client, layout.alias(WIDTH)) == len(rows)
    drop_base(client, layout)
    return {"write_s": written, "total_s": total, "files": len(blocks)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--uri", required=True, help="a Milvus server (2.3.5 here)")
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=64, help="upsert batch (the worker's)")
    parser.add_argument("--block-rows", type=int, default=50_000)
    args = parser.parse_args()
    target = MilvusTarget(args.uri)
    client = connect(target)
    rows = synthetic_rows(args.items)
    with tempfile.TemporaryDirectory() as folder:
        bulk = bulk_path(client, target, rows, args.block_rows, Path(folder))
    upsert = upsert_path(client, rows, args.batch)
    arms = {"upsert (hash lookup + upsert per batch, flush, load)": upsert,
            "bulk (Parquet files, import, verify, load, alias)": bulk}
    table = [[name, f"{args.items / arm['total_s']:.0f}", f"{arm['write_s']:.1f}",
              f"{arm['total_s']:.1f}"] for name, arm in arms.items()]
    ratio = upsert["total_s"] / bulk["total_s"]
    markdown = (f"# Bulk import vs upsert: {args.items} synthetic items, d{WIDTH}, Milvus "
                f"{client.get_server_version()}\n\n"
                + markdown_table(["path", "items/s", "write s", "to loaded s"], table)
                + f"\n\nBulk import is **{ratio:.1f}x** the upsert path's items/s "
                f"(blocks of {args.block_rows} rows, upsert batches of {args.batch}). "
                "Encoding is left out of both: it costs the same on either path "
                "(benchmarks/results/encoder_speed.md).\n")
    write("bulk_import", {"items": args.items, "width": WIDTH, "server":
                          client.get_server_version(), "arms": arms, "ratio": ratio,
                          "block_rows": args.block_rows, "batch": args.batch}, markdown)
    bar_chart("bulk_import", {name.split(" (")[0]: args.items / arm["total_s"]
                             for name, arm in arms.items()},
              "items/s to a loaded, indexed base", "bulk import vs upsert")
    print(markdown)



if __name__ == "__main__":
    main()
