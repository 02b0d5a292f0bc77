"""One request's way through SearchPipeline.search_batch, and the rules for steps that
several requests share."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.plugin.schema import Layout
from mmsearch.rerank.requests import Hit, SearchParams, SearchQuery, SearchResult
from mmsearch.rerank.timing import StageTimer


@dataclass
class SearchJob:
    """One request in a batch: its input, what each stage left for the next, its error."""

    query: SearchQuery
    params: SearchParams
    result: SearchResult = field(default_factory=lambda: SearchResult(hits=[]))
    started: float = field(default_factory=time.perf_counter)
    error: Exception | None = None
    layout: Layout = field(init=False)
    width: int = 0
    candidates: int = 0
    limit: int = 0
    rerank: bool = False
    fields: tuple[str, ...] = ()
    timed: StageTimer = field(init=False)
    vector: np.ndarray = field(init=False)
    query_local: np.ndarray | None = None
    found: list[dict[str, Any]] = field(default_factory=list)  # the ANN's answer
    hits: list[Hit] = field(default_factory=list)  # in the order of the last stage run
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)  # fetched, by id


def live(jobs: list[SearchJob]) -> list[SearchJob]:
    return [job for job in jobs if job.error is None]


def by_base(jobs: list[SearchJob]) -> dict[str, list[SearchJob]]:
    groups: dict[str, list[SearchJob]] = {}
    for job in jobs:
        groups.setdefault(job.layout.base, []).append(job)
    return groups


def latest_deadline(jobs: list[SearchJob]) -> float | None:
    """A call shared by several requests runs to the latest of their deadlines (each
    request checks its own after it)."""
    deadlines = [j.params.deadline for j in jobs]
    return None if None in deadlines else max(d for d in deadlines if d is not None)


def each(jobs: list[SearchJob], step: Callable[[SearchJob], None]) -> None:
    """A step per live request; one that raises fails alone (its error is kept)."""
    for job in jobs:
        if job.error is None:
            try:
                step(job)
            except Exception as exc:  # noqa: BLE001 - that request fails alone
                job.error = exc


def fail_together(jobs: list[SearchJob], error: Exception) -> None:
    """A call the requests shared failed: each of them fails with its error."""
    for job in jobs:
        job.error = error
