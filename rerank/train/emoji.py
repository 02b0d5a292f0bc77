"""Emoji data for the scorer: encode a vendor's images once (vectors + local features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from encoders.data.records import read_manifest
from encoders.runtimes.base import Encoder
from rerank.train.lists import Side


def encode_side(encoder: Encoder, data: Path, vendor: str, split: str, cache: Path | None
                ) -> Side:
    """Image-only items of one vendor and split, cached as .npz keyed by the model id."""
    path = None
    if cache is not None:
        path = cache / f"{vendor}-{split}-{encoder.model_id}.npz"
        if path.is_file():
            stored = np.load(path)
            return Side(stored["vectors"], stored["local"], stored["labels"])
    records = [r for r in read_manifest(data / f"{vendor}.jsonl")
               if r.split == split and r.image]
    result = encoder.encode_images([str(data / r.image) for r in records])
    if result.problems:
        raise ValueError(f"{vendor}: {len(result.problems)} images failed: {result.problems[0]}")
    side = Side(result.at_width(encoder.config.width_max), result.local.astype(np.float32),
                np.asarray([r.label for r in records]))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, vectors=side.vectors, local=side.local, labels=side.labels)
    return side
