"""The rerank stage of search_batch: the chunked listwise scorer over the head of each
refined list, every request's head in one scorer run."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from mmsearch.encoders.catalog import LocalSpec
from mmsearch.plugin.local_features import decode_local
from mmsearch.rerank.fullwidth import FullWidth, unit_vectors
from mmsearch.rerank.jobs import (
    SearchJob,
    by_base,
    each,
    fail_together,
    latest_deadline,
    live,
)
from mmsearch.rerank.requests import Hit, Scorer, ScoringList


class HeadRerank:
    def __init__(self, scorer: Scorer, full_width: FullWidth, depth: int,
                 local_spec: LocalSpec) -> None:
        self.scorer, self.full_width = scorer, full_width
        self.depth, self.local_spec = depth, local_spec

    def run(self, jobs: list[SearchJob]) -> None:
        """Rerank the head of each list in place (the scorer was trained on lists of that
        depth; the tail keeps its order below it), every head in one scorer run, fetching
        only the head rows refine did not bring. A request that cannot wait for the run
        before its deadline skips it, its reply marked degraded."""
        wanted = [j for j in jobs if j.hits and j.rerank]
        if not wanted:
            return
        depth = self.depth
        estimate = self.scorer.estimate_ms(sum(min(len(j.hits), depth) for j in wanted))
        ready = []
        for job in wanted:
            if job.timed.remaining_ms() < estimate:
                job.result.degraded_reasons.append("rerank_deadline")
            else:
                ready.append(job)
        for group in by_base(ready).values():
            self._fetch(group)
        heads = [j for j in live(ready) if j.hits[:depth]]
        if not heads:
            return
        started = time.perf_counter()
        try:
            scores = self.scorer.rerank_many([self._scoring_list(j) for j in heads])
        except Exception as exc:  # noqa: BLE001 - the requests that shared the run fail
            fail_together(heads, exc)
            return
        elapsed = (time.perf_counter() - started) * 1000
        for job, head_scores in zip(heads, scores, strict=True):
            head, tail = job.hits[:depth], job.hits[depth:]
            for hit, score in zip(head, head_scores, strict=True):
                hit.rerank = hit.score = float(score)
            head.sort(key=lambda h: -h.score)
            job.hits = head + tail
            job.result.timings_ms["rerank"] = elapsed

    def _fetch(self, group: list[SearchJob]) -> None:
        """The rows (vector + local features) of every head in one fetch; a head hit
        deleted since the ANN is dropped."""
        depth = self.depth
        rows: dict[str, dict[str, Any]] = {}
        for job in group:
            rows.update(job.rows)
        missing = [h for j in group for h in j.hits[:depth]
                   if h.id not in rows or "local" not in rows[h.id]]
        if missing:
            each(group, lambda job: job.timed.check("rerank"))
            started = time.perf_counter()
            try:
                rows.update(self.full_width.rows_for(group[0].layout, missing,
                                                     latest_deadline(group), with_local=True))
            except Exception as exc:  # noqa: BLE001 - the group's requests fail together
                fail_together(group, exc)
                return
            elapsed = (time.perf_counter() - started) * 1000
            for job in group:
                job.result.timings_ms["fetch"] = elapsed
        for job in group:
            head = [h for h in job.hits[:depth] if h.id in rows]
            job.hits, job.rows = head + job.hits[depth:], rows

    def _scoring_list(self, job: SearchJob) -> ScoringList:
        head = job.hits[:self.depth]
        locals_, has_local = self._local_arrays(head, job.rows)
        vectors = unit_vectors(job.rows, [h.id for h in head])
        first_stage = np.asarray([h.score for h in head], np.float32)  # the last stage run
        return ScoringList(job.vector, job.query_local, vectors, locals_, has_local, first_stage)

    def _local_arrays(self, hits: list[Hit], rows: Mapping[str, Any]
                      ) -> tuple[np.ndarray, np.ndarray]:
        spec = self.local_spec
        decoded = [decode_local(rows[h.id].get("local", ""), spec) for h in hits]
        has = np.asarray([d is not None for d in decoded])
        empty = np.zeros((spec.cells, spec.dim), np.float32)
        return np.stack([d if d is not None else empty for d in decoded]), has
