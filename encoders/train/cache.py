"""Cached frozen features for training: the tower's frozen trunk runs once per view.

Training changes only the last `tune_blocks` stages of the image tower (0 = none) and the
heads, so everything before them is computed once per (item, view) and kept on disk in
fp16; epochs then cost only the trainable tail. View 0 is the clean image, views 1.. are
augmented (seeded by item index and view, so the cache is deterministic).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.features import text_features
from mmsearch.encoders.preprocess import ImageSpec, image_to_array, load_rgb
from mmsearch.encoders.towers.base import ImageTower, TextTower
from mmsearch.encoders.train.augment import AugmentSpec, augment


@dataclass(frozen=True)
class TrainItems:
    """Train-split items: image path, caption, identity label, group (vendor)."""

    images: tuple[str, ...]
    captions: tuple[str, ...]
    labels: tuple[str, ...]
    groups: tuple[str, ...]


@dataclass(frozen=True)
class FeatureCache:
    """trunk: (views, N, ...) fp16 outputs of the frozen part; text: (N, text_dim) of each
    caption; names: (N, text_dim) of each caption's name alone (the label a user types),
    present when training mixes names in (`TrainSettings.name_share`)."""

    trunk: np.ndarray
    text: np.ndarray
    names: np.ndarray | None = None


class FrozenTrunk(nn.Module):
    """The part of the image tower that training never changes."""

    def __init__(self, tower: ImageTower, tune_blocks: int) -> None:
        super().__init__()
        self.tower = tower
        self.tune_blocks = tune_blocks

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if self.tune_blocks == 0:
            # the whole tower is frozen: cache pooled and cells side by side
            pooled, cells = self.tower(pixel_values)
            return torch.cat([pooled[:, None, :], cells], dim=1)
        features = self.tower.features  # type: ignore[attr-defined]
        return features[: len(features) - self.tune_blocks](pixel_values)


def cache_key(config: ModelConfig, items: TrainItems, views: int, tune_blocks: int,
              augment_spec: AugmentSpec, weights_hash: str) -> str:
    payload = {"config": config.to_json(), "items": [items.images, items.captions],
               "views": views, "tune_blocks": tune_blocks, "augment": asdict(augment_spec),
               "weights": weights_hash}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _view_batch(paths: Sequence[str], start: int, view: int, spec: ImageSpec,
                augment_spec: AugmentSpec) -> np.ndarray:
    arrays = []
    for offset, path in enumerate(paths):
        image = load_rgb(path, path)
        if view > 0:
            image = augment(image, augment_spec, random.Random(view * 1_000_003 + start + offset))
        arrays.append(image_to_array(image, spec))
    return np.stack(arrays)


def build_cache(trunk: FrozenTrunk, text_tower: TextTower, spec: ImageSpec, items: TrainItems,
                views: int, augment_spec: AugmentSpec, path: Path | None,
                batch_size: int = 64, progress: bool = True) -> FeatureCache:
    """Load the cache at `path` when present, else compute it (and save it there)."""
    if path is not None and path.is_file():
        with np.load(path) as stored:
            return FeatureCache(stored["trunk"], stored["text"])
    trunk.eval()
    outputs: list[np.ndarray] = []
    steps = [(view, start) for view in range(views)
             for start in range(0, len(items.images), batch_size)]
    for view, start in tqdm(steps, desc="caching trunk features", disable=not progress,
                            unit="batch"):
        pixels = _view_batch(items.images[start : start + batch_size], start, view, spec,
                             augment_spec)
        with torch.inference_mode():
            outputs.append(trunk(torch.from_numpy(pixels)).to(torch.float16).numpy())
    per_view = len(outputs) // views
    trunk_features = np.stack([np.concatenate(outputs[v * per_view : (v + 1) * per_view])
                               for v in range(views)])
    text = text_features(text_tower, list(items.captions)).astype(np.float32)
    cache = FeatureCache(trunk_features, text)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, trunk=trunk_features, text=text)
        tmp.replace(path)
    return cache
