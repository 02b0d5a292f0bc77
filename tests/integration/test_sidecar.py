"""The sidecar on 127.0.0.1 over Milvus Lite, called through the generated Python stubs."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from encoders import load_encoder
from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from plugin.connection import MilvusTarget, Retrying
from plugin.index_spec import specs_for
from plugin.schema import Layout
from plugin.sources import open_source
from plugin.worker import IngestOptions, IngestWorker
from rerank.pipeline import Limits, SearchPipeline
from rerank.scorer import OnnxScorer
from rerank.scorer.export import export_scorer, save_checkpoint
from rerank.scorer.model import ListwiseScorer, ScorerConfig
from rerank.server import ServerSettings, Sidecar, build_server
from tests.conftest import CAPTIONS, png_bytes
from tests.integration.conftest import write_items

WIDTHS = (8, 16, 32)


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("sidecar")
    manifest = write_items(root / "data", 40)
    encoder = load_encoder("onnx", export_dir=models_dir / "export" / "tiny")
    milvus = Retrying(MilvusTarget(str(root / "milvus.db")))
    options = IngestOptions(Layout("items", WIDTHS), specs_for(WIDTHS, {}), root / "state",
                            batch_size=16, progress=False)
    IngestWorker(encoder, milvus, options).run(open_source(manifest))
    pipeline = SearchPipeline(encoder, milvus, WIDTHS, specs_for(WIDTHS, {}),
                              Limits(max_top_k=20, max_candidates=50, default_candidates=30),
                              coarse_width=16)
    scorer = tiny_scorer(root)
    with_scorer = replace_scorer(pipeline, scorer)
    servers = {}
    for name, token, served in (("open", None, pipeline), ("auth", "s3cret-token", pipeline),
                                ("rerank", None, with_scorer),
                                ("slow", None, replace_scorer(pipeline, NeverInTime(scorer)))):
        settings = ServerSettings("127.0.0.1:0", max_message_bytes=2 * 1024 * 1024,
                                  token=token, workers=8)
        server, port, health = build_server(Sidecar(served, settings),
                                            probe=lambda: milvus.client is not None)
        server.start()
        health.start()
        servers[name] = (server, port, health)
    channel = grpc.insecure_channel(f"127.0.0.1:{servers['open'][1]}")
    yield {"channel": channel, "root": root, "manifest": manifest, "servers": servers,
           "search": search_pb2_grpc.SearchServiceStub(channel), "pipeline": pipeline}
    channel.close()
    for server, _, health in servers.values():
        health.stop()
        server.stop(0)


def tiny_scorer(root: Path) -> OnnxScorer:
    torch.manual_seed(0)
    model = ListwiseScorer(ScorerConfig(width=32, cells=4, local_dim=8, d_model=32)).eval()
    save_checkpoint(model, root / "scorer", {"embedder_model_id": "tiny"})
    return OnnxScorer(export_scorer(root / "scorer", root / "export" / "scorer"), chunk_size=8)


class NeverInTime:
    """A scorer that says it would take forever: the pipeline must skip it (degraded)."""

    def __init__(self, scorer: OnnxScorer) -> None:
        self.inner, self.name = scorer, "slow"

    def estimate_ms(self, candidates: int) -> float:
        return 1e9

    def rerank(self, *args: object) -> np.ndarray:
        return self.inner.rerank(*args)


def replace_scorer(pipeline: SearchPipeline, scorer: object) -> SearchPipeline:
    return SearchPipeline(pipeline.encoder, pipeline.milvus, pipeline.widths, pipeline.specs,
                          Limits(20, 50, 30, rerank_depth=16), pipeline.coarse_width, scorer)


def image_of(stack: dict, index: int) -> bytes:
    return (stack["root"] / "data" / "img" / f"item-{index}.png").read_bytes()


def call_code(fn, request, **kwargs) -> tuple[grpc.StatusCode, str]:  # noqa: ANN001
    kwargs.setdefault("timeout", 30)
    with pytest.raises(grpc.RpcError) as err:
        fn(request, **kwargs)
    return err.value.code(), err.value.details()


def test_health_reflection_and_info(stack: dict) -> None:
    health = health_pb2_grpc.HealthStub(stack["channel"])
    deadline = time.time() + 20
    status = None
    while time.time() < deadline:
        status = health.Check(health_pb2.HealthCheckRequest(service="")).status
        if status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.1)
    assert status == health_pb2.HealthCheckResponse.SERVING
    reflect = reflection_pb2_grpc.ServerReflectionStub(stack["channel"])
    reply = next(reflect.ServerReflectionInfo(iter([
        reflection_pb2.ServerReflectionRequest(list_services="")])))
    names = {s.name for s in reply.list_services_response.service}
    assert {"mmsearch.v1.SearchService", "mmsearch.v1.RerankService",
            "mmsearch.v1.InfoService", "grpc.health.v1.Health"} <= names
    info = search_pb2_grpc.InfoServiceStub(stack["channel"]).Info(pb.InfoRequest(), timeout=10)
    assert list(info.widths) == list(WIDTHS) and info.max_top_k == 20
    assert info.default_coarse_width == 16 and info.scorer == "" and info.model_id


def test_search_by_image_text_and_id(stack: dict) -> None:
    search = stack["search"]
    reply = search.Search(pb.SearchRequest(base="items", top_k=5, query=pb.Query(
        image=image_of(stack, 3), text=CAPTIONS[3])), timeout=30)
    assert reply.hits[0].id == "item-3"  # the stored item with the same image and text
    assert reply.hits[0].stages.refine == pytest.approx(1.0, abs=1e-4)
    assert len(reply.hits) == 5
    top = reply.hits[0]
    assert top.stages.HasField("ann") and top.stages.HasField("refine")
    assert not top.stages.HasField("rerank") and top.score == pytest.approx(top.stages.refine)
    assert [h.score for h in reply.hits] == sorted((h.score for h in reply.hits), reverse=True)
    assert {"encode", "ann", "refine", "total"} <= set(reply.metadata.timings_ms)
    by_text = search.Search(pb.SearchRequest(base="items", top_k=3, query=pb.Query(
        text="red face")), timeout=30)
    assert len(by_text.hits) == 3
    by_id = search.Search(pb.SearchRequest(base="items", top_k=5, query=pb.Query(
        id="item-7")), timeout=30)
    assert "item-7" not in [h.id for h in by_id.hits]  # self excluded by default
    with_self = search.Search(pb.SearchRequest(base="items", top_k=5, query=pb.Query(
        id="item-7"), options=pb.SearchOptions(include_self=True)), timeout=30)
    assert with_self.hits[0].id == "item-7"


def test_filter_restricts_hits(stack: dict) -> None:
    reply = stack["search"].Search(pb.SearchRequest(
        base="items", top_k=10, filter='category == "b" and rank < 20',
        query=pb.Query(text="green cat")), timeout=30)
    lines = [json.loads(x) for x in stack["manifest"].read_text().splitlines()]
    allowed = {x["id"] for x in lines if x["attrs"]["category"] == "b" and x["attrs"]["rank"] < 20}
    assert reply.hits and {h.id for h in reply.hits} <= allowed


def raw_search(stack: dict, payload: bytes) -> tuple[grpc.StatusCode, str]:
    method = stack["channel"].unary_unary("/mmsearch.v1.SearchService/Search",
                                          request_serializer=lambda b: b,
                                          response_deserializer=lambda b: b)
    return call_code(method, payload)


def big_png() -> bytes:
    return png_bytes(Image.new("1", (7000, 6000)))


BAD_SEARCHES = [
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query()), "INVALID_ARGUMENT", "query"),
    (pb.SearchRequest(base="items", top_k=5), "INVALID_ARGUMENT", "query"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(image=b"not an image")),
     "INVALID_ARGUMENT", "query.image"),
    (pb.SearchRequest(base="items", top_k=0, query=pb.Query(text="red")), "INVALID_ARGUMENT",
     "top_k"),
    (pb.SearchRequest(base="items", top_k=-3, query=pb.Query(text="red")), "INVALID_ARGUMENT",
     "top_k"),
    (pb.SearchRequest(base="items", top_k=21, query=pb.Query(text="red")), "INVALID_ARGUMENT",
     "top_k"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="red"),
                      options=pb.SearchOptions(candidates=51)), "INVALID_ARGUMENT",
     "options.candidates"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="red"),
                      options=pb.SearchOptions(coarse_width=12)), "INVALID_ARGUMENT",
     "options.coarse_width"),
    (pb.SearchRequest(base="nothere", top_k=5, query=pb.Query(text="red")), "NOT_FOUND",
     "base"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(id="nope")), "NOT_FOUND",
     "query.id"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="red"), filter="rank >>> 3"),
     "INVALID_ARGUMENT", "filter"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="red"),
                      filter='colour == "red"'), "INVALID_ARGUMENT", "filter"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="red"),
                      options=pb.SearchOptions(rerank=True)), "FAILED_PRECONDITION",
     "options.rerank"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(text="   ")), "INVALID_ARGUMENT",
     "query.text"),
    (pb.SearchRequest(base="items", top_k=5, query=pb.Query(id="item-1", text="red")),
     "INVALID_ARGUMENT", "query"),
]


@pytest.mark.parametrize(("request_", "code", "field"), BAD_SEARCHES,
                         ids=[f"{c}-{f}-{i}" for i, (_, c, f) in enumerate(BAD_SEARCHES)])
def test_bad_search_gets_the_documented_status(stack: dict, request_: pb.SearchRequest,
                                               code: str, field: str) -> None:
    got, details = call_code(stack["search"].Search, request_)
    assert got == getattr(grpc.StatusCode, code), details
    assert details.startswith(field), details
    # and the server keeps serving
    ok = stack["search"].Search(pb.SearchRequest(base="items", top_k=1, query=pb.Query(
        text="red face")), timeout=30)
    assert len(ok.hits) == 1


def test_oversized_image_text_not_utf8_and_oversized_message(stack: dict) -> None:
    code, details = call_code(stack["search"].Search, pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(image=big_png())))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "query.image" in details
    assert "exceeds" in details
    # a Go/Node client can put non-UTF-8 bytes in a string field: craft it by hand
    query = b"\x12\x04caf\xe9"  # Query.text (field 2) = b"caf\xe9"
    payload = b"\x0a\x05items" + b"\x12" + bytes([len(query)]) + query + b"\x18\x05"
    code, details = raw_search(stack, payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("query.text")
    code, details = call_code(stack["search"].Search, pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(image=b"\0" * (3 * 1024 * 1024))))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_deadline_already_past(stack: dict) -> None:
    code, _ = call_code(stack["search"].Search, pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(text="red")), timeout=0.000001)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_rerank_validates_then_needs_a_scorer(stack: dict) -> None:
    rerank = search_pb2_grpc.RerankServiceStub(stack["channel"])
    wrong_dim = pb.RerankRequest(query=pb.Query(text="red"), candidates=[
        pb.RerankCandidate(vector=pb.Vector(values=[0.1] * 7))])
    code, details = call_code(rerank.Rerank, wrong_dim)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("candidates[0].vector")
    over = pb.RerankRequest(query=pb.Query(text="red"), candidates=[
        pb.RerankCandidate(vector=pb.Vector(values=list(np.ones(32)))) for _ in range(51)])
    code, details = call_code(rerank.Rerank, over)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("candidates")
    unknown = pb.RerankRequest(base="items", query=pb.Query(text="red"),
                               candidates=[pb.RerankCandidate(id="ghost")])
    code, details = call_code(rerank.Rerank, unknown)
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("candidates[0].id")
    fine = pb.RerankRequest(base="items", query=pb.Query(text="red"),
                            candidates=[pb.RerankCandidate(id="item-1")])
    code, details = call_code(rerank.Rerank, fine)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "no scorer" in details


def test_bearer_token(stack: dict) -> None:
    port = stack["servers"]["auth"][1]
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        info = search_pb2_grpc.InfoServiceStub(channel)
        code, details = call_code(info.Info, pb.InfoRequest())
        assert code == grpc.StatusCode.UNAUTHENTICATED and "authorization" in details
        code, _ = call_code(info.Info, pb.InfoRequest(),
                            metadata=[("authorization", "Bearer wrong")])
        assert code == grpc.StatusCode.UNAUTHENTICATED
        reply = info.Info(pb.InfoRequest(), timeout=10,
                          metadata=[("authorization", "Bearer s3cret-token")])
        assert reply.model_id


@pytest.mark.parametrize("through_server", [True, False], ids=["--server", "in-process"])
def test_search_command_writes_one_line_per_query(stack: dict, models_dir: Path,
                                                  tmp_path: Path, through_server: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from mmsearch.cli import main

    (tmp_path / "q.png").write_bytes(image_of(stack, 5))
    queries = tmp_path / "queries.jsonl"
    queries.write_text("\n".join(json.dumps(q) for q in [
        # image + caption of item-5: its stored (fused) vector is an exact match
        {"qid": "by-image", "image": "q.png", "text": CAPTIONS[5]},
        {"qid": "by-id", "id": "item-5"},
        {"qid": "filtered", "text": "red face", "filter": 'category == "a"'},
        {"qid": "broken", "id": "ghost"},
    ]) + "\n")
    out = tmp_path / "out.jsonl"
    monkeypatch.setenv("MMSEARCH_WIDTHS", "8,16,32")
    monkeypatch.setenv("MMSEARCH_MODELS__SCORER", "")  # the tiny models folder has none
    args = ["search", "--base", "items", "--queries", str(queries), "--top-k", "3",
            "--output", str(out), "--models-dir", str(models_dir), "--model", "tiny",
            "--coarse-width", "16"]
    if through_server:
        args += ["--server", f"127.0.0.1:{stack['servers']['open'][1]}"]
    else:
        args += ["--uri", str(stack["root"] / "milvus.db")]
    assert main(args) == 1  # one query failed; the others were still answered
    lines = {line["qid"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert lines["by-image"]["hits"][0]["id"] == "item-5"
    assert set(lines["by-image"]["hits"][0]["stages"]) == {"ann", "refine"}
    assert "item-5" not in [h["id"] for h in lines["by-id"]["hits"]]
    assert len(lines["filtered"]["hits"]) == 3 and "total" in lines["filtered"]["timings_ms"]
    assert "ghost" in lines["broken"]["error"]


def stub_for(stack: dict, server: str, kind: str = "search"):  # noqa: ANN201
    channel = grpc.insecure_channel(f"127.0.0.1:{stack['servers'][server][1]}")
    stack.setdefault("extra_channels", []).append(channel)
    if kind == "search":
        return search_pb2_grpc.SearchServiceStub(channel)
    return search_pb2_grpc.RerankServiceStub(channel)


def test_search_with_rerank_reorders_the_head(stack: dict) -> None:
    reply = stub_for(stack, "rerank").Search(pb.SearchRequest(
        base="items", top_k=20, query=pb.Query(text="green cat"),
        options=pb.SearchOptions(candidates=30)), timeout=30)
    assert len(reply.hits) == 20 and not reply.metadata.degraded
    head = reply.hits[:16]  # rerank_depth = 16: those carry a calibrated probability
    assert all(h.stages.HasField("rerank") and 0 <= h.score <= 1 for h in head)
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert not any(h.stages.HasField("rerank") for h in reply.hits[16:])
    assert "rerank" in reply.metadata.timings_ms
    no_rerank = stub_for(stack, "rerank").Search(pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(text="green cat"),
        options=pb.SearchOptions(rerank=False)), timeout=30)
    assert not any(h.stages.HasField("rerank") for h in no_rerank.hits)


def test_rerank_that_cannot_finish_in_time_degrades_to_refine_order(stack: dict) -> None:
    reply = stub_for(stack, "slow").Search(pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(text="green cat"), deadline_ms=60_000), timeout=30)
    assert reply.metadata.degraded
    assert list(reply.metadata.degraded_reasons) == [pb.DEGRADED_REASON_RERANK_DEADLINE]
    assert reply.hits and not any(h.stages.HasField("rerank") for h in reply.hits)
    assert [h.score for h in reply.hits] == sorted((h.score for h in reply.hits), reverse=True)


def test_rerank_rpc_points_results_to_inputs(stack: dict) -> None:
    rerank = stub_for(stack, "rerank", "rerank")
    vector = np.random.default_rng(4).standard_normal(32).tolist()
    request = pb.RerankRequest(base="items", query=pb.Query(text="blue dog"), top_k=0,
                               candidates=[pb.RerankCandidate(id="item-2"),
                                           pb.RerankCandidate(vector=pb.Vector(values=vector)),
                                           pb.RerankCandidate(id="item-9",
                                                              first_stage_score=0.5)])
    reply = rerank.Rerank(request, timeout=30)
    assert sorted(r.index for r in reply.results) == [0, 1, 2]
    by_index = {r.index: r for r in reply.results}
    assert by_index[0].id == "item-2" and by_index[1].id == "" and by_index[2].id == "item-9"
    assert [r.score for r in reply.results] == sorted((r.score for r in reply.results),
                                                      reverse=True)
    by_id = pb.RerankRequest(base="items", query=pb.Query(id="item-3"), top_k=0,
                             candidates=request.candidates)
    full = rerank.Rerank(by_id, timeout=30)
    by_id.top_k = 1
    top1 = rerank.Rerank(by_id, timeout=30)
    assert len(top1.results) == 1 and top1.results[0].index == full.results[0].index
    info = search_pb2_grpc.InfoServiceStub(stack["extra_channels"][-1]).Info(pb.InfoRequest())
    assert info.scorer == "scorer"


def test_node_client(stack: dict) -> None:
    """examples/node (grpc-js + proto-loader, installed by `make test`) against the server."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parents[2]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (apt-get install nodejs npm)")
    assert (root / "examples/node/node_modules/@grpc/grpc-js").is_dir(), \
        "run `make test` (it runs npm ci in examples/node)"
    port = stack["servers"]["rerank"][1]
    done = subprocess.run([node, str(root / "examples/node/client.js"), "--address",
                           f"127.0.0.1:{port}", "--base", "items", "--text", "green cat",
                           "--top-k", "4"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["info"]["scorer"] == "scorer" and out["info"]["widths"] == list(WIDTHS)
    assert out["health"] == "SERVING"
    assert len(out["hits"]) == 4 and "rerank" in out["hits"][0]["stages"]
    assert sorted(r["index"] for r in out["rerank"]) == [0, 1, 2, 3]
    assert out["badRequest"]["code"] == "INVALID_ARGUMENT"
    assert out["badRequest"]["details"].startswith("top_k")


def test_no_refine_keeps_the_ann_order_and_scores(stack: dict) -> None:
    request = pb.SearchRequest(base="items", top_k=8, query=pb.Query(text="smiling man"),
                               options=pb.SearchOptions(refine=False, rerank=False))
    reply = stack["search"].Search(request, timeout=30)
    assert reply.hits and not any(h.stages.HasField("refine") for h in reply.hits)
    assert all(h.score == pytest.approx(h.stages.ann) for h in reply.hits)
    reranked = stub_for(stack, "rerank").Search(pb.SearchRequest(
        base="items", top_k=8, query=pb.Query(text="smiling man"),
        options=pb.SearchOptions(refine=False)), timeout=30)
    assert all(h.stages.HasField("rerank") and not h.stages.HasField("refine")
               for h in reranked.hits)


def test_tls(stack: dict, tmp_path: Path) -> None:
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    pipeline = stack["pipeline"]
    settings = ServerSettings("127.0.0.1:0", tls_cert=cert.read_bytes(), tls_key=key.read_bytes())
    server, port, _ = build_server(Sidecar(pipeline, settings), probe=lambda: True)
    server.start()
    try:
        credentials = grpc.ssl_channel_credentials(root_certificates=cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            info = search_pb2_grpc.InfoServiceStub(channel).Info(pb.InfoRequest(), timeout=10)
            assert info.model_id == pipeline.encoder.model_id
        with grpc.insecure_channel(f"127.0.0.1:{port}") as plain:
            code, _ = call_code(search_pb2_grpc.InfoServiceStub(plain).Info, pb.InfoRequest(),
                                timeout=5)
            assert code == grpc.StatusCode.UNAVAILABLE  # plaintext is refused
    finally:
        server.stop(0)
