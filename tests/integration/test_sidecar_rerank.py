"""The sidecar with a scorer: reranked heads, degraded replies, the Rerank RPC, and the
Node example client."""


from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.sidecar_stack import WIDTHS, stub_for


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
                           "--top-k", "4", "--output-fields", "label,category,rank,flag",
                           "--min-score", "0.0"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["info"]["scorer"] == "scorer" and out["info"]["widths"] == list(WIDTHS)
    assert out["health"] == "SERVING"
    assert len(out["hits"]) == 4 and "rerank" in out["hits"][0]["stages"]
    assert sorted(r["index"] for r in out["rerank"]) == [0, 1, 2, 3]
    assert out["badRequest"]["code"] == "INVALID_ARGUMENT"
    assert out["badRequest"]["details"].startswith("top_k")
    first = out["hits"][0]["fields"]  # typed output fields, as Node sees them
    assert set(first) == {"label", "category", "rank", "flag"}
    assert isinstance(first["rank"], int) and isinstance(first["flag"], bool)
    assert out["min_score_applied"] is True and out["timings"]["total"] > 0
    assert out["batch"][0]["hits"] == [h["id"] for h in out["hits"]]  # SearchBatch = Search
    assert out["batch"][1] == {"error": "NOT_FOUND"}


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




@pytest.mark.parametrize(("candidate", "field"), [
    (pb.RerankCandidate(id="item-2", first_stage_score=float("nan")),
     "candidates[0].first_stage_score"),
    (pb.RerankCandidate(id="item-2", first_stage_score=float("inf")),
     "candidates[0].first_stage_score"),
    (pb.RerankCandidate(id="item\x002"), "candidates[0].id"),
    (pb.RerankCandidate(id="line\nbreak"), "candidates[0].id"),
])
def test_rerank_rejects_bad_candidates_naming_them(stack: dict, candidate: pb.RerankCandidate,
                                                   field: str) -> None:
    import grpc

    rerank = stub_for(stack, "rerank", "rerank")
    with pytest.raises(grpc.RpcError) as caught:
        rerank.Rerank(pb.RerankRequest(base="items", query=pb.Query(text="blue dog"),
                                       candidates=[candidate]), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(field)


@pytest.mark.parametrize("magnitude", [3e38, 1e-45])
def test_extreme_raw_vectors_are_normalised_not_zeroed(stack: dict, magnitude: float) -> None:
    rerank = stub_for(stack, "rerank", "rerank")
    # signs only: exact in float32 even at the smallest subnormal (1e-45 rounds to 1.4e-45)
    direction = np.sign(np.random.default_rng(5).standard_normal(32))
    extreme = pb.RerankCandidate(vector=pb.Vector(values=(direction * magnitude).tolist()))
    plain = pb.RerankCandidate(vector=pb.Vector(values=direction.tolist()))
    reply = rerank.Rerank(pb.RerankRequest(query=pb.Query(text="blue dog"),
                                           candidates=[extreme, plain]), timeout=30)
    by_index = {r.index: r for r in reply.results}
    assert all(np.isfinite(r.score) and np.isfinite(r.stages.refine) for r in reply.results)
    assert by_index[0].stages.refine == pytest.approx(by_index[1].stages.refine, abs=1e-6)
    assert by_index[0].score == pytest.approx(by_index[1].score, abs=1e-5)


def test_refine_in_milvus_and_in_the_sidecar_return_the_same_hits(stack: dict) -> None:
    """Milvus-side refine (a search restricted to the candidates' ids: only scores travel)
    and the fetch path agree on every query kind, filters and the rerank head included."""
    from mmsearch.rerank.requests import SearchParams, SearchQuery
    from support.sidecar_stack import replace_scorer

    paths = {where: replace_scorer(stack["pipeline"], stack["scorer"], where)
             for where in ("milvus", "sidecar")}
    assert paths["milvus"].full_width.refines_in_milvus(paths["milvus"]._layout("items"))
    assert not paths["sidecar"].full_width.refines_in_milvus(paths["sidecar"]._layout("items"))
    cases = [(SearchQuery(text="green cat"), {}), (SearchQuery(id="item-3"), {}),
             (SearchQuery(text="red face"), {"filter": 'category == "a"'}),
             (SearchQuery(text="blue dog"), {"rerank": False}),
             (SearchQuery(text="blue dog"), {"refine": False})]
    for query, options in cases:
        params = SearchParams(base="items", top_k=20, candidates=30, **options)
        got = {where: p.search(query, params) for where, p in paths.items()}
        ids = {where: [h.id for h in r.hits] for where, r in got.items()}
        assert ids["milvus"] == ids["sidecar"], (query, options)
        for a, b in zip(got["milvus"].hits, got["sidecar"].hits, strict=True):
            assert (a.refine is None) == (b.refine is None)
            if a.refine is not None:
                assert abs(a.refine - b.refine) < 1e-3  # fp16-level agreement
            assert a.score == pytest.approx(b.score, abs=1e-3)


def test_min_score_cuts_on_the_calibrated_score_only(stack: dict) -> None:
    rerank = stub_for(stack, "rerank")
    query = pb.Query(text="green cat")
    every = rerank.Search(pb.SearchRequest(base="items", top_k=16, query=query,
                                           options=pb.SearchOptions(candidates=30)), timeout=30)
    scores = sorted(h.score for h in every.hits)
    threshold = scores[len(scores) // 2]
    cut = rerank.Search(pb.SearchRequest(base="items", top_k=16, query=query,
                                         options=pb.SearchOptions(candidates=30,
                                                                  min_score=threshold)),
                        timeout=30)
    assert cut.metadata.min_score_applied
    assert [h.id for h in cut.hits] == [h.id for h in every.hits if h.score >= threshold]
    no_rerank = rerank.Search(pb.SearchRequest(base="items", top_k=5, query=query,
                                               options=pb.SearchOptions(rerank=False,
                                                                        min_score=0.99)),
                              timeout=30)
    assert not no_rerank.metadata.min_score_applied  # never compared with a cosine
    assert len(no_rerank.hits) == 5


def test_rerank_takes_documents_in_the_common_shape(stack: dict) -> None:
    import grpc

    from support.sidecar_stack import image_of

    rerank = stub_for(stack, "rerank", "rerank")
    docs = [pb.RerankCandidate(document=pb.Document(text="blue dog")),
            pb.RerankCandidate(document=pb.Document(image=image_of(stack, 2),
                                                    text="blue dog")),
            pb.RerankCandidate(id="item-9")]
    reply = rerank.Rerank(pb.RerankRequest(base="items", query=pb.Query(text="blue dog"),
                                           candidates=docs, top_n=2, return_documents=True),
                          timeout=30)
    assert len(reply.results) == 2
    assert all(r.relevance_score == r.score for r in reply.results)
    for result in reply.results:
        if result.index < 2:  # a document candidate: echoed
            assert result.document == docs[result.index].document
        else:
            assert not result.HasField("document")
    scores = [r.relevance_score for r in reply.results]
    assert scores == sorted(scores, reverse=True)
    bad = [docs[0], pb.RerankCandidate(document=pb.Document(image=b"not an image"))]
    with pytest.raises(grpc.RpcError) as caught:
        rerank.Rerank(pb.RerankRequest(query=pb.Query(text="x"), candidates=bad), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("candidates[1].document.image")
    with pytest.raises(grpc.RpcError) as both:
        rerank.Rerank(pb.RerankRequest(query=pb.Query(text="x"), candidates=docs[:1],
                                       top_n=1, top_k=1), timeout=30)
    assert both.value.details().startswith("top_n")
