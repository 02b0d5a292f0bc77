"""The admission window over the real pipeline (Milvus Lite, tiny ONNX model and scorer):
concurrent Search calls batched together answer exactly as each alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import pytest

from mmsearch.rerank.admission import AdmissionWindow
from mmsearch.rerank.errors import DeadlineError, NotFoundError, ValidationError
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import SearchParams, SearchQuery, SearchResult


def run_together(window: AdmissionWindow, requests: Sequence[tuple[SearchQuery, SearchParams]]
                 ) -> list[SearchResult | Exception]:
    """Every request from its own thread, released at once (as concurrent RPCs are)."""
    outcomes: list[SearchResult | Exception | None] = [None] * len(requests)
    start = threading.Barrier(len(requests))

    def one(index: int) -> None:
        start.wait()
        try:
            outcomes[index] = window.search(*requests[index])
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[index] = exc
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes  # type: ignore[return-value]


def mixed_requests(deadline: float) -> list[tuple[SearchQuery, SearchParams]]:
    items = SearchParams(base="items", top_k=5)
    return [
        (SearchQuery(text="green cat"), items),
        (SearchQuery(text="red face"), SearchParams(base="items", top_k=3,
                                                      filter='category == "a"')),
        (SearchQuery(id="item-7"), SearchParams(base="items", top_k=4, include_self=True)),
        (SearchQuery(id="item-7"), items),
        (SearchQuery(text="blue dog"), SearchParams(base="items", top_k=2, deadline=deadline)),
        (SearchQuery(text="blue dog"), SearchParams(base="items", top_k=6, rerank=False)),
        (SearchQuery(id="item-12"), SearchParams(base="items", top_k=5, refine=False,
                                                  candidates=20)),
        (SearchQuery(text="yellow"), SearchParams(base="items", top_k=5, coarse_width=8)),
        (SearchQuery(text="a cat"), SearchParams(base="items", top_k=5, offset=3)),
        (SearchQuery(id="ghost"), items),  # NOT_FOUND, alone
        (SearchQuery(text="red"), SearchParams(base="items", top_k=0)),  # bad top_k, alone
        (SearchQuery(text="red"), SearchParams(base="nosuch", top_k=3)),  # unknown base
    ]


class Recording:
    """search_batch as the window calls it, with the batch sizes it saw."""

    def __init__(self, pipeline: SearchPipeline,
                 before: Callable[[int], None] = lambda size: None) -> None:
        self.pipeline, self.before, self.sizes = pipeline, before, []

    def __call__(self, items: Sequence[tuple[SearchQuery, SearchParams]]
                 ) -> list[SearchResult | Exception]:
        self.sizes.append(len(items))
        self.before(len(self.sizes))
        return self.pipeline.search_batch(items)


@pytest.mark.parametrize("refine_in", ["sidecar", "milvus"])
def test_batched_requests_answer_exactly_as_each_alone(stack: dict, refine_in: str) -> None:
    from support.sidecar_stack import replace_scorer

    pipeline = replace_scorer(stack["pipeline"], stack["scorer"], refine_in)
    requests = mixed_requests(time.monotonic() + 60)
    recording = Recording(pipeline)
    window = AdmissionWindow(recording, window_ms=200, max_batch=64, runners=1)
    try:
        batched = run_together(window, requests)
    finally:
        window.stop()
    assert max(recording.sizes) > 1  # they did share batches
    for (query, params), outcome in zip(requests, batched, strict=True):
        try:
            alone: SearchResult | Exception = pipeline.search(query, params)
        except Exception as exc:  # noqa: BLE001 - compared with the batched outcome
            alone = exc
        if isinstance(alone, Exception):
            assert type(outcome) is type(alone) and str(outcome) == str(alone)
            continue
        assert isinstance(outcome, SearchResult), outcome
        assert [h.id for h in outcome.hits] == [h.id for h in alone.hits]
        for a, b in zip(outcome.hits, alone.hits, strict=True):
            assert a.score == pytest.approx(b.score, abs=1e-4)
            assert (a.rerank is None) == (b.rerank is None)
        assert outcome.degraded_reasons == alone.degraded_reasons
        assert outcome.timings_ms["queue"] >= 0
    kinds = [type(o) for o in batched[-3:]]
    assert kinds == [NotFoundError, ValidationError, NotFoundError]


def test_a_deadline_that_passes_in_the_queue_fails_that_request_alone(stack: dict) -> None:
    from support.sidecar_stack import replace_scorer

    pipeline = replace_scorer(stack["pipeline"], stack["scorer"])
    release = threading.Event()
    # the first batch is held (a slow Milvus), so later requests wait in the queue
    recording = Recording(pipeline, before=lambda n: release.wait(10) if n == 1 else None)
    window = AdmissionWindow(recording, window_ms=0, max_batch=64, runners=1)
    outcomes: dict[str, SearchResult | Exception] = {}

    def search(name: str, params: SearchParams) -> None:
        try:
            outcomes[name] = window.search(SearchQuery(text="green cat"), params)
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[name] = exc
    try:
        held = threading.Thread(target=search, args=("held", SearchParams("items", 3)))
        held.start()
        while not recording.sizes:
            time.sleep(0.005)
        started = time.monotonic()
        hurried = threading.Thread(target=search, args=("hurried", SearchParams(
            "items", 3, deadline=started + 0.1)))
        patient = threading.Thread(target=search, args=("patient", SearchParams("items", 3)))
        hurried.start()
        patient.start()
        hurried.join(timeout=5)
        waited = time.monotonic() - started
        release.set()
        held.join(timeout=30)
        patient.join(timeout=30)
    finally:
        release.set()
        window.stop()
    assert isinstance(outcomes["hurried"], DeadlineError)
    assert waited < 1.0  # it did not wait for the held batch
    assert isinstance(outcomes["held"], SearchResult) and outcomes["held"].hits
    assert isinstance(outcomes["patient"], SearchResult) and outcomes["patient"].hits


def test_a_lone_request_waits_at_most_the_window(stack: dict) -> None:
    recording = Recording(stack["pipeline"])
    window = AdmissionWindow(recording, window_ms=5, max_batch=64, runners=2)
    try:
        result = window.search(SearchQuery(text="green cat"), SearchParams("items", 3))
    finally:
        window.stop()
    assert recording.sizes == [1]
    assert result.hits and result.timings_ms["queue"] < 1000
    assert result.timings_ms["total"] >= result.timings_ms["queue"]


def test_a_full_batch_does_not_wait_for_the_window(stack: dict) -> None:
    recording = Recording(stack["pipeline"])
    window = AdmissionWindow(recording, window_ms=60_000, max_batch=3, runners=1)
    try:
        outcomes = run_together(window, [(SearchQuery(text=t), SearchParams("items", 2))
                                         for t in ("a", "b", "c", "d", "e", "f")])
    finally:
        window.stop()
    assert recording.sizes == [3, 3]
    assert all(isinstance(o, SearchResult) for o in outcomes)


def test_every_runner_keeps_serving_when_another_took_the_queue(stack: dict) -> None:
    """Requests a little apart wake both runners; the one that finds the queue taken
    while its window runs must wait for the next request, not stop."""
    recording = Recording(stack["pipeline"])
    window = AdmissionWindow(recording, window_ms=30, max_batch=64, runners=2)
    try:
        for _ in range(5):
            first = threading.Thread(target=window.search, args=(
                SearchQuery(text="red"), SearchParams("items", 2)))
            first.start()
            time.sleep(0.005)
            window.search(SearchQuery(text="blue"), SearchParams("items", 2))
            first.join(timeout=30)
        time.sleep(0.2)  # several windows with nothing queued
        assert all(runner.is_alive() for runner in window._runners)
        window.search(SearchQuery(text="green"), SearchParams("items", 2))
    finally:
        window.stop()
    assert sum(recording.sizes) == 11


def test_window_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="runners"):
        AdmissionWindow(lambda items: [], window_ms=1, max_batch=64, runners=0)
