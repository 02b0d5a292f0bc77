"""What a search asks and answers, independent of the transport: the pipeline's request,
result and limit types, and the scorer it calls."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from mmsearch.plugin.schema import Layout
from mmsearch.rerank.timing import StageTimer


class Scorer(Protocol):
    name: str

    def rerank(self, query: np.ndarray, query_local: np.ndarray | None, vectors: np.ndarray,
               local: np.ndarray, has_local: np.ndarray, first_stage: np.ndarray
               ) -> np.ndarray:
        """Calibrated relevance per candidate (comparable across chunks)."""

    def estimate_ms(self, candidates: int) -> float:
        """Expected time to rerank this many candidates (for deadline decisions)."""


@dataclass(frozen=True)
class Limits:
    """Per-request bounds; the values come from the config's `limits` section."""

    max_top_k: int
    max_candidates: int
    default_candidates: int
    rerank_depth: int  # the scorer reorders the refined list's head; the rest follows


@dataclass(frozen=True)
class SearchQuery:
    image: bytes | None = None
    text: str | None = None
    id: str | None = None


@dataclass(frozen=True)
class SearchParams:
    base: str
    top_k: int
    filter: str = ""
    coarse_width: int | None = None
    candidates: int | None = None
    refine: bool = True
    rerank: bool | None = None  # None: on when a scorer is loaded
    include_self: bool = False
    deadline: float | None = None  # time.monotonic() value
    output_fields: tuple[str, ...] = ()  # "label" and attr names, returned in Hit.fields
    min_score: float | None = None  # on the calibrated rerank score only
    offset: int = 0  # hits skipped (pages)
    group_by: str | None = None  # a stored field: the best hit per value


@dataclass
class Hit:
    id: str
    score: float
    label: str | None
    ann: float
    refine: float | None = None
    rerank: float | None = None
    fields: dict[str, Any] = field(default_factory=dict)  # the requested output fields


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    degraded_reasons: list[str] = field(default_factory=list)
    candidates: int = 0
    notes: list[str] = field(default_factory=list)
    min_score_applied: bool = False


@dataclass
class SearchJob:
    """One request's way through search_batch."""

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
    found: list[dict[str, Any]] = field(default_factory=list)
