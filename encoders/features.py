"""Raw tower features (before any head), batched: for fitting heads and for benchmarks."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from tqdm import tqdm

from mmsearch.encoders.preprocess import (
    ImageInput,
    ImageSpec,
    TextTokenizer,
    image_to_array,
    load_rgb,
)
from mmsearch.encoders.towers.base import ImageTower, TextTower


def image_features(tower: ImageTower, spec: ImageSpec, images: Sequence[ImageInput],
                   batch_size: int = 64, progress: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """-> pooled (N, feature_dim), cells (N, grid*grid, cell_dim). Inputs must be valid."""
    import torch

    pooled, cells = [], []
    starts = range(0, len(images), batch_size)
    for start in tqdm(starts, desc="image features", disable=not progress, unit="batch"):
        batch = np.stack([image_to_array(load_rgb(image, str(start + i)), spec)
                          for i, image in enumerate(images[start : start + batch_size])])
        with torch.inference_mode():
            p, c = tower(torch.from_numpy(batch))
        pooled.append(p.numpy())
        cells.append(c.numpy())
    return np.concatenate(pooled), np.concatenate(cells)


def text_features(tower: TextTower, texts: Sequence[str], batch_size: int = 128,
                  progress: bool = False) -> np.ndarray:
    import torch

    tokenizer = TextTokenizer(tower.tokenizer_file, tower.max_length)
    out = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="text features", disable=not progress, unit="batch"):
        tokens = tokenizer(texts[start : start + batch_size])
        with torch.inference_mode():
            out.append(tower(torch.from_numpy(tokens.input_ids),
                             torch.from_numpy(tokens.attention_mask)).numpy())
    return np.concatenate(out)
