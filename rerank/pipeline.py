"""The search pipeline: encode -> ANN at the coarse width -> refine at full width ->
chunked listwise rerank -> top_k. One code path for gRPC and `mmsearch search`.

Collections are reached through their aliases on every request (never a cached physical
name), so an index rebuild that swaps an alias is picked up at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from mmsearch.encoders.errors import ConfigError, InvalidInputError
from mmsearch.encoders.manifest import require_same_model
from mmsearch.encoders.mrl import at_width, l2_normalize
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.plugin.collections import ensure_loaded
from mmsearch.plugin.connection import Retrying, is_expression_error
from mmsearch.plugin.expressions import id_problem
from mmsearch.plugin.index_spec import IndexSpec, search_params_for
from mmsearch.plugin.local_features import decode_local
from mmsearch.plugin.results import search_hits
from mmsearch.plugin.schema import (
    MODEL_ID_PROPERTY,
    Layout,
    attrs_from_fields,
    describe_fields,
)
from mmsearch.rerank.candidates import (
    RerankCandidate,
    Reranked,
    RerankParams,
    RerankResult,
    candidate_arrays,
    check_candidates,
    encode_documents,
)
from mmsearch.rerank.errors import (
    DeadlineError,
    NotFoundError,
    PreconditionError,
    ValidationError,
    shown,
)
from mmsearch.rerank.fullwidth import FullWidth
from mmsearch.rerank.head import HeadRerank
from mmsearch.rerank.jobs import (
    SearchJob,
    by_base,
    each,
    fail_together,
    latest_deadline,
    live,
)
from mmsearch.rerank.requests import (
    Hit,
    Limits,
    Scorer,
    SearchParams,
    SearchQuery,
    SearchResult,
)
from mmsearch.rerank.shaping import above_min_score, best_per_group, check_output_fields
from mmsearch.rerank.timing import StageTimer
from mmsearch.rerank.vector_cache import VectorCache

MAX_FILTER_CHARS = 4096
GROUP_WIDENING = 4  # default candidates per wanted hit when grouping
T = TypeVar("T")


class SearchPipeline:
    def __init__(self, encoder: Encoder, milvus: Retrying, widths: tuple[int, ...],
                 specs: Mapping[int, IndexSpec], limits: Limits, coarse_width: int,
                 scorer: Scorer | None = None, refine_in: str = "sidecar",
                 cache: VectorCache | None = None) -> None:
        if coarse_width not in widths:
            raise ValueError(f"coarse width {coarse_width} is not one of {widths}")
        self.encoder, self.milvus, self.widths = encoder, milvus, widths
        self.specs, self.limits = specs, limits
        self.coarse_width, self.scorer = coarse_width, scorer
        self.full_width = FullWidth(self._milvus, specs, refine_in, cache)
        self.head = None if scorer is None else HeadRerank(
            scorer, self.full_width, limits.rerank_depth, encoder.config.local)
        self._verified: dict[str, float] = {}  # base -> monotonic time of the last check
        self._stored_fields: dict[str, set[str]] = {}  # base -> label + its attr fields

    # -- validation -----------------------------------------------------------------
    def _layout(self, base: str) -> Layout:
        """The base's collections, or INVALID_ARGUMENT naming `base`."""
        if not base:
            raise ValidationError("required", "base")
        try:
            return Layout(base, self.widths)
        except ConfigError:
            raise ValidationError(f"{shown(base)} is not a valid base name", "base") from None

    def _check(self, params: SearchParams) -> tuple[Layout, int, int, bool]:
        layout = self._layout(params.base)
        if not 1 <= params.top_k <= self.limits.max_top_k:
            raise ValidationError(f"must be in 1..{self.limits.max_top_k}, got {params.top_k}",
                                  "top_k")
        if params.offset + params.top_k > self.limits.max_top_k:
            raise ValidationError(f"offset + top_k must be at most {self.limits.max_top_k}, "
                                  f"got {params.offset} + {params.top_k}", "options.offset")
        if params.min_score is not None and not 0.0 <= params.min_score <= 1.0:
            raise ValidationError(f"a probability in 0..1, got {params.min_score}",
                                  "options.min_score")
        width = self.coarse_width if params.coarse_width is None else params.coarse_width
        if width not in self.widths:
            raise ValidationError(f"{width} is not one of {list(self.widths)}",
                                  "options.coarse_width")
        wanted = params.offset + params.top_k
        # grouping keeps one hit per group: widen the default to have groups to fill with
        widened = wanted * GROUP_WIDENING if params.group_by else wanted
        candidates = (min(max(self.limits.default_candidates, widened),
                          self.limits.max_candidates)
                      if params.candidates is None else params.candidates)
        if not wanted <= candidates <= self.limits.max_candidates:
            raise ValidationError(f"must be in offset + top_k..{self.limits.max_candidates}, "
                                  f"got {candidates}", "options.candidates")
        if len(params.filter) > MAX_FILTER_CHARS:
            raise ValidationError(f"longer than {MAX_FILTER_CHARS} characters", "filter")
        rerank = self.scorer is not None if params.rerank is None else params.rerank
        if rerank and self.scorer is None:
            raise PreconditionError("no scorer is loaded on this server", "options.rerank")
        return layout, width, candidates, rerank

    def _verify_base(self, layout: Layout, deadline: float | None = None) -> None:
        """The base exists, was built with this model and is loaded (re-checked every 5 s)."""
        if time.monotonic() - self._verified.get(layout.base, -1e9) < 5.0:
            return
        alias = layout.alias(layout.full_width)
        description = self._milvus("describe", lambda c, t: c.describe_collection(
            alias, timeout=t) if c.has_collection(alias, timeout=t) else None, deadline)
        if description is None:
            raise NotFoundError(f"base {layout.base!r} not found (no collection {alias})",
                                "base")
        require_same_model(description.get("properties", {}).get(MODEL_ID_PROPERTY),
                           self.encoder.model_id, f"base {layout.base!r}")
        self._stored_fields[layout.base] = {
            "label", *attrs_from_fields(describe_fields(description))}
        # a restarted Milvus Lite (or a DBA's release) leaves collections released
        self._milvus("load", lambda c, t: [ensure_loaded(c, layout.alias(w), t)
                                           for w in layout.widths], deadline)
        self._verified[layout.base] = time.monotonic()

    def _milvus(self, what: str, fn: Callable[[Any, float | None], T],
                deadline: float | None) -> T:
        """One Milvus call inside the request's deadline: pymilvus gets the time left
        (capped by milvus.call_timeout_s) as its timeout, since a hung server would
        otherwise hold the request and its in-flight slot forever; the retries stop at the
        deadline; running out is DEADLINE_EXCEEDED."""
        def seconds_left() -> float | None:
            if deadline is None:
                return self.milvus.timeout
            left = max(0.001, deadline - time.monotonic())
            return left if self.milvus.timeout is None else min(left, self.milvus.timeout)

        try:
            return self.milvus.call(what, lambda client: fn(client, seconds_left()), deadline)
        except Exception:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineError(f"Milvus did not answer the {what} call before the "
                                    "deadline") from None
            raise

    # -- stages ---------------------------------------------------------------------
    def _query_vector(self, query: SearchQuery, layout: Layout | None, notes: list[str],
                     deadline: float | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Full-width unit vector (+ local features) of a query; a query by id reads the
        stored item from `layout`'s full-width collection."""
        if query.id is not None:
            problem = id_problem(query.id)
            if problem:
                raise ValidationError(problem, "query.id")
            if query.image is not None or query.text is not None:
                raise ValidationError("give either an id or image/text, not both", "query")
            if layout is None:
                raise ValidationError("required for a query by id", "base")
            rows = self.full_width.fetch(layout, [query.id], deadline)
            if not rows:
                raise NotFoundError(f"no item {shown(query.id)} in base {layout.base!r}",
                                    "query.id")
            row = rows[query.id]
            return l2_normalize(np.asarray(row["vector"], np.float32)), decode_local(
                row["local"], self.encoder.config.local)
        outcome = self._encode_queries([query], [notes])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _encode_queries(self, queries: list[SearchQuery], notes: list[list[str]]
                        ) -> list[tuple[np.ndarray, np.ndarray | None] | Exception]:
        """Image/text queries in one encoder batch: (unit vector, local features or None),
        or the error of each; normalisations go to that query's notes."""
        out: list[tuple[np.ndarray, np.ndarray | None] | Exception] = [
            ValidationError("empty query: give image, text, or id", "query")] * len(queries)
        present = [i for i, q in enumerate(queries) if q.image is not None or q.text is not None]
        if not present:
            return out
        encoded = self.encoder.encode_items([queries[i].image for i in present],
                                            [queries[i].text for i in present],
                                            [f"query {i}" for i in present])
        for problem in encoded.problems:
            field_name = "image" if "image" in problem.field else "text"
            out[present[problem.index]] = InvalidInputError(field_name, problem.reason, "query")
        for note in encoded.notes:
            notes[present[note.index]].append(f"query.text: {note.reason}")
        vectors = encoded.at_width(self.encoder.config.width_max)
        for k, index in enumerate(encoded.indices):
            local = encoded.local[k] if encoded.has_local[k] else None
            out[present[index]] = (vectors[k], local)
        return out

    def _ann(self, layout: Layout, width: int, vectors: list[np.ndarray], limit: int,
             expr: str, deadline: float | None, fields: tuple[str, ...] = ()
             ) -> list[list[dict[str, Any]]]:
        """One search call for every vector (nq = len(vectors)): hits per vector."""
        alias = layout.alias(width)
        data = [at_width(vector, width).tolist() for vector in vectors]
        hashed = self.full_width.cache is not None  # cached rows are valid for their hash
        wanted = ["label", *(["content_hash"] if hashed else []), *fields]
        try:
            hits = self._milvus("ann", lambda c, t: c.search(
                alias, data=data, limit=limit, filter=expr, output_fields=wanted,
                search_params=search_params_for(self.specs[width], limit), timeout=t), deadline)
        except DeadlineError:
            raise
        except Exception as exc:
            if expr and is_expression_error(exc):
                raise ValidationError(f"Milvus rejected the expression: {exc}", "filter") from None
            raise
        return [[{"id": item_id, "ann": float(distance), "label": entity.get("label"),
                  "hash": entity.get("content_hash"),
                  "fields": {name: entity.get(name) for name in fields}}
                 for item_id, distance, entity in search_hits(per_query)]
                for per_query in hits]

    def search(self, query: SearchQuery, params: SearchParams) -> SearchResult:
        outcome = self.search_batch([(query, params)])[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def search_batch(self, requests: Sequence[tuple[SearchQuery, SearchParams]]
                     ) -> list[SearchResult | Exception]:
        """Many searches as batches: one encoder batch for every image/text query, one ANN
        call per group of requests that share base, width, filter, limit and fields; then
        fetch of the union of candidates per base for refine, one scorer run for every
        head; then each request's own shaping. A request that fails, or whose deadline
        passes, fails alone (its slot holds the error); a shared Milvus call that fails
        fails the requests that shared it."""
        jobs = [SearchJob(query, params) for query, params in requests]
        each(jobs, self._prepare)
        self._encode_all(live(jobs))
        self._ann_all(live(jobs))
        each(jobs, self._candidates)
        self._refine_all(live(jobs))
        if self.head is not None:
            self.head.run(live(jobs))
        each(jobs, self._shape)
        return [job.error if job.error is not None else job.result for job in jobs]

    def _prepare(self, job: SearchJob) -> None:
        params = job.params
        job.layout, job.width, job.candidates, job.rerank = self._check(params)
        job.timed = StageTimer(job.result.timings_ms, params.deadline)
        job.timed.check("encode")
        self._verify_base(job.layout, params.deadline)
        job.fields = params.output_fields + ((params.group_by,) if params.group_by and
                                             params.group_by not in params.output_fields
                                             else ())
        check_output_fields(self._stored_fields.get(job.layout.base, {"label"}),
                            job.layout.base, job.fields,
                            "options.group_by" if params.group_by else "")

    def _encode_all(self, jobs: list[SearchJob]) -> None:
        """Queries by id read their stored vector; the rest are encoded in one batch."""
        each([j for j in jobs if j.query.id is not None], self._stored_vector)
        content = [j for j in jobs if j.query.id is None]
        if not content:
            return
        started = time.perf_counter()
        outcomes = self._encode_queries([j.query for j in content],
                                        [j.result.notes for j in content])
        elapsed = (time.perf_counter() - started) * 1000
        for job, outcome in zip(content, outcomes, strict=True):
            if isinstance(outcome, Exception):
                job.error = outcome
            else:
                job.vector, job.query_local = outcome
                job.result.timings_ms["encode"] = elapsed

    def _stored_vector(self, job: SearchJob) -> None:
        with job.timed("encode"):
            job.vector, job.query_local = self._query_vector(
                job.query, job.layout, job.result.notes, job.params.deadline)

    def _ann_all(self, jobs: list[SearchJob]) -> None:
        groups: dict[tuple, list[SearchJob]] = {}
        for job in jobs:
            skip_self = job.query.id is not None and not job.params.include_self
            job.limit = job.candidates + int(skip_self)
            key = (job.layout.base, job.width, job.params.filter, job.limit, job.fields)
            groups.setdefault(key, []).append(job)
        for group in groups.values():
            try:
                self._ann_group(group)
            except Exception as exc:  # noqa: BLE001 - the group's requests fail together
                fail_together(group, exc)

    def _ann_group(self, group: list[SearchJob]) -> None:
        first = group[0]
        started = time.perf_counter()
        found = self._ann(first.layout, first.width, [j.vector for j in group], first.limit,
                          first.params.filter, latest_deadline(group), first.fields)
        elapsed = (time.perf_counter() - started) * 1000
        for job, hits in zip(group, found, strict=True):
            job.found = hits
            job.result.timings_ms["ann"] = elapsed
            if len(group) > 1:  # the shared call ran to the group's latest deadline
                job.timed.check("refine")

    def _candidates(self, job: SearchJob) -> None:
        skip_self = job.query.id is not None and not job.params.include_self
        job.hits = [Hit(f["id"], f["ann"], f["label"], f["ann"], fields=f["fields"],
                        content_hash=f["hash"])
                    for f in job.found
                    if not (skip_self and f["id"] == job.query.id)][:job.candidates]
        job.result.candidates = len(job.hits)

    def _refine_all(self, jobs: list[SearchJob]) -> None:
        """Exact full-width scores, one shared fetch (or Milvus scoring) per base."""
        wanted = [j for j in jobs if j.hits and j.params.refine]
        each(wanted, lambda job: job.timed.check("refine"))
        for group in by_base(live(wanted)).values():
            started = time.perf_counter()
            try:
                refined = self.full_width.refine_many(
                    group[0].layout, [(j.hits, j.vector) for j in group],
                    any(j.rerank for j in group), latest_deadline(group))
            except Exception as exc:  # noqa: BLE001 - the group's requests fail together
                fail_together(group, exc)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            for job, (hits, rows) in zip(group, refined, strict=True):
                job.hits, job.rows = hits, rows
                job.result.timings_ms["refine"] = elapsed

    def _shape(self, job: SearchJob) -> None:
        params, result = job.params, job.result
        hits = job.hits
        if params.min_score is not None:
            hits, result.min_score_applied = above_min_score(hits, params.min_score)
        if params.group_by:
            hits = best_per_group(hits, params, result)
        result.hits = hits[params.offset: params.offset + params.top_k]
        result.timings_ms["total"] = (time.perf_counter() - job.started) * 1000

    def rerank(self, query: SearchQuery, candidates: Sequence[RerankCandidate],
               params: RerankParams) -> RerankResult:
        """Reorder the client's own candidates with the scorer; results point to them by
        index."""
        started = time.perf_counter()
        if not candidates:
            raise ValidationError("at least one candidate is required", "candidates")
        if len(candidates) > self.limits.max_candidates:
            raise ValidationError(f"{len(candidates)} candidates, the cap is "
                                  f"{self.limits.max_candidates}", "candidates")
        if not 0 <= params.top_k <= self.limits.max_top_k:
            raise ValidationError(f"must be in 0..{self.limits.max_top_k}", "top_k")
        by_id = check_candidates(candidates)
        layout = None
        if by_id or query.id is not None:
            if not params.base:
                raise ValidationError("required when the query or a candidate is given by "
                                      "id", "base")
            layout = self._layout(params.base)
            self._verify_base(layout, params.deadline)
        rows = self.full_width.fetch(layout, by_id, params.deadline) if by_id and layout else {}
        result = RerankResult(results=[], candidates=len(candidates))
        timed = StageTimer(result.timings_ms, params.deadline)
        with timed("encode"):
            vector, query_local = self._query_vector(query, layout, result.notes,
                                                     params.deadline)
            encoded = encode_documents(self.encoder, candidates)
        vectors, locals_, has_local = candidate_arrays(
            candidates, rows, encoded, self.encoder.config.width_max, self.encoder.config.local)
        cosines = vectors @ vector
        first = np.asarray([cosine if c.first_stage_score is None else c.first_stage_score
                            for c, cosine in zip(candidates, cosines, strict=True)], np.float32)
        timed.check("rerank")
        if self.scorer is None:  # after validation: bad input is reported as such first
            raise PreconditionError("no scorer is loaded on this server", "candidates")
        with timed("rerank"):
            scores = self.scorer.rerank(vector, query_local, vectors, locals_, has_local, first)
        order = np.argsort(-scores, kind="stable")
        result.results = [Reranked(int(i), candidates[i].id, float(scores[i]),
                                   float(cosines[i]))
                          for i in (order[: params.top_k] if params.top_k else order)]
        result.timings_ms["total"] = (time.perf_counter() - started) * 1000
        return result
