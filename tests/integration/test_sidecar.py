"""The sidecar on 127.0.0.1 over Milvus Lite, called through the generated Python stubs:
search, statuses for bad input, health, reflection, auth, TLS, the search command."""


from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from mmsearch.rerank.server import Sidecar, build_server
from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.data import CAPTIONS, png_bytes
from support.sidecar_stack import WIDTHS, call_code, image_of, server_settings_for_tests


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


def test_server_default_deadline_applies_only_without_a_client_deadline(stack: dict) -> None:
    # a 1 ms server budget: any Milvus round trip outlives it, so a request that brings no
    # deadline of its own is cut at the next stage; one that brings its own is not
    settings = server_settings_for_tests(default_deadline_ms=1)
    server, port, _health = build_server(Sidecar(stack["pipeline"], settings),
                                         probe=lambda: True)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            search = search_pb2_grpc.SearchServiceStub(channel)
            request = pb.SearchRequest(base="items", top_k=3, query=pb.Query(id="item-1"))
            code, details = call_code(search.Search, request, timeout=None)
            assert code == grpc.StatusCode.DEADLINE_EXCEEDED, details
            assert len(search.Search(request, timeout=30).hits) == 3  # gRPC deadline
            request.deadline_ms = 30_000
            assert len(search.Search(request).hits) == 3  # the request's own budget
    finally:
        server.stop(0)


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
    malformed = pb.RerankRequest(base="bad base!", query=pb.Query(text="red"),
                                 candidates=[pb.RerankCandidate(id="item-1")])
    code, details = call_code(rerank.Rerank, malformed)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("base")
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
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from mmsearch.app.cli import main

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
    assert "ghost" in lines["broken"]["error"]["message"]
    # both modes write the same shape: the status code and the field, as the server names them
    assert lines["broken"]["error"]["code"] == "NOT_FOUND"
    assert lines["broken"]["error"]["field"] == "query.id" and lines["broken"]["line"] == 4
    assert set(lines["by-id"]) == {"qid", "hits", "timings_ms"}
    summary = capsys.readouterr().out
    assert "3 queries answered, 1 failed (NOT_FOUND 1; first: line 4: NOT_FOUND" in summary


def test_tls(stack: dict, tmp_path: Path) -> None:
    import subprocess

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out",
                    str(cert)], check=True, capture_output=True)
    pipeline = stack["pipeline"]
    settings = server_settings_for_tests(tls_cert=cert.read_bytes(),
                                         tls_key=key.read_bytes())
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


