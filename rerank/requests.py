"""What a search asks and answers, independent of the transport: the pipeline's request,
result and limit types, and the scorer it calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass(frozen=True)
class ScoringList:
    """One query and its candidates, as the scorer reads them."""

    query: np.ndarray
    query_local: np.ndarray | None
    vectors: np.ndarray
    local: np.ndarray
    has_local: np.ndarray
    first_stage: np.ndarray

    def __iter__(self):  # noqa: ANN204 - unpacks in the scorer's argument order
        return iter((self.query, self.query_local, self.vectors, self.local, self.has_local,
                     self.first_stage))


class Scorer(Protocol):
    name: str

    def rerank(self, query: np.ndarray, query_local: np.ndarray | None, vectors: np.ndarray,
               local: np.ndarray, has_local: np.ndarray, first_stage: np.ndarray
               ) -> np.ndarray:
        """Calibrated relevance per candidate (comparable across chunks)."""

    def rerank_many(self, lists: Sequence[ScoringList]) -> list[np.ndarray]:
        """rerank for several queries in one run (concurrent requests share it)."""

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
    content_hash: str | None = None  # from the ANN when the vector cache is on


@dataclass
class SearchResult:
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    degraded_reasons: list[str] = field(default_factory=list)
    candidates: int = 0
    notes: list[str] = field(default_factory=list)
    min_score_applied: bool = False
