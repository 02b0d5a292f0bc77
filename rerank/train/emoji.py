"""Emoji data for the scorer: encode a vendor's images once (vectors + local features).

View 0 is the clean image; views 1.. are augmented drawings (the embedder's training
augmentations). The embedder has seen the train identities' clean drawings, so lists
mined from them are nearly solved already; augmented queries give the scorer lists as
hard as unseen test drawings."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np

from mmsearch.encoders.data.records import read_manifest
from mmsearch.encoders.preprocess import load_rgb
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.encoders.train.augment import AugmentSpec, augment
from mmsearch.rerank.train.lists import Side


def encode_side(encoder: Encoder, data: Path, vendor: str, split: str, cache: Path | None,
                view: int = 0) -> Side:
    """Image-only items of one vendor and split, cached as .npz keyed by the model id."""
    path = None
    if cache is not None:
        suffix = f"-view{view}" if view else ""
        path = cache / f"{vendor}-{split}-{encoder.model_id}{suffix}.npz"
    records = [r for r in read_manifest(data / f"{vendor}.jsonl")
               if r.split == split and r.image]
    return encode_images_side(encoder, [str(data / r.image) for r in records],
                              [str(r.label) for r in records], view, path, vendor)


def encode_rows(encoder: Encoder, rows: list[tuple[str, str]], name: str, view: int,
                cache: Path | None) -> Side:
    """(image path, label) rows encoded, cached under `cache` by `name`, a hash of the
    paths, the model id and the view; `name` also names the set in an error."""
    path = None
    if cache is not None:
        key = hashlib.sha256("\n".join(p for p, _ in rows).encode()).hexdigest()[:12]
        path = cache / f"{name}-{key}-{encoder.model_id}-view{view}.npz"
    return encode_images_side(encoder, [image for image, _ in rows],
                              [label for _, label in rows], view, path, name)


def encode_images_side(encoder: Encoder, images: list[str], labels: list[str], view: int,
                       path: Path | None, what: str) -> Side:
    """Image-only vectors and local features of `images` (view > 0: augmented drawings,
    seeded by view and position), loaded from `path` when cached there, else saved there;
    `what` names the set in the error when an image fails."""
    if path is not None and (stored := _load(path)) is not None:
        return stored
    inputs: list = list(images)
    if view:
        inputs = [augment(load_rgb(image), AugmentSpec(), random.Random(view * 1_000_003 + i))
                  for i, image in enumerate(images)]
    result = encoder.encode_images(inputs)
    if result.problems:
        raise ValueError(f"{what}: {len(result.problems)} images failed: {result.problems[0]}")
    side = Side(result.at_width(encoder.config.width_max), result.local.astype(np.float32),
                np.asarray(labels))
    _save(path, side)
    return side


def _load(path: Path) -> Side | None:
    if not path.is_file():
        return None
    with np.load(path) as stored:
        return Side(stored["vectors"], stored["local"], stored["labels"])


def _save(path: Path | None, side: Side) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=side.vectors, local=side.local, labels=side.labels)


def encode_fused(encoder: Encoder, data: Path, vendors: tuple[str, ...], split: str,
                 cache: Path | None) -> Side:
    """Both vendors' items as the sidecar stores them (image + caption fused), one side:
    queries by stored id search a gallery holding every vendor."""
    path = cache / f"fused-{split}-{encoder.model_id}.npz" if cache is not None else None
    if path is not None and (stored := _load(path)) is not None:
        return stored
    records = [r for vendor in vendors for r in read_manifest(data / f"{vendor}.jsonl")
               if r.split == split and r.image and r.text]
    result = encoder.encode_items([str(data / r.image) for r in records],
                                  [r.text for r in records])
    if result.problems:
        raise ValueError(f"{len(result.problems)} items failed: {result.problems[0]}")
    side = Side(result.at_width(encoder.config.width_max), result.local.astype(np.float32),
                np.asarray([r.label for r in records]))
    _save(path, side)
    return side
