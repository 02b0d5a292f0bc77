"""What a search returns after its stages: only stored fields asked for, a threshold on
the calibrated score, one hit per group."""

from __future__ import annotations

from typing import Any

from mmsearch.rerank.errors import ValidationError, shown
from mmsearch.rerank.requests import Hit, SearchParams, SearchResult


def check_output_fields(stored: set[str], base: str, names: tuple[str, ...],
                        last_field: str = "") -> None:
    """Every name is a stored field; the error names output_fields[i] (or last_field for
    the last name: the group_by field, added after the requested ones)."""
    for index, name in enumerate(names):
        if name not in stored:
            field_name = (last_field if last_field and index == len(names) - 1
                          else f"output_fields[{index}]")
            raise ValidationError(f"{shown(name)} is not a stored field of base {base!r} "
                                  f"(stored: {sorted(stored)})", field_name)


def above_min_score(hits: list[Hit], min_score: float) -> tuple[list[Hit], bool]:
    """(hits whose calibrated P(relevant) is at least min_score, whether it applied): only
    reranked hits carry that probability; without any, nothing is compared."""
    if not any(h.rerank is not None for h in hits):
        return hits, False
    return [h for h in hits if h.rerank is not None and h.rerank >= min_score], True


def best_per_group(hits: list[Hit], params: SearchParams, result: SearchResult) -> list[Hit]:
    """The first (best) hit of each value of params.group_by; the grouping field stays in
    Hit.fields only when it was asked for; a note says when too few groups were found."""
    key = str(params.group_by)
    seen: set[Any] = set()
    best = []
    for hit in hits:
        value = hit.fields.get(key)
        if value not in seen:
            seen.add(value)
            best.append(hit)
        if key not in params.output_fields:
            hit.fields.pop(key, None)
    wanted = params.offset + params.top_k
    if len(best) < wanted:
        result.notes.append(f"group_by {key}: {len(best)} groups among {len(hits)} "
                            f"candidates, {wanted} asked")
    return best
