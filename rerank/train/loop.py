"""Training loop: listwise softmax + BCE within chunks, then an optional policy-gradient
stage that samples rankings from the listwise policy and rewards nDCG@10."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig, listwise_loss
from mmsearch.rerank.train.lists import Lists, Side

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainSettings:
    chunk_size: int = 16
    epochs: int = 6
    pg_epochs: int = 0
    batch_lists: int = 32
    lr: float = 2e-3
    samples: int = 8
    seed: int = 0
    progress: bool = False


def chunk_tensors(queries: Side, gallery: Side, lists: Lists, rows: np.ndarray,
                  chunk: int) -> dict[str, torch.Tensor]:
    """Lists -> (rows * N/chunk, chunk, ...) tensors, the layout the scorer sees."""
    cands = lists.candidates[rows]  # (R, N)
    r, n = cands.shape
    pieces = n // chunk
    q = queries.vectors[lists.query[rows]]
    ql = queries.local[lists.query[rows]]

    def per_chunk(array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(
            array.reshape(r * pieces, chunk, *array.shape[2:])))

    return {
        "query": torch.from_numpy(np.repeat(q, pieces, 0)),
        "query_local": torch.from_numpy(np.repeat(ql, pieces, 0)),
        "query_local_mask": torch.ones(r * pieces),
        "cands": per_chunk(gallery.vectors[cands]),
        "cand_local": per_chunk(gallery.local[cands]),
        "cand_local_mask": torch.ones(r * pieces, chunk),
        "first_stage": per_chunk(lists.scores[rows].astype(np.float32)),
        "valid": torch.ones(r * pieces, chunk, dtype=torch.bool),
        "labels": per_chunk(lists.relevant[rows].astype(np.float32)),
    }


def score_chunks(model: ListwiseScorer, batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
    return model(batch["query"], batch["query_local"], batch["query_local_mask"],
                 batch["cands"], batch["cand_local"], batch["cand_local_mask"],
                 batch["first_stage"], batch["valid"])


def ndcg_at_10(relevant_in_order: torch.Tensor) -> torch.Tensor:
    """(S, C) 0/1 relevance in ranked order -> (S,) nDCG@10 (0 where nothing is relevant)."""
    k = min(10, relevant_in_order.shape[-1])
    discounts = 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float32))
    dcg = (relevant_in_order[..., :k] * discounts).sum(-1)
    ideal = (relevant_in_order.sort(-1, descending=True).values[..., :k] * discounts).sum(-1)
    return torch.where(ideal > 0, dcg / ideal.clamp(min=1e-9), torch.zeros_like(dcg))


def policy_gradient_loss(listwise: torch.Tensor, labels: torch.Tensor, samples: int
                         ) -> torch.Tensor:
    """REINFORCE with a per-list mean baseline over Plackett-Luce samples (Gumbel trick)."""
    logits = listwise.unsqueeze(1).expand(-1, samples, -1)  # (B, S, C)
    gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp(1e-9, 1 - 1e-9)))
    order = (logits.detach() + gumbel).argsort(-1, descending=True)
    ranked = logits.gather(-1, order)
    # log p(permutation) = sum_i s_i - logsumexp(s_i..s_n)
    tail = torch.logcumsumexp(ranked.flip(-1), -1).flip(-1)
    log_prob = (ranked - tail).sum(-1)
    reward = ndcg_at_10(labels.unsqueeze(1).expand(-1, samples, -1).gather(-1, order))
    advantage = reward - reward.mean(1, keepdim=True)
    return -(advantage.detach() * log_prob).mean()


def train(config: ScorerConfig, queries: Side, gallery: Side, lists: Lists,
          settings: TrainSettings) -> tuple[ListwiseScorer, list[float]]:
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    model = ListwiseScorer(config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-4)
    losses: list[float] = []
    total = settings.epochs + settings.pg_epochs
    for epoch in tqdm(range(total), desc="train scorer", disable=not settings.progress):
        policy = epoch >= settings.epochs
        order = rng.permutation(len(lists.query))
        epoch_loss = []
        model.train()
        for start in range(0, len(order), settings.batch_lists):
            rows = order[start:start + settings.batch_lists]
            batch = chunk_tensors(queries, gallery, lists, rows, settings.chunk_size)
            listwise, calibrated = score_chunks(model, batch)
            loss = listwise_loss(listwise, calibrated, batch["labels"], batch["valid"])
            if policy:
                loss = loss + policy_gradient_loss(listwise, batch["labels"], settings.samples)
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimiser.step()
            epoch_loss.append(float(loss.detach()))
        losses.append(float(np.mean(epoch_loss)))
        log.info("epoch %d/%d%s loss %.4f", epoch + 1, total, " (policy gradient)" if policy
                 else "", losses[-1])
    return model.eval(), losses
