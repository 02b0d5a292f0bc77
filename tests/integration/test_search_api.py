"""The developer-facing search options through the real server: stored fields in hits,
pages, one hit per group, many queries per call (the rerank-side options, min_score and
documents, are in test_sidecar_rerank.py: they need the scorer)."""

from __future__ import annotations

import grpc
import pytest

from mmsearch.v1 import search_pb2 as pb
from mmsearch.v1 import search_pb2_grpc
from support.sidecar_stack import call_code, image_of


def test_output_fields_come_back_typed_and_unknown_ones_are_named(stack: dict) -> None:
    search = stack["search"]
    reply = search.Search(pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(id="item-4"), output_fields=[
            "label", "category", "rank", "score", "flag"],
        options=pb.SearchOptions(include_self=True)), timeout=30)
    top = reply.hits[0]
    assert top.id == "item-4"
    fields = top.fields
    assert fields["category"].string_value == "b" and fields["rank"].int_value == 4
    assert fields["score"].double_value == pytest.approx(0.4)
    assert fields["flag"].WhichOneof("kind") == "bool_value" and fields["flag"].bool_value
    assert fields["label"].string_value == "L4"
    assert reply.metadata.timings.total > 0 and reply.metadata.timings.ann > 0
    # Search waits in the admission window: its wait is a stage and part of the total
    assert "queue" in reply.metadata.timings_ms
    assert reply.metadata.timings.total >= reply.metadata.timings.queue > 0
    code, details = call_code(search.Search, pb.SearchRequest(
        base="items", top_k=5, query=pb.Query(text="red"), output_fields=["label", "price"]))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("output_fields[1]") and "price" in details


def test_offset_pages_through_the_same_ranking(stack: dict) -> None:
    search = stack["search"]
    query = pb.Query(text="green cat")
    whole = search.Search(pb.SearchRequest(base="items", top_k=10, query=query), timeout=30)
    page2 = search.Search(pb.SearchRequest(base="items", top_k=5, query=query,
                                           options=pb.SearchOptions(offset=5)), timeout=30)
    assert [h.id for h in page2.hits] == [h.id for h in whole.hits[5:10]]
    code, details = call_code(search.Search, pb.SearchRequest(
        base="items", top_k=15, query=query, options=pb.SearchOptions(offset=10)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("options.offset")


def test_group_by_returns_distinct_groups_in_score_order(stack: dict) -> None:
    search = stack["search"]
    query = pb.Query(text="green cat")
    flat = search.Search(pb.SearchRequest(base="items", top_k=20, query=query,
                                          output_fields=["category"]), timeout=30)
    grouped = search.Search(pb.SearchRequest(base="items", top_k=3, query=query,
                                             options=pb.SearchOptions(group_by="category")),
                            timeout=30)
    firsts: dict[str, str] = {}
    for hit in flat.hits:
        firsts.setdefault(hit.fields["category"].string_value, hit.id)
    assert [h.id for h in grouped.hits] == list(firsts.values())[:3]  # best of each, in order
    assert not grouped.hits[0].fields  # the grouping field was not asked for
    short = search.Search(pb.SearchRequest(base="items", top_k=5, query=query,
                                           options=pb.SearchOptions(group_by="category")),
                          timeout=30)
    assert len(short.hits) == 3 and any("3 groups" in n for n in short.metadata.notes)
    code, details = call_code(search.Search, pb.SearchRequest(
        base="items", top_k=3, query=query, options=pb.SearchOptions(group_by="nosuch")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("options.group_by")


def test_search_batch_answers_each_item_alone_and_matches_single_searches(stack: dict) -> None:
    search = stack["search"]
    requests = [
        pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="green cat")),
        pb.SearchRequest(base="items", top_k=3, query=pb.Query(id="ghost")),  # NOT_FOUND
        pb.SearchRequest(base="items", top_k=4, query=pb.Query(image=image_of(stack, 5))),
        pb.SearchRequest(base="items", top_k=0, query=pb.Query(text="red")),  # bad top_k
        pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="red face"),
                         filter='category == "a"'),
        pb.SearchRequest(base="items", top_k=3, query=pb.Query(id="item-7")),
        pb.SearchRequest(base="items", top_k=3, query=pb.Query(text="blue dog")),
    ]
    reply = search.SearchBatch(pb.SearchBatchRequest(requests=requests), timeout=60)
    assert len(reply.items) == len(requests)
    kinds = [item.WhichOneof("outcome") for item in reply.items]
    assert kinds == ["response", "error", "response", "error", "response", "response",
                     "response"]
    assert reply.items[1].error.code == "NOT_FOUND"
    assert reply.items[1].error.message.startswith("query.id")
    assert reply.items[3].error.code == "INVALID_ARGUMENT"
    assert reply.items[3].error.message.startswith("top_k")
    for request, item in zip(requests, reply.items, strict=True):
        if item.WhichOneof("outcome") == "response":
            alone = search.Search(request, timeout=30)
            assert [h.id for h in item.response.hits] == [h.id for h in alone.hits]
            for a, b in zip(item.response.hits, alone.hits, strict=True):
                assert a.score == pytest.approx(b.score, abs=1e-4)
    info = search_pb2_grpc.InfoServiceStub(stack["channel"]).Info(pb.InfoRequest())
    assert info.max_batch == 64
    code, details = call_code(search.SearchBatch, pb.SearchBatchRequest(
        requests=[requests[0]] * 65))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details.startswith("requests")
