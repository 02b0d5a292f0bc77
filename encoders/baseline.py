"""The untrained baseline head: PCA fitted on train-identity features.

Image head: PCA of pooled image features to width_max (components by variance, so every
prefix is the best linear view at its width). Local head: PCA of the grid cells to the
local dim (and, with a colour cell, PCA of the colour histograms: no labels here). Text
head: PCA of caption features, zero-padded to width_max. Image and text are NOT aligned
by this baseline; the trained embedder (`mmsearch train encoder`) aligns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.colour import image_histograms
from mmsearch.encoders.features import image_features, text_features
from mmsearch.encoders.heads import HeadSet, fit_pca_head
from mmsearch.encoders.preprocess import ImageInput, ImageSpec
from mmsearch.encoders.towers import load_image_tower, load_text_tower


def fit_baseline(config: ModelConfig, images: Sequence[ImageInput], captions: Sequence[str],
                 out_dir: Path, progress: bool = False) -> HeadSet:
    image_tower = load_image_tower(config.image_tower, config.local.grid)
    text_tower = load_text_tower(config.text_tower)
    spec = ImageSpec(config.image_tower.input_size, config.image_tower.mean,
                     config.image_tower.std)
    pooled, cells = image_features(image_tower, spec, images, progress=progress)
    captions_features = text_features(text_tower, captions, progress=progress)
    heads = HeadSet(
        image=fit_pca_head(pooled, config.width_max),
        text=fit_pca_head(captions_features, config.width_max),
        local=fit_pca_head(cells.reshape(-1, cells.shape[-1]), config.local.dim),
        colour=fit_pca_head(image_histograms(images, spec.mean, spec.std, spec.size),
                            config.local.dim) if config.local.colour else None,
    )
    config = replace(config, notes=(
        f"PCA baseline fitted on {len(images)} train images and {len(captions)} captions"))
    config.save(Path(out_dir))
    heads.save(Path(out_dir))
    return heads


def explained_variance(features: np.ndarray, heads: HeadSet, widths: Sequence[int]) -> dict:
    """Fraction of total variance kept by each prefix width (a sanity check for PCA order)."""
    centred = features - heads.image.mean
    total = float((centred**2).sum())
    projected = centred @ heads.image.weight
    return {w: float((projected[:, :w] ** 2).sum() / total) for w in widths}
