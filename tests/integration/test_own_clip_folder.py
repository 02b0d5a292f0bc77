"""A user's own local CLIP folder end to end, through the commands a user runs: train
baseline on it, export, ingest, then the sidecar answers Search over gRPC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.data import write_items

WIDTHS = "4,8,16"


def cli(*argv: str, environ: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", *argv], env=environ,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_local_clip_folder_works_end_to_end(tiny_clip_folder: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "models"
    manifest = write_items(tmp_path / "data", 24)
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    train = manifest.with_name("train.jsonl")
    train.write_text("".join(json.dumps({**r, "split": "train"}) + "\n" for r in lines))
    environ = {**os.environ, "MMSEARCH_WIDTHS": WIDTHS, "MMSEARCH_MODELS__SCORER": ""}
    common = ["--models-dir", str(models), "--model", "myclip"]
    cli("train", "baseline", *common, "--manifest", str(train), "--image-tower",
        str(tiny_clip_folder), "--local-dim", "8", environ=environ)
    model = json.loads((models / "myclip" / "model.json").read_text())
    assert model["image_tower"]["kind"] == "hf_vision"
    assert model["text_tower"]["kind"] == "hf_clip_text"
    cli("export", *common, "--no-int8", environ=environ)
    uri = str(tmp_path / "m.db")
    done = cli("ingest", "--manifest", str(manifest), "--uri", uri, "--state-dir",
               str(tmp_path / "state"), "--no-progress", *common, environ=environ)
    assert "ingested 24" in done.stdout

    from mmsearch.app.config import load_config
    from mmsearch.app.wiring import build_pipeline, server_settings
    from mmsearch.rerank.server import Sidecar, build_server

    for key, value in (("MMSEARCH_WIDTHS", WIDTHS), ("MMSEARCH_MODELS__SCORER", "")):
        monkeypatch.setenv(key, value)
    config = load_config(overrides={"milvus": {"uri": uri},
                                    "models": {"dir": str(models), "model": "myclip"}})
    server, port, _ = build_server(Sidecar(build_pipeline(config),
                                           server_settings(config, "127.0.0.1:0")),
                                   probe=lambda: True)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            image = (manifest.parent / lines[5]["image"]).read_bytes()
            reply = stub.Search(pb.SearchRequest(base="items", top_k=3, query=pb.Query(
                image=image, text=lines[5]["text"])), timeout=60)
            by_id = stub.Search(pb.SearchRequest(base="items", top_k=3,
                                                 query=pb.Query(id="item-5")), timeout=60)
    finally:
        server.stop(0)
    assert reply.hits[0].id == "item-5"  # its own image + caption: the stored fused vector
    assert len(by_id.hits) == 3 and "item-5" not in [h.id for h in by_id.hits]
