"""The correction weight: how much of its learned correction the trained scorer keeps.

Rerank must never rank below refine, on any style, including styles the embedder never
saw. After training, each candidate weight is tried on the check lists (identities the
scorer never trained on; cross-fitted lists stand for a new catalogue's); the chosen
weight is the one with the best mean rerank R@1 among those that lower neither R@1 nor
nDCG@10 on any check. Zero keeps the first-stage order, so a weight always qualifies.
A weight below 1 also changes the logit's scale, so the logit is then Platt-scaled on the
same lists (an order-preserving a * logit + b) to keep sigmoid(logit) a probability.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch.nn import functional as F

from mmsearch.rerank.scorer.model import ListwiseScorer
from mmsearch.rerank.train.heldout import list_logits, rerank_check
from mmsearch.rerank.train.lists import Lists, Side

WEIGHTS = (1.0, 0.75, 0.5, 0.25, 0.0)
RULE = ("best mean rerank R@1 over the checks among the weights that lower neither R@1 "
        "nor nDCG@10 against refine on any check; 0 keeps the refine order")


def never_lower(check: dict[str, float]) -> bool:
    return (check["rerank_recall@1"] >= check["refine_recall@1"]
            and check["rerank_ndcg@10"] >= check["refine_ndcg@10"])


def choose_correction_weight(model: ListwiseScorer,
                             checks: dict[str, tuple[Side, Side, Lists]], chunk: int,
                             weights: tuple[float, ...] = WEIGHTS) -> dict:
    """Set the model's correction weight by the rule above; returns the record (every
    weight's checks, the chosen one)."""
    if not checks:
        raise ValueError("choosing the correction weight needs at least one check")
    tried = []
    for weight in weights:
        model.config = replace(model.config, correction_weight=weight)
        results = {name: rerank_check(model, lists, chunk) for name, lists in checks.items()}
        mean = sum(r["rerank_recall@1"] for r in results.values()) / len(results)
        tried.append({"weight": weight, "mean_rerank_recall@1": mean,
                      "never_lower": weight == 0.0 or all(map(never_lower, results.values())),
                      "checks": results})
    allowed = [t for t in tried if t["never_lower"]]
    if not allowed:  # only when 0.0 was not among the weights tried
        raise ValueError(f"no weight in {weights} keeps rerank at or above refine")
    chosen = max(allowed, key=lambda t: (t["mean_rerank_recall@1"], t["weight"]))
    model.config = replace(model.config, correction_weight=chosen["weight"])
    return {"chosen": chosen["weight"], "rule": RULE, "tried": tried}


def calibrate(model: ListwiseScorer, checks: dict[str, tuple[Side, Side, Lists]],
              chunk: int) -> dict[str, float]:
    """Fit the Platt scale and bias of the final logit on the check lists (binary
    cross-entropy, the loss the calibrated head trains with) and set them."""
    model.config = replace(model.config, calibration_scale=1.0, calibration_bias=0.0)
    logits = torch.cat([list_logits(model, check, chunk).reshape(-1)
                        for check in checks.values()])
    labels = torch.cat([torch.from_numpy(lists.relevant.astype(np.float32)).reshape(-1)
                        for _, _, lists in checks.values()])
    scale, bias = torch.ones(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([scale, bias], max_iter=200, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = F.binary_cross_entropy_with_logits(scale * logits + bias, labels)
        value.backward()
        return value

    before = float(F.binary_cross_entropy_with_logits(logits, labels))
    optimiser.step(loss)
    fitted_scale, fitted_bias = float(scale.detach()), float(bias.detach())
    if fitted_scale <= 0:  # a flipped order is never a calibration
        raise ValueError(f"Platt scaling found a non-positive scale ({fitted_scale})")
    model.config = replace(model.config, calibration_scale=fitted_scale,
                           calibration_bias=fitted_bias)
    after = float(F.binary_cross_entropy_with_logits(fitted_scale * logits + fitted_bias,
                                                     labels))
    return {"scale": fitted_scale, "bias": fitted_bias, "bce_before": before,
            "bce_after": after, "candidates": int(len(labels))}
