"""What Rerank takes and gives: candidates a client names (ids stored in a base, or raw
vectors from its own ANN), turned into the arrays the scorer reads."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mmsearch.encoders.catalog import LocalSpec
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.plugin.expressions import id_problem
from mmsearch.plugin.local_features import decode_local
from mmsearch.rerank.errors import NotFoundError, ValidationError, shown


@dataclass(frozen=True)
class RerankCandidate:
    """Exactly one of id / vector; first_stage_score defaults to the cosine with the query."""

    id: str | None = None
    vector: Sequence[float] | None = None
    first_stage_score: float | None = None
    image: bytes | None = None  # a document: content encoded on the fly
    text: str | None = None

    @property
    def is_document(self) -> bool:
        return self.image is not None or self.text is not None


@dataclass(frozen=True)
class RerankParams:
    base: str = ""  # required when the query or a candidate is given by id
    top_k: int = 0  # 0: every candidate
    deadline: float | None = None  # time.monotonic() value


@dataclass(frozen=True)
class Reranked:
    index: int  # position in the request's candidates
    id: str | None
    score: float  # calibrated P(relevant)
    refine: float  # cosine with the query at full width


@dataclass
class RerankResult:
    results: list[Reranked]
    candidates: int
    timings_ms: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def check_candidates(candidates: Sequence[RerankCandidate]) -> list[str]:
    """The ids among the candidates (checked), or INVALID_ARGUMENT naming the candidate."""
    ids = []
    for i, candidate in enumerate(candidates):
        given = (candidate.id is not None) + (candidate.vector is not None) + \
            candidate.is_document
        if given != 1:
            raise ValidationError("give one of an id, a vector or a document",
                                  f"candidates[{i}]")
        score = candidate.first_stage_score
        if score is not None and not math.isfinite(score):
            raise ValidationError(f"must be finite, got {score}",
                                  f"candidates[{i}].first_stage_score")
        if candidate.id is not None:
            problem = id_problem(candidate.id)
            if problem:
                raise ValidationError(problem, f"candidates[{i}].id")
            ids.append(candidate.id)
    return ids


def encode_documents(encoder: Encoder, candidates: Sequence[RerankCandidate]
                     ) -> dict[int, tuple[np.ndarray, np.ndarray | None]]:
    """{candidate index: (unit vector, local features or None)} of the document
    candidates, in one encoder batch; a bad image or text names candidates[i].document."""
    indices = [i for i, c in enumerate(candidates) if c.is_document]
    if not indices:
        return {}
    result = encoder.encode_items([candidates[i].image for i in indices],
                                  [candidates[i].text for i in indices],
                                  [f"candidates[{i}]" for i in indices])
    if result.problems:
        problem = result.problems[0]
        field = "image" if "image" in problem.field else "text"
        raise ValidationError(problem.reason, f"{problem.item}.document.{field}")
    vectors = result.at_width(encoder.config.width_max)
    return {indices[row]: (vectors[k], result.local[k] if result.has_local[k] else None)
            for k, row in enumerate(result.indices)}


def candidate_arrays(candidates: Sequence[RerankCandidate], rows: Mapping[str, Any],
                     encoded: Mapping[int, tuple[np.ndarray, np.ndarray | None]], width: int,
                     spec: LocalSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit vectors, local features, has-local mask) of the candidates, in order."""
    vectors = np.zeros((len(candidates), width), np.float64)
    locals_ = np.zeros((len(candidates), spec.cells, spec.dim), np.float32)
    has_local = np.zeros(len(candidates), bool)
    for i, candidate in enumerate(candidates):
        if candidate.id is not None:
            row = rows.get(candidate.id)
            if row is None:
                raise NotFoundError(f"no item {shown(candidate.id)} in the base",
                                    f"candidates[{i}].id")
            vectors[i] = row["vector"]
            local = decode_local(row.get("local"), spec)
            if local is not None:
                locals_[i], has_local[i] = local, True
        elif candidate.is_document:
            vectors[i], local = encoded[i]
            if local is not None:
                locals_[i], has_local[i] = local, True
        else:
            vectors[i] = _raw_vector(candidate.vector or (), width, f"candidates[{i}].vector")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-300)).astype(np.float32), locals_, has_local


def _raw_vector(values: Sequence[float], width: int, name: str) -> np.ndarray:
    """A client's vector in float64, so that huge (3e38) or tiny (1e-45) float32 values
    still normalise to a unit vector instead of overflowing or vanishing."""
    if len(values) != width:
        raise ValidationError(f"has {len(values)} values, the model's width is {width}", name)
    vector = np.asarray(values, np.float64)
    if not np.all(np.isfinite(vector)) or not np.linalg.norm(vector) > 0:
        raise ValidationError("must be finite and non-zero", name)
    return vector
