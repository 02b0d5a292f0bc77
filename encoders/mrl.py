"""Matryoshka helpers in numpy: prefix re-normalisation and image+text fusion.

Numpy only, so the ingestion worker and the sidecar apply them without torch.
"""

from __future__ import annotations

import numpy as np

from mmsearch.encoders.catalog import FusionSpec

_EPS = 1e-12


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return (vectors / np.maximum(norms, _EPS)).astype(np.float32)


def at_width(vectors: np.ndarray, width: int) -> np.ndarray:
    """The first `width` dimensions, re-normalised: a usable embedding at that width."""
    if width < 1 or width > vectors.shape[-1]:
        raise ValueError(f"width {width} outside 1..{vectors.shape[-1]}")
    return l2_normalize(vectors[..., :width])


def fuse(image: np.ndarray, text: np.ndarray, has_image: np.ndarray, has_text: np.ndarray,
         fusion: FusionSpec) -> np.ndarray:
    """Item vector at full width: weighted sum of the normalised modality vectors present.

    Rows with only one modality get that modality alone (its weight does not matter after
    the per-width re-normalisation the caller applies)."""
    image_part = l2_normalize(image) * (fusion.image_weight * has_image[:, None])
    text_part = l2_normalize(text) * (fusion.text_weight * has_text[:, None])
    return (image_part + text_part).astype(np.float32)
