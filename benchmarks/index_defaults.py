"""Quick measurement behind the default index per width (plugin/index_spec.py).

The emoji items (google + twitter) are encoded once; for every width, candidate indexes
are built in Milvus Lite and searched with the test images as queries (one batched call),
recall@10 against exact numpy search at that width. `mmsearch index bench`
does this properly on live data; this is the written-down reason for the defaults.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._report import markdown_table, write
from mmsearch.encoders import load_encoder
from mmsearch.encoders.data.records import read_manifest

CANDIDATES = {
    "FLAT": ("FLAT", {}, {}),
    "HNSW M16 ef64": ("HNSW", {"M": 16, "efConstruction": 200}, {"ef": 64}),
    "HNSW M32 ef128": ("HNSW", {"M": 32, "efConstruction": 200}, {"ef": 128}),
    "IVF_FLAT 128/16": ("IVF_FLAT", {"nlist": 128}, {"nprobe": 16}),
}


def wait_indexed(client, collection: str, rows: int, timeout: float = 120.0) -> int:  # noqa: ANN001
    """Lite builds indexes in the background after flush: searching earlier would measure
    brute force. Wait until every row is indexed (FLAT reports none; it needs no build)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = client.describe_index(collection, index_name="vector")
        if info.get("index_type") == "FLAT" or int(info.get("indexed_rows", 0)) >= rows:
            return int(info.get("indexed_rows", rows))
        time.sleep(0.1)
    raise TimeoutError(f"{collection}: index not built after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/emoji-v1"))
    parser.add_argument("--queries", type=int, default=500)
    args = parser.parse_args()
    from pymilvus import DataType, MilvusClient

    records = [r for v in ("google", "twitter") for r in read_manifest(args.data / f"{v}.jsonl")]
    encoder = load_encoder("onnx", export_dir=args.export_dir, batch_size=64)
    items = encoder.encode_items([str(args.data / r.image) for r in records],
                                 [r.text for r in records])
    queries = encoder.encode_images([str(args.data / r.image) for r in records
                                     if r.split == "test"][: args.queries])
    workdir = Path(tempfile.mkdtemp(prefix="mmsearch-index-"))
    client = MilvusClient(str(workdir / "index.db"))
    rows, results = [], []
    try:
        for width in encoder.config.widths:
            gallery, q = items.at_width(width), queries.at_width(width)
            exact = np.argsort(-(q @ gallery.T), axis=1)[:, :10]
            for name, (kind, build, search) in CANDIDATES.items():
                collection = f"w{width}_{kind.lower()}_{len(results)}"
                index = client.prepare_index_params()
                index.add_index("vector", index_type=kind, metric_type="IP", params=build)
                # an explicit schema: quick-setup create_collection(dimension=...) silently
                # replaces the requested index with AUTOINDEX in Milvus Lite
                schema = MilvusClient.create_schema(auto_id=False)
                schema.add_field("id", DataType.INT64, is_primary=True)
                schema.add_field("vector", DataType.FLOAT_VECTOR, dim=width)
                client.create_collection(collection, schema=schema, index_params=index)
                built = client.describe_index(collection, index_name="vector")["index_type"]
                assert built == kind, f"asked for {kind}, Milvus built {built}"
                started = time.perf_counter()
                client.insert(collection, [{"id": i, "vector": v.tolist()}
                                           for i, v in enumerate(gallery)])
                client.flush(collection)
                indexed = wait_indexed(client, collection, len(gallery))
                build_s = time.perf_counter() - started
                client.search(collection, data=q[:2].tolist(), limit=10)  # warm-up
                started = time.perf_counter()
                hits = client.search(collection, data=q.tolist(), limit=10,
                                     search_params={"params": search})
                search_s = time.perf_counter() - started
                found = [[h["id"] for h in row] for row in hits]
                recall = float(np.mean([len(set(f) & set(e)) / 10
                                        for f, e in zip(found, exact, strict=True)]))
                results.append({"width": width, "index": name, "recall@10": recall,
                                "indexed_rows": indexed,
                                "insert_build_s": build_s, "batch_search_s": search_s})
                rows.append((width, name, recall, build_s, search_s * 1000 / len(q)))
                client.drop_collection(collection)
    finally:
        client.close()
        shutil.rmtree(workdir, ignore_errors=True)
    table = markdown_table(("width", "index", "recall@10", "insert+flush+build s",
                            "ms/query (batched)"), rows)
    intro = (f"# Index defaults: quick measurement\n\n{len(records)} emoji items (both vendors) "
             f"in Milvus Lite; {len(queries.indices)} test-image queries in one batched call; "
             "recall@10 against exact search at the same width.\n\n")
    write("index_defaults", {"results": results}, intro + table)
    print(intro + table)


if __name__ == "__main__":
    main()
