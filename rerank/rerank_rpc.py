"""RerankService.Rerank: a query plus candidates (ids stored in a base, or raw vectors from
the client's own ANN), reordered by the listwise scorer. Results point to inputs by index."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mmsearch.encoders.mrl import l2_normalize
from mmsearch.plugin.local_features import decode_local
from mmsearch.rerank.convert import deadline_from, query_from_pb
from mmsearch.rerank.errors import DeadlineError, NotFoundError, PreconditionError, ValidationError
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.v1 import search_pb2 as pb


def rerank_request(pipeline: SearchPipeline, request: pb.RerankRequest,
                   grpc_remaining_s: float | None, default_deadline_ms: int | None = None
                   ) -> pb.RerankResponse:
    started = time.perf_counter()
    if not request.HasField("query"):
        raise ValidationError("required", "query")
    candidates = list(request.candidates)
    if not candidates:
        raise ValidationError("at least one candidate is required", "candidates")
    if len(candidates) > pipeline.limits.max_candidates:
        raise ValidationError(f"{len(candidates)} candidates, the cap is "
                              f"{pipeline.limits.max_candidates}", "candidates")
    if request.top_k < 0 or request.top_k > pipeline.limits.max_top_k:
        raise ValidationError(f"must be in 0..{pipeline.limits.max_top_k}", "top_k")
    deadline = deadline_from(None, grpc_remaining_s, default_deadline_ms)
    width = pipeline.encoder.config.width_max
    by_id = [c.id for c in candidates if c.WhichOneof("source") == "id"]
    query = query_from_pb(request.query)
    layout = None
    if by_id or query.id is not None:
        if not request.base:
            raise ValidationError("required when the query or a candidate is given by id",
                                  "base")
        layout = pipeline.layout(request.base)
        pipeline.verify_base(layout, deadline)
    rows: dict[str, Any] = pipeline.fetch(layout, by_id, deadline) if by_id and layout else {}
    notes: list[str] = []
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    vector, query_local = pipeline.query_vector(query, layout, notes, deadline)
    timings["encode"] = (time.perf_counter() - t0) * 1000
    vectors, locals_, has_local = _candidate_arrays(candidates, rows, width, pipeline)
    first = np.asarray([c.first_stage_score if c.HasField("first_stage_score")
                        else float(v @ vector) for c, v in zip(candidates, vectors, strict=True)],
                       np.float32)
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineError("deadline passed before the rerank stage")
    if pipeline.scorer is None:  # after validation: bad input is reported as such first
        raise PreconditionError("no scorer is loaded on this server", "candidates")
    t0 = time.perf_counter()
    scores = pipeline.scorer.rerank(vector, query_local, vectors, locals_, has_local, first)
    timings["rerank"] = (time.perf_counter() - t0) * 1000
    order = np.argsort(-scores, kind="stable")
    keep = order[: request.top_k] if request.top_k else order
    results = [pb.RerankedCandidate(
        index=int(i), id=candidates[i].id if candidates[i].WhichOneof("source") == "id" else "",
        score=float(scores[i]), stages=pb.StageScores(refine=float(vectors[i] @ vector),
                                                      rerank=float(scores[i])))
        for i in keep]
    timings["total"] = (time.perf_counter() - started) * 1000
    metadata = pb.ResponseMetadata(timings_ms=timings, model_id=pipeline.encoder.model_id,
                                   candidates=len(candidates), notes=notes)
    return pb.RerankResponse(results=results, metadata=metadata)


def _candidate_arrays(candidates: list[pb.RerankCandidate], rows: dict[str, Any], width: int,
                      pipeline: SearchPipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    spec = pipeline.encoder.config.local
    vectors = np.zeros((len(candidates), width), np.float32)
    locals_ = np.zeros((len(candidates), spec.cells, spec.dim), np.float32)
    has_local = np.zeros(len(candidates), bool)
    for i, candidate in enumerate(candidates):
        if candidate.WhichOneof("source") == "id":
            row = rows.get(candidate.id)
            if row is None:
                raise NotFoundError(f"no item {candidate.id!r} in the base",
                                    f"candidates[{i}].id")
            vectors[i] = row["vector"]
            local = decode_local(row.get("local"), spec)
            if local is not None:
                locals_[i], has_local[i] = local, True
        elif candidate.WhichOneof("source") == "vector":
            values = candidate.vector.values
            if len(values) != width:
                raise ValidationError(f"has {len(values)} values, the model's width is {width}",
                                      f"candidates[{i}].vector")
            if not np.all(np.isfinite(values)) or not np.any(values):
                raise ValidationError("must be finite and non-zero", f"candidates[{i}].vector")
            vectors[i] = values
        else:
            raise ValidationError("give an id or a vector", f"candidates[{i}]")
    return l2_normalize(vectors), locals_, has_local
