"""`mmsearch index` against a Milvus Lite server holding a base ingested by the worker:
show, bench, recommend, funnel, then a rebuild under concurrent searches (through the gRPC
sidecar) and concurrent writes (through the alias), then a rollback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from mmsearch.app.cli import main
from mmsearch.encoders import load_encoder
from mmsearch.plugin.connection import MilvusTarget, Retrying, connect
from mmsearch.plugin.index.exact import iterate_rows
from mmsearch.plugin.index.versions import current_version, versions
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import Limits
from mmsearch.rerank.server import Sidecar, build_server
from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.data import write_items
from support.processes import free_port, start_lite_server
from support.sidecar_stack import server_settings_for_tests

WIDTHS = (8, 16, 32)
LAYOUT = Layout("items", WIDTHS)
ITEMS = 300


@pytest.fixture(scope="module")
def lite(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("index")
    port = free_port()
    server = start_lite_server(root / "lite", port)
    uri = f"http://127.0.0.1:{port}"
    encoder = load_encoder("onnx", export_dir=models_dir / "export" / "tiny")
    options = IngestOptions(LAYOUT, specs_for(WIDTHS, {}), root / "state", batch_size=64,
                            progress=False)
    IngestWorker(encoder, Retrying(MilvusTarget(uri)), options).run(
        open_source(write_items(root / "data", ITEMS)))
    try:
        yield {"uri": uri, "root": root, "encoder": encoder, "client": connect(MilvusTarget(uri))}
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture(autouse=True)
def widths_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMSEARCH_WIDTHS", ",".join(map(str, WIDTHS)))


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_iterate_rows_pages_through_every_row(lite: dict) -> None:
    ids = [row["id"] for rows in iterate_rows(lite["client"], "items_d8", ["id"], batch=70)
           for row in rows]
    assert len(ids) == len(set(ids)) == ITEMS


def test_show_on_a_fresh_base(lite: dict, capsys: pytest.CaptureFixture) -> None:
    code, out = run_cli(capsys, "index", "show", "--uri", lite["uri"], "--json")
    assert code == 0
    report = json.loads(out)
    assert [r["width"] for r in report] == list(WIDTHS)
    for item in report:
        assert item["collection"] == f"items_d{item['width']}_v1" and item["versions"] == [1]
        assert item["entities"] == ITEMS
        assert item["index"]["index_type"] == "HNSW" and item["index"]["metric_type"] == "IP"
        assert item["index"]["params"]["efConstruction"] == 200
        assert item["differs_from_config"] == []
        assert item["estimate"]["memory"] > ITEMS * item["width"] * 4  # vectors + graph
    # a config that asks for another index is reported as a difference
    config = lite["root"] / "ivf.yaml"
    config.write_text(yaml.safe_dump({"index": {16: {"index_type": "IVF_FLAT",
                                                     "params": {"nlist": 64}}}}))
    code, out = run_cli(capsys, "index", "show", "--uri", lite["uri"], "--config", str(config))
    assert code == 0
    row16 = next(line for line in out.splitlines() if line.startswith("16 |"))
    assert "index_type: HNSW (configured IVF_FLAT)" in row16
    assert "items_d16 -> items_d16_v1" in row16


def test_bench_then_recommend(lite: dict, capsys: pytest.CaptureFixture) -> None:
    configs = lite["root"] / "configs.yaml"
    configs.write_text(yaml.safe_dump([
        {"index_type": "FLAT"},
        {"index_type": "HNSW", "params": {"M": 8, "efConstruction": 64},
         "search": [{"ef": 100}, {"ef": 200}]},
        {"index_type": "IVF_FLAT", "params": {"nlist": 16}, "search": [{"nprobe": 1},
                                                                      {"nprobe": 16}]},
        {"index_type": "DISKANN"},  # Milvus Lite refuses it: reported, not fatal
    ]))
    results = lite["root"] / "bench"
    code, out = run_cli(capsys, "index", "bench", "--uri", lite["uri"], "--width", "16",
                        "--configs", str(configs), "--results", str(results), "--queries", "50")
    assert code == 0
    payload = json.loads((results / "items_d16.json").read_text())
    assert (results / "items_d16.png").stat().st_size > 1000
    assert "Refused by this server" in (results / "items_d16.md").read_text()
    by_label = {c["label"]: c for c in payload["configs"]}
    assert "refused" in by_label["DISKANN"]
    flat = by_label["FLAT"]["points"][0]
    assert flat["recall@10"] == pytest.approx(1.0) and flat["recall@100"] == pytest.approx(1.0)
    points = [p for c in payload["configs"] for p in c.get("points", [])]
    assert len(points) == 5 and any(p["pareto"] for p in points)
    assert all(p["qps_batch1"] > 0 and p["p99_ms"] >= p["p50_ms"] for p in points)
    assert not lite["client"].has_collection("items_d16_bench")  # the copy is dropped

    target = 0.9
    code, out = run_cli(capsys, "index", "recommend", "--uri", lite["uri"], "--results",
                        str(results), "--target", str(target), "--k", "10")
    assert code == 0
    block = yaml.safe_load(out)["index"]
    picked = block[16]
    chosen = next(p for p in points if p["index_type"] == picked["index_type"]
                  and p["params"] == picked["params"] and p["search"] == picked["search_params"])
    assert chosen["recall@10"] >= target
    assert chosen["qps_batch1"] == max(p["qps_batch1"] for p in points
                                       if p["recall@10"] >= target)
    specs_for(WIDTHS, block)  # the printed block is a valid `index:` config section


def test_funnel_reports_cheapest_setting(lite: dict, capsys: pytest.CaptureFixture) -> None:
    code, out = run_cli(capsys, "index", "funnel", "--uri", lite["uri"], "--queries", "40",
                        "--candidates", "20,80", "--json")
    assert code == 0
    result = json.loads(out)
    direct = [p for p in result["points"] if p["width"] == 32]
    assert len(direct) == 1 and direct[0]["recall@10"] == pytest.approx(1.0)  # exact at 300
    refined = {(p["width"], p["candidates"]): p for p in result["points"] if p["refine"]}
    # more candidates to refine can only add true neighbours
    assert refined[(8, 80)]["recall@10"] >= refined[(8, 20)]["recall@10"]
    code, out = run_cli(capsys, "index", "funnel", "--uri", lite["uri"], "--queries", "40",
                        "--candidates", "20,80", "--target", "0.5")
    assert "cheapest with recall@10 >= 0.5" in out


def sidecar_for(lite: dict) -> tuple[grpc.Server, int]:
    milvus = Retrying(MilvusTarget(lite["uri"]))
    pipeline = SearchPipeline(lite["encoder"], milvus, WIDTHS, specs_for(WIDTHS, {}),
                              Limits(max_top_k=20, max_candidates=50, default_candidates=30,
                                     rerank_depth=64),
                              coarse_width=16)
    server, port, _health = build_server(Sidecar(pipeline, server_settings_for_tests()),
                                         probe=lambda: True)
    server.start()
    return server, port


def index_command(lite: dict, *argv: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MMSEARCH_WIDTHS": ",".join(map(str, WIDTHS))}
    return subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "index", *argv, "--uri",
                           lite["uri"]], env=environment, capture_output=True, text=True,
                          timeout=600)


def test_rebuild_under_searches_and_writes_then_rollback(lite: dict) -> None:
    client = lite["client"]
    server, port = sidecar_for(lite)
    stop = threading.Event()
    errors: list[str] = []
    short: list[int] = []
    searches = [0]
    written: list[str] = []
    deleted: list[str] = []
    templates = {w: client.query(f"items_d{w}", filter='id == "item-0"',
                                 output_fields=["*"])[0] for w in WIDTHS}

    def search_loop() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            while not stop.is_set():
                qid = f"item-{searches[0] % 200}"  # items 200.. may be deleted below
                try:
                    reply = stub.Search(pb.SearchRequest(base="items", top_k=10,
                                                         query=pb.Query(id=qid)), timeout=30)
                    if len(reply.hits) != 10:
                        short.append(len(reply.hits))
                except grpc.RpcError as exc:
                    errors.append(f"{exc.code()}: {exc.details()}")
                searches[0] += 1

    def write_loop() -> None:  # the worker's upserts through the alias, while rebuilding
        writer = connect(MilvusTarget(lite["uri"]))
        rng = np.random.default_rng(1)
        n = 0
        while not stop.is_set():
            vectors = rng.standard_normal((5, WIDTHS[-1])).astype(np.float32)
            # non-ASCII and quoted ids: the catch-up copies them by an id expression
            ids = [f'café "w"-{n + i}' for i in range(5)]
            for width in WIDTHS:  # like the worker: every width, the full width last
                prefix = vectors[:, :width] / np.linalg.norm(vectors[:, :width], axis=1,
                                                             keepdims=True)
                writer.upsert(f"items_d{width}", [
                    {**templates[width], "id": i, "vector": v.tolist(),
                     "content_hash": f"{n:064d}"} for i, v in zip(ids, prefix, strict=True)])
            written.extend(ids)
            if len(deleted) < ITEMS - 200:  # and a delete, as the worker does it
                gone = f"item-{ITEMS - 1 - len(deleted)}"
                for width in WIDTHS:
                    writer.delete(f"items_d{width}", filter=f'id == "{gone}"')
                deleted.append(gone)
            n += 5
            time.sleep(0.02)

    threads = [threading.Thread(target=search_loop), threading.Thread(target=write_loop)]
    for thread in threads:
        thread.start()
    try:
        done = index_command(lite, "rebuild", "--width", "16", "--index-config",
                             '{"index_type": "IVF_FLAT", "params": {"nlist": 8}, '
                             '"search_params": {"nprobe": 128}}', "--min-recall", "0.5")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        server.stop(0)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "v1 -> v2" in done.stdout
    assert searches[0] > 5 and errors == [] and short == []
    assert current_version(client, LAYOUT, 16) == 2 and versions(client, LAYOUT, 16) == [1, 2]
    assert len(written) > 0
    stored = {row["id"] for rows in iterate_rows(client, "items_d16", ["id"]) for row in rows}
    assert set(written) <= stored  # no write made during the rebuild was lost
    assert deleted and not set(deleted) & stored  # nor a delete
    assert len(stored) == ITEMS + len(written) - len(deleted)
    description = client.describe_index("items_d16", index_name="vector")
    assert description["index_type"] == "IVF_FLAT"

    # a write after the swap, then a rollback: the old version catches up before the move
    client.upsert("items_d16", [{**templates[16], "id": "après-swap",
                                 "content_hash": "1" * 64}])
    back = index_command(lite, "rollback", "--width", "16")
    assert back.returncode == 0, back.stderr[-3000:]
    assert current_version(client, LAYOUT, 16) == 1
    assert client.query("items_d16", filter='id == "après-swap"', output_fields=["id"])
    assert client.describe_index("items_d16", index_name="vector")["index_type"] == "HNSW"
