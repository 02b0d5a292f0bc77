"""Cross-fitted lists for the scorer: drawings of identities the embedder never trained on.

Lists mined from the embedder's own train identities are nearly solved, so a scorer trained
only on them learns to trust the first stage; a new catalogue's lists look like those of
identities the embedder never saw. The embedder's validation fold (`in_validation`) is such
a set, in every style it was trained on. It is cut in two by a second hash of the label:
`fit` identities give the scorer training lists, `check` identities the rerank-vs-refine
record in scorer.json (never test identities: those are `mmsearch bench`'s).

Each drawing queries a gallery of every other drawing of its part (all styles), itself
excluded: the relevant items are the same identity drawn in the other styles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from mmsearch.encoders.data.records import in_validation, read_manifest
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.rerank.scorer.model import ListwiseScorer
from mmsearch.rerank.train.emoji import encode_rows
from mmsearch.rerank.train.lists import Lists, Side, mine
from mmsearch.rerank.train.loop import chunk_tensors, ndcg_at_10, score_chunks

PARTS = ("fit", "check")


def part_of(label: str) -> str:
    """`fit` or `check`, independent of the split and validation hashes (salted)."""
    return PARTS[int(hashlib.sha256(f"scorer:{label}".encode()).hexdigest(), 16) % 2]


def in_check(label: str) -> bool:
    """The identities every scorer check is made on: the validation fold's `check` part.
    No scorer training list holds them."""
    return in_validation(label) and part_of(label) == "check"


def without_check(side: Side) -> Side:
    """The side without its check-part drawings."""
    keep = np.array([not in_check(str(label)) for label in side.labels], bool)
    return Side(side.vectors[keep], side.local[keep], side.labels[keep])


def train_drawings(manifests: Sequence[Path], keep: Callable[[str], bool]
                   ) -> list[tuple[str, str]]:
    """(image path, label) of the train-split drawings whose label `keep` accepts."""
    return [(str(Path(manifest).parent / record.image), str(record.label))
            for manifest in manifests for record in read_manifest(manifest)
            if record.split == "train" and record.image and record.label
            and keep(str(record.label))]


def held_out_records(manifests: list[Path], part: str) -> list[tuple[str, str]]:
    """(image path, label) of the train-split, validation-fold drawings in `part`."""
    rows = train_drawings(manifests, lambda label: in_validation(label)
                          and part_of(label) == part)
    if not rows:
        raise ValueError(f"no validation-fold drawings in part {part!r} of {manifests}")
    return rows


def held_out_side(encoder: Encoder, manifests: list[Path], part: str, cache: Path | None,
                  view: int = 0) -> Side:
    """Image-only vectors of one part; view > 0 = augmented drawings (harder queries)."""
    return encode_rows(encoder, held_out_records(manifests, part), f"heldout-{part}", view,
                       cache)


def held_out_pairs(encoder: Encoder, manifests: list[Path], depth: int, cache: Path | None,
                   query_views: int) -> list[tuple[Side, Side, Lists]]:
    """Training lists of the `fit` part: clean queries, then each augmented view of them,
    against the clean gallery (row i never lists its own drawing)."""
    gallery = held_out_side(encoder, manifests, "fit", cache)
    pairs = [(gallery, gallery, mine(gallery, gallery, depth, force_positive=True,
                                     exclude_self=True))]
    for view in range(1, query_views + 1):
        queries = held_out_side(encoder, manifests, "fit", cache, view)
        pairs.append((queries, gallery, mine(queries, gallery, depth, force_positive=True,
                                             exclude_self=True)))
    return pairs


def held_out_check(encoder: Encoder, manifests: list[Path], depth: int, cache: Path | None
                   ) -> tuple[Side, Side, Lists]:
    """The `check` part's lists: each drawing queries the part's other drawings (all
    styles), unforced; only drawings whose identity has another drawing there."""
    side = held_out_side(encoder, manifests, "check", cache)
    lists = mine(side, side, depth, force_positive=False, exclude_self=True)
    has = np.array([(side.labels == label).sum() > 1 for label in side.labels[lists.query]])
    return side, side, Lists(lists.query[has], lists.candidates[has], lists.scores[has],
                             lists.relevant[has])


@torch.no_grad()
def list_logits(model: ListwiseScorer, check: tuple[Side, Side, Lists], chunk: int
                ) -> torch.Tensor:
    """The scorer's calibrated logit of every candidate of a check's lists, (lists, N)."""
    queries, gallery, lists = check
    model.eval()
    logits = []
    for start in range(0, len(lists.query), 64):
        rows = np.arange(start, min(start + 64, len(lists.query)))
        _, calibrated = score_chunks(model, chunk_tensors(queries, gallery, lists, rows, chunk))
        logits.append(calibrated.reshape(len(rows), -1))
    return torch.cat(logits)


def rerank_check(model: ListwiseScorer, check: tuple[Side, Side, Lists], chunk: int
                 ) -> dict[str, float]:
    """R@1 and nDCG@10 of the first-stage order vs the scorer's over a check's lists
    (a list without its identity counts as a miss for both)."""
    queries, _, lists = check
    order = list_logits(model, check, chunk).argsort(dim=-1, descending=True, stable=True)
    relevant = torch.from_numpy(lists.relevant.astype(np.float32))
    in_order = relevant.gather(-1, order)
    return {"lists": int(len(lists.query)), "identities": int(len(set(queries.labels))),
            "refine_recall@1": float(relevant[:, 0].mean()),
            "rerank_recall@1": float(in_order[:, 0].mean()),
            "refine_ndcg@10": float(ndcg_at_10(relevant).mean()),
            "rerank_ndcg@10": float(ndcg_at_10(in_order).mean())}
