"""What the validation fold measures: identities training never sees, queried image ->
image across styles and name -> image. `validation_score` picks the epoch a model ships at;
the rest is recorded in train.json."""

from __future__ import annotations

import numpy as np
import torch

from mmsearch.encoders.data.captions import name_of
from mmsearch.encoders.features import text_features
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width
from mmsearch.encoders.towers.base import TextTower
from mmsearch.encoders.train.cache import TrainItems
from mmsearch.encoders.train.model import TrainableEmbedder


def cross_group_recall(image: np.ndarray, items: TrainItems, widths: tuple[int, ...]
                       ) -> dict[str, float]:
    """Image -> image R@1 per width, every group queried against all the others (mean
    over groups): how a drawing finds the same identity in another style."""
    groups = np.asarray(items.groups)
    labels = np.asarray(items.labels)
    found: dict[str, float] = {}
    for width in widths:
        scores = []
        for group in sorted(set(items.groups)):
            query, gallery = groups == group, groups != group
            if query.any() and gallery.any():
                scores.append(retrieval_metrics(
                    at_width(image[query], width), list(labels[query]),
                    at_width(image[gallery], width), list(labels[gallery]))["recall@1"])
        found[str(width)] = float(np.mean(scores)) if scores else float("nan")
    return found


def style_pair_recall(image: np.ndarray, items: TrainItems, widths: tuple[int, ...],
                      query_groups: frozenset[str] | None = None) -> dict[str, float]:
    """Image -> image R@1 per width, one style against one other (every ordered pair of
    groups, identities drawn in both; mean over pairs): a catalogue in one style queried
    in another, the shape the test benchmark and a deployment have. Harder than
    `cross_group_recall`, where any of the other styles' drawings may be the hit. With
    `query_groups` (a held-out family) only they query, against every group outside them."""
    groups = np.asarray(items.groups)
    labels = np.asarray(items.labels)
    found: dict[str, float] = {}
    names = sorted(set(items.groups))
    queries = [g for g in names if query_groups is None or g in query_groups]
    galleries = [g for g in names if query_groups is None or g not in query_groups]
    for width in widths:
        vectors = at_width(image, width)
        scores = []
        for query_group in queries:
            for gallery_group in galleries:
                if query_group == gallery_group:
                    continue
                gallery = groups == gallery_group
                query = (groups == query_group) & np.isin(labels, labels[gallery])
                if query.any():
                    scores.append(retrieval_metrics(
                        vectors[query], list(labels[query]), vectors[gallery],
                        list(labels[gallery]))["recall@1"])
        found[str(width)] = float(np.mean(scores)) if scores else float("nan")
    return found


def name_recall(model: TrainableEmbedder, text_tower: TextTower, image: np.ndarray,
                items: TrainItems, widths: tuple[int, ...]) -> dict[str, dict[str, float]]:
    """Name -> image R@1 / R@10 per width: each identity's name alone (what a user types)
    queries every drawing; any drawing of the identity is a hit."""
    caption_of = dict(zip(items.labels, items.captions, strict=True))  # one per identity
    labels = sorted(caption_of)
    names = text_features(text_tower, [name_of(caption_of[label]) for label in labels])
    with torch.no_grad():
        text = model.text_forward(torch.from_numpy(names.astype(np.float32))).numpy()
    found = {}
    for width in widths:
        metrics = retrieval_metrics(at_width(text, width), labels, at_width(image, width),
                                    list(items.labels))
        found[str(width)] = {"recall@1": metrics["recall@1"],
                             "recall@10": metrics["recall@10"]}
    return found


def validation_score(model: TrainableEmbedder, trunk: np.ndarray, items: TrainItems,
                     widths: tuple[int, ...]) -> float:
    """One-style-against-another image R@1 on the validation fold, mean over widths: what
    picks the epoch a model ships at."""
    recall = style_pair_recall(model.embed_trunk(trunk).numpy(), items, widths)
    return float(np.nanmean(list(recall.values())))
