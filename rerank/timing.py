"""Per-stage timings of one request, and its deadline enforced between stages."""

from __future__ import annotations

import time

from mmsearch.rerank.errors import DeadlineError


class StageTimer:
    """Times stages into a dict and enforces the request deadline between stages."""

    def __init__(self, timings: dict[str, float], deadline: float | None) -> None:
        self.timings, self.deadline = timings, deadline
        self._stage: str | None = None
        self._start = 0.0

    def remaining_ms(self) -> float:
        return float("inf") if self.deadline is None else (self.deadline - time.monotonic()) * 1e3

    def check(self, stage: str) -> None:
        if self.remaining_ms() <= 0:
            raise DeadlineError(f"deadline passed before the {stage} stage")

    def __call__(self, stage: str) -> StageTimer:
        self._stage = stage
        return self

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        assert self._stage is not None
        self.timings[self._stage] = (time.perf_counter() - self._start) * 1000

