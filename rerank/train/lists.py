"""Candidate lists for training and evaluation, mined with the embedder.

For each query, the top-N gallery items by full-width cosine: the embedder's own hardest
negatives (same subcategory, skin-tone siblings come up naturally). Training lists may
force the positive in (replacing the last candidate) so every list has a target.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Side:
    """Vectors (unit, full width), local features (N, cells, dim), labels."""

    vectors: np.ndarray
    local: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class Lists:
    query: np.ndarray  # (Q,) indices into the query side
    candidates: np.ndarray  # (Q, N) indices into the gallery side
    scores: np.ndarray  # (Q, N) first-stage cosine
    relevant: np.ndarray  # (Q, N) bool


def mine(queries: Side, gallery: Side, depth: int, force_positive: bool,
         exclude_self: bool = False) -> Lists:
    """exclude_self: queries and gallery are the same items (a query by stored id), so
    row i never lists item i."""
    scores = queries.vectors @ gallery.vectors.T
    if exclude_self:
        np.fill_diagonal(scores, -np.inf)
    top = np.argsort(-scores, axis=1)[:, :depth]
    rows = np.arange(len(top))[:, None]
    if force_positive:
        for row, label in enumerate(queries.labels):
            hit = np.flatnonzero(gallery.labels == label)
            if exclude_self:
                hit = hit[hit != row]
            if hit.size and not np.isin(hit, top[row]).any():
                top[row, -1] = hit[0]
    relevant = gallery.labels[top] == queries.labels[:, None]
    if exclude_self:  # a query with no other item of its identity has nothing to find
        relevant &= top != np.arange(len(top))[:, None]
    keep = relevant.any(axis=1) if force_positive else np.ones(len(top), bool)
    return Lists(np.flatnonzero(keep), top[keep], scores[rows, top][keep], relevant[keep])
