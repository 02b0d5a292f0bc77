"""Losses, each applied at every Matryoshka width (a prefix re-normalised).

- prototype ID recognition: normalised softmax with an additive angular margin (ArcFace)
  against one learnt prototype per train identity; when there are many identities only
  the batch's own prototypes plus a random sample of the others take part, as industrial
  systems with billions of ids do.
- InfoNCE between two views that should match (image<->image across vendors,
  image<->text), symmetric, in-batch negatives.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def prefix(vectors: torch.Tensor, width: int) -> torch.Tensor:
    return F.normalize(vectors[..., :width], dim=-1)


def sample_prototypes(batch_ids: torch.Tensor, num_ids: int, sample: int,
                      generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (prototype rows to use, target column of each batch row in them).

    The batch's own identities always take part; `sample` is the total (0 = all ids)."""
    if sample <= 0 or sample >= num_ids:
        return torch.arange(num_ids), batch_ids
    own = torch.unique(batch_ids)
    others_mask = torch.ones(num_ids, dtype=torch.bool)
    others_mask[own] = False
    others = torch.nonzero(others_mask).squeeze(1)
    extra = max(0, sample - len(own))
    pick = others[torch.randperm(len(others), generator=generator)[:extra]]
    rows = torch.cat([own, pick])
    lookup = torch.full((num_ids,), -1, dtype=torch.long)
    lookup[rows] = torch.arange(len(rows))
    return rows, lookup[batch_ids]


def arcface_loss(embeddings: torch.Tensor, prototypes: torch.Tensor, targets: torch.Tensor,
                 width: int, margin: float, scale: float) -> torch.Tensor:
    """cos(theta + margin) for the true prototype, cos(theta) for the others, times scale."""
    cosine = prefix(embeddings, width) @ prefix(prototypes, width).T
    true = cosine.gather(1, targets[:, None]).clamp(-1 + 1e-6, 1 - 1e-6)
    # past theta = pi - margin, cos(theta + m) stops decreasing: use the usual linear tail
    with_margin = torch.where(true > math.cos(math.pi - margin),
                              torch.cos(torch.acos(true) + margin),
                              true - math.sin(math.pi - margin) * margin)
    logits = cosine.scatter(1, targets[:, None], with_margin) * scale
    return F.cross_entropy(logits, targets)


def info_nce(left: torch.Tensor, right: torch.Tensor, width: int, temperature: float,
             same: torch.Tensor | None = None) -> torch.Tensor:
    """Row i of left matches row i of right. `same` (B, B) marks other pairs that also
    match (the same identity twice in a batch): they are left out of the negatives."""
    logits = prefix(left, width) @ prefix(right, width).T / temperature
    if same is not None:
        eye = torch.eye(len(left), dtype=torch.bool)
        logits = logits.masked_fill(same & ~eye, float("-inf"))
    targets = torch.arange(len(left))
    return 0.5 * (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets))
