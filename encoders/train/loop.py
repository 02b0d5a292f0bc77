"""The training loop: identity pairs per batch, every loss at every width, seeded."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from mmsearch.encoders.train.cache import FeatureCache
from mmsearch.encoders.train.losses import arcface_loss, info_nce, sample_prototypes
from mmsearch.encoders.train.model import TrainableEmbedder


@dataclass(frozen=True)
class LossWeights:
    prototype: float = 1.0  # ArcFace against identity prototypes (image and text)
    image_image: float = 1.0  # InfoNCE between two items of one identity (across vendors)
    image_text: float = 1.0  # InfoNCE between an image and its caption
    local: float = 0.25  # InfoNCE between the same local cell of two items


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 30
    batch_identities: int = 128
    # items of each identity in a batch (its drawings in several styles); image/image
    # InfoNCE runs between every pair of them. 2 = emoji-v1's pairs.
    instances: int = 2
    lr_heads: float = 1e-3
    lr_tower: float = 3e-4
    margin: float = 0.2
    scale: float = 30.0
    temperature: float = 0.05
    local_temperature: float = 0.1
    prototype_sample: int = 1024  # prototypes per step (the batch's own + sampled others)
    # share of items whose text side is their name alone rather than the whole caption:
    # users type "red heart", captions add keywords. 0 = emoji-v1's captions only.
    name_share: float = 0.0
    weights: LossWeights = field(default_factory=LossWeights)
    seed: int = 0
    progress: bool = True


def identity_index(labels: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """-> (identity index per item, item indices per identity), identities sorted by label."""
    names = sorted(set(labels))
    position = {name: i for i, name in enumerate(names)}
    ids = np.array([position[label] for label in labels], dtype=np.int64)
    members = [np.nonzero(ids == i)[0] for i in range(len(names))]
    return ids, members


def _pick_instances(identities: np.ndarray, members: list[np.ndarray], instances: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(instances, identities) item indices: different items of each identity where it has
    enough (else some repeat: their augmented views still differ)."""
    chosen = [rng.choice(members[identity], size=instances,
                         replace=len(members[identity]) < instances)
              for identity in identities]
    return np.array(chosen).T


def _text_rows(cache: FeatureCache, items: np.ndarray, settings: TrainSettings,
               rng: np.random.Generator) -> np.ndarray:
    """Each item's caption features, a `name_share` of them replaced by its name's."""
    if settings.name_share <= 0:  # draws nothing: runs without names stay reproducible
        return cache.text[items]
    if cache.names is None:
        raise ValueError("name_share > 0 needs the cache's name features (FeatureCache.names)")
    use_name = rng.random(len(items)) < settings.name_share
    return np.where(use_name[:, None], cache.names[items], cache.text[items])


def _batch_losses(model: TrainableEmbedder, cache: FeatureCache, ids: np.ndarray,
                  picked: np.ndarray, widths: tuple[int, ...], settings: TrainSettings,
                  rng: np.random.Generator, generator: torch.Generator
                  ) -> dict[int | str, torch.Tensor]:
    """`picked` is (instances, B): row r holds one item of each of the batch's identities."""
    views = cache.trunk.shape[0]
    items = picked.reshape(-1)
    item_views = rng.integers(0, views, size=len(items))
    trunk = torch.from_numpy(cache.trunk[item_views, items].astype(np.float32))
    image, local = model.image_forward(trunk)
    text = model.text_forward(torch.from_numpy(_text_rows(cache, items, settings, rng)))
    batch_ids = torch.from_numpy(ids[items])
    same = batch_ids[:, None] == batch_ids[None, :]
    rows, targets = sample_prototypes(torch.cat([batch_ids, batch_ids]),
                                      model.prototypes.shape[0], settings.prototype_sample,
                                      generator)
    prototypes = model.prototypes[rows]
    size = picked.shape[1]
    blocks = [slice(r * size, (r + 1) * size) for r in range(picked.shape[0])]
    pairs = list(itertools.combinations(blocks, 2))
    weights = settings.weights
    losses: dict[int | str, torch.Tensor] = {}
    for width in widths:
        image_image = sum(info_nce(image[a], image[b], width, settings.temperature)
                          for a, b in pairs) / len(pairs)
        losses[width] = (
            weights.prototype * arcface_loss(torch.cat([image, text]), prototypes, targets,
                                             width, settings.margin, settings.scale)
            + weights.image_image * image_image
            + weights.image_text * info_nce(image, text, width, settings.temperature, same))
    cells = local.shape[1]
    first, second = blocks[0], blocks[1]
    losses["local"] = weights.local * sum(
        info_nce(local[first, c], local[second, c], local.shape[-1],
                 settings.local_temperature)
        for c in range(cells)) / cells
    return losses


def train_embedder(model: TrainableEmbedder, cache: FeatureCache, labels: tuple[str, ...],
                   widths: tuple[int, ...], settings: TrainSettings,
                   validate: Callable[[TrainableEmbedder], float] | None = None
                   ) -> list[dict[str, float]]:
    """Train in place; -> per-epoch mean loss per width (and `local`). With `validate` (a
    score on identities training never sees, higher is better) each epoch is scored
    (`validation` in its entry) and the model ends at its best epoch's weights: the
    number of epochs is chosen on validation, not on test."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    ids, members = identity_index(labels)
    model.init_prototypes(model.embed_trunk(cache.trunk[0]), torch.from_numpy(ids))
    groups = [{"params": [*model.image_head.parameters(), *model.text_head.parameters(),
                          *model.local_head.parameters(), model.prototypes],
               "lr": settings.lr_heads}]
    if model.tail is not None:
        groups.append({"params": list(model.tail.parameters()), "lr": settings.lr_tower})
    optimizer = torch.optim.AdamW(groups, weight_decay=0.0)
    history: list[dict[str, float]] = []
    best_score, best = float("-inf"), model.state_dict()
    model.train()
    bar = tqdm(range(settings.epochs), desc="training encoder", disable=not settings.progress)
    for _ in bar:
        order = rng.permutation(len(members))
        totals: dict[str, float] = {}
        steps = 0
        for start in range(0, len(order), settings.batch_identities):
            batch = order[start : start + settings.batch_identities]
            if len(batch) < 2:
                continue  # InfoNCE needs a negative
            picked = _pick_instances(batch, members, settings.instances, rng)
            losses = _batch_losses(model, cache, ids, picked, widths, settings, rng,
                                   generator)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()
            for key, value in losses.items():
                totals[str(key)] = totals.get(str(key), 0.0) + float(value.detach())
            steps += 1
        history.append({key: value / max(steps, 1) for key, value in totals.items()})
        bar.set_postfix(loss=f"{sum(history[-1].values()):.3f}")
        if validate is not None:
            score = history[-1]["validation"] = _score(model, validate)
            if score > best_score:  # strictly: the first best epoch wins
                best_score, best = score, copy.deepcopy(model.state_dict())
    model.eval()
    if validate is not None:
        model.load_state_dict(best)
    return history


def _score(model: TrainableEmbedder, validate: Callable[[TrainableEmbedder], float]) -> float:
    model.eval()
    try:
        return float(validate(model))
    finally:
        model.train()
