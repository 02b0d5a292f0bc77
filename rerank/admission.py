"""The admission window: concurrent Search calls gathered into search_batch runs.

A request waits at most `window_ms` for others to join it (a lone request pays that, no
more); while every runner is busy the next batch keeps filling, up to `max_batch`, so
batches grow with load on their own. Each request keeps its own filter, top_k, deadline
and degradation (search_batch answers each alone); a request whose deadline passes while
it waits gets DEADLINE_EXCEEDED and leaves the others running.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mmsearch.rerank.errors import DeadlineError
from mmsearch.rerank.requests import SearchParams, SearchQuery, SearchResult

log = logging.getLogger(__name__)
# how long past its deadline a waiting request still takes the batch's reply: the
# pipeline answers an expiring request itself (degraded, or DEADLINE_EXCEEDED)
REPLY_GRACE_S = 0.05

RunBatch = Callable[[Sequence[tuple[SearchQuery, SearchParams]]],
                    list[SearchResult | Exception]]


@dataclass
class _Waiting:
    query: SearchQuery
    params: SearchParams
    queued: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    outcome: SearchResult | Exception | None = None


class AdmissionWindow:
    def __init__(self, run_batch: RunBatch, window_ms: float, max_batch: int, runners: int,
                 on_batch: Callable[[int], None] | None = None) -> None:
        if window_ms < 0 or max_batch < 1 or runners < 1:
            raise ValueError("window_ms >= 0, max_batch >= 1 and runners >= 1")
        self.run_batch, self.window_s = run_batch, window_ms / 1000
        self.max_batch, self.on_batch = max_batch, on_batch
        self._queue: list[_Waiting] = []
        self._ready = threading.Condition()
        self._stopped = False
        self._runners = [threading.Thread(target=self._run, name=f"batch-{i}", daemon=True)
                         for i in range(runners)]
        for runner in self._runners:
            runner.start()

    def search(self, query: SearchQuery, params: SearchParams) -> SearchResult:
        waiting = _Waiting(query, params)
        with self._ready:
            if self._stopped:
                raise RuntimeError("the admission window is stopped")
            self._queue.append(waiting)
            self._ready.notify()
        timeout = (None if params.deadline is None
                   else max(0.0, params.deadline - time.monotonic()) + REPLY_GRACE_S)
        if not waiting.done.wait(timeout):
            raise DeadlineError("deadline passed while the request waited for its batch")
        assert waiting.outcome is not None
        if isinstance(waiting.outcome, Exception):
            raise waiting.outcome
        return waiting.outcome

    def stop(self) -> None:
        with self._ready:
            self._stopped = True
            self._ready.notify_all()
        for runner in self._runners:
            runner.join(timeout=5)

    def _next_batch(self) -> list[_Waiting] | None:
        """The next batch to run, or None once stopped and drained. Another runner may
        take the queue while this one waits out a window: it then waits for the next."""
        with self._ready:
            while True:
                while not self._queue and not self._stopped:
                    self._ready.wait()
                if not self._queue:
                    return None
                # the window runs from the oldest waiting request's arrival
                left = self._queue[0].queued + self.window_s - time.perf_counter()
                if left <= 0 or len(self._queue) >= self.max_batch or self._stopped:
                    break
                self._ready.wait(left)
            batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
            if self._queue:
                self._ready.notify()  # another runner takes the rest
            return batch

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            started = time.perf_counter()
            if self.on_batch:
                self.on_batch(len(batch))
            try:
                outcomes = self.run_batch([(w.query, w.params) for w in batch])
            except Exception as exc:
                log.error("search batch of %d failed", len(batch), exc_info=exc)
                outcomes = [exc] * len(batch)
            for waiting, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, SearchResult):  # total counts the wait too
                    queued_ms = (started - waiting.queued) * 1000
                    outcome.timings_ms["queue"] = queued_ms
                    outcome.timings_ms["total"] = outcome.timings_ms.get("total", 0) + queued_ms
                waiting.outcome = outcome
                waiting.done.set()