def test_prometheus_metrics_count_requests_stages_and_codes(stack: dict) -> None:
    from prometheus_client import CollectorRegistry

    from mmsearch.rerank.metrics import SidecarMetrics

    registry = CollectorRegistry()
    sidecar = Sidecar(stack["pipeline"], server_settings_for_tests(),
                      SidecarMetrics.create(registry))
    server, port, _health = build_server(sidecar, probe=lambda: True)
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            search = search_pb2_grpc.SearchServiceStub(channel)
            search.Search(pb.SearchRequest(base="items", top_k=3, query=pb.Query(
                id="item-1")), timeout=30)
            code, _ = call_code(search.Search, pb.SearchRequest(base="items", top_k=0,
                                                                query=pb.Query(id="item-1")))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(0)
        sidecar.stop()

    def value(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    assert value("mmsearch_sidecar_requests_total", rpc="Search", code="OK") == 1
    assert value("mmsearch_sidecar_requests_total", rpc="Search",
                 code="INVALID_ARGUMENT") == 1
    assert value("mmsearch_sidecar_stage_seconds_count", stage="ann") == 1
    assert value("mmsearch_sidecar_candidates_count") == 1
    assert value("mmsearch_sidecar_in_flight") == 0
    # both went through the admission window (the bad one failed inside its batch)
    assert value("mmsearch_sidecar_batch_size_count") == 2
    assert value("mmsearch_sidecar_batch_size_bucket", le="1.0") == 2
    assert value("mmsearch_sidecar_stage_seconds_count", stage="queue") == 1


@pytest.mark.parametrize("bad_id", ["item\x00-1", "item-1\n", "tab\there"])
def test_search_by_an_id_with_control_characters_names_query_id(stack: dict,
                                                                 bad_id: str) -> None:
    search = search_pb2_grpc.SearchServiceStub(stack["channel"])
    code, details = call_code(search.Search, pb.SearchRequest(
        base="items", top_k=3, query=pb.Query(id=bad_id)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("query.id"), details


@pytest.mark.parametrize(("payload", "field"), [
    (b"\x0a\x04it\xffs" + b"\x12\x02\x12\x00" + b"\x18\x05", "base"),
    (b"\x0a\x05items" + b"\x12\x05\x1a\x03i\xfe1" + b"\x18\x05", "query.id"),
    (b"\x0a\x05items" + b"\x12\x03\x12\x01a" + b"\x18\x05" + b"\x22\x02\xc3\x28", "filter"),
])
def test_non_utf8_bytes_name_their_own_field(stack: dict, payload: bytes, field: str) -> None:
    code, details = raw_search(stack, payload)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


def test_rerank_names_a_non_utf8_candidate_id() -> None:
    from mmsearch.rerank.convert import bad_utf8_field

    good = pb.RerankRequest(base="items", query=pb.Query(text="x"), candidates=[
        pb.RerankCandidate(id="a"), pb.RerankCandidate(id="b")]).SerializeToString()
    bad = good.replace(b"\x0a\x01b", b"\x0a\x01\xff")
    assert bad != good
    assert bad_utf8_field(pb.RerankRequest.DESCRIPTOR, good) is None
    assert bad_utf8_field(pb.RerankRequest.DESCRIPTOR, bad) == "candidates[1].id"


@pytest.mark.parametrize(("options", "field"), [
    (pb.SearchOptions(candidates=0), "options.candidates"),
    (pb.SearchOptions(coarse_width=0), "options.coarse_width"),
])
def test_explicit_zero_options_are_errors_not_defaults(stack: dict, options: pb.SearchOptions,
                                                       field: str) -> None:
    code, details = call_code(stack["search"].Search, pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(text="red"), options=options))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith(field), details


@pytest.mark.parametrize("request_field", ["base", "id"])
def test_huge_echoed_values_do_not_overflow_the_status(stack: dict, request_field: str) -> None:
    value = "x" * 20_000
    request = (pb.SearchRequest(base=value, top_k=5, query=pb.Query(text="red"))
               if request_field == "base" else
               pb.SearchRequest(base="items", top_k=5, query=pb.Query(id=value)))
    code, details = call_code(stack["search"].Search, request)
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details[:200])
    assert len(details) < 1200


@pytest.mark.parametrize("address", ["busy", "notanaddress", "127.0.0.1:99999"])
def test_a_server_that_cannot_bind_says_so(stack: dict, address: str) -> None:
    from mmsearch.rerank.server import AddressError

    first = None
    if address == "busy":
        first, port, _ = build_server(Sidecar(stack["pipeline"], server_settings_for_tests()),
                                      probe=lambda: True)
        first.start()
        address = f"127.0.0.1:{port}"
    try:
        settings = server_settings_for_tests(address=address)
        with pytest.raises(AddressError, match="cannot listen on"):
            build_server(Sidecar(stack["pipeline"], settings), probe=lambda: True)
    finally:
        if first is not None:
            first.stop(0)


def test_a_failed_request_logs_one_line_with_its_request_id(
        stack: dict, caplog: pytest.LogCaptureFixture) -> None:
    search = search_pb2_grpc.SearchServiceStub(stack["channel"])
    request = pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="red"),
                               filter="category === 1")
    with caplog.at_level("INFO", logger="mmsearch.rerank.server"), \
            pytest.raises(grpc.RpcError) as caught:
        search.Search(request, metadata=(("x-request-id", "req-42"),), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(caught.value.trailing_metadata())["x-request-id"] == "req-42"
    lines = [r for r in caplog.records if "req-42" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None  # one line, no traceback
    assert "INVALID_ARGUMENT" in lines[0].getMessage()
    with pytest.raises(grpc.RpcError) as unnamed:  # no id sent: one is made and returned
        search.Search(request, timeout=30)
    assert len(dict(unnamed.value.trailing_metadata())["x-request-id"]) == 16


def test_a_base_built_by_another_model_is_refused(stack: dict) -> None:
    """A shipped model change leaves old bases in another vector space: searching one is
    FAILED_PRECONDITION naming both models and the re-ingest that migrates it."""
    from mmsearch.plugin.collections import ensure_collections
    from mmsearch.plugin.index_spec import specs_for
    from mmsearch.plugin.schema import Layout

    ensure_collections(stack["pipeline"].milvus.client, Layout("oldmodel", WIDTHS), {},
                       "emoji-v0-model-id", specs_for(WIDTHS, {}))
    code, details = call_code(stack["search"].Search, pb.SearchRequest(
        base="oldmodel", top_k=5, query=pb.Query(text="red")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "emoji-v0-model-id" in details and stack["pipeline"].encoder.model_id in details
    assert "re-ingest" in details and "mmsearch ingest" in details
