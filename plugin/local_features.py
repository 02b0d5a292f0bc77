"""The `local` field of the full-width collection: base64 of little-endian fp16 values,
cells x dim (e.g. 4 x 64), "" for an item without an image (the scorer masks it).

A VARCHAR because Milvus Lite accepts only float vector fields and Milvus 2.3 allows one
vector field per collection: a scalar field is the portable choice.
"""

from __future__ import annotations

import base64

import numpy as np

from mmsearch.encoders.catalog import LocalSpec


def encode_local(local: np.ndarray, has_image: bool) -> str:
    return base64.b64encode(local.astype("<f2").tobytes()).decode() if has_image else ""


def decode_local(text: str | None, spec: LocalSpec) -> np.ndarray | None:
    """(cells, dim) float32, or None when the item has none (or a different layout)."""
    if not text:
        return None
    values = np.frombuffer(base64.b64decode(text), dtype="<f2")
    cells = spec.cells
    if values.size != cells * spec.dim:
        return None
    return values.reshape(cells, spec.dim).astype(np.float32)
