"""MRL heads as plain arrays: y = (x - mean) @ weight, stored in heads.safetensors.

A head maps tower features to width_max dims whose every prefix is usable; the PCA
baseline orders components by variance, trained heads learn it per width.
Arrays load with safetensors' numpy API, so reading heads never needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

HEAD_FILE = "heads.safetensors"
HEAD_NAMES = ("image", "text", "local")


@dataclass(frozen=True)
class LinearHead:
    mean: np.ndarray  # (in_dim,)
    weight: np.ndarray  # (in_dim, out_dim)

    @property
    def in_dim(self) -> int:
        return int(self.weight.shape[0])

    @property
    def out_dim(self) -> int:
        return int(self.weight.shape[1])

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) @ self.weight).astype(np.float32)


@dataclass(frozen=True)
class HeadSet:
    image: LinearHead
    text: LinearHead
    local: LinearHead
    colour: LinearHead | None = None  # histogram -> local dim (LocalSpec.colour)

    def save(self, folder: Path) -> Path:
        from safetensors.numpy import save_file

        tensors = {}
        for name in (*HEAD_NAMES, "colour"):
            head: LinearHead | None = getattr(self, name)
            if head is None:
                continue
            tensors[f"{name}.mean"] = np.ascontiguousarray(head.mean, dtype=np.float32)
            tensors[f"{name}.weight"] = np.ascontiguousarray(head.weight, dtype=np.float32)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / HEAD_FILE
        save_file(tensors, str(path))
        return path

    @classmethod
    def load(cls, folder: Path) -> HeadSet:
        from safetensors.numpy import load_file

        path = Path(folder) / HEAD_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {HEAD_FILE} in {folder} (run `mmsearch train baseline`)")
        tensors = load_file(str(path))
        heads = {n: LinearHead(tensors[f"{n}.mean"], tensors[f"{n}.weight"]) for n in HEAD_NAMES}
        colour = (LinearHead(tensors["colour.mean"], tensors["colour.weight"])
                  if "colour.mean" in tensors else None)
        return cls(**heads, colour=colour)


def fit_pca_head(features: np.ndarray, out_dim: int) -> LinearHead:
    """PCA projection to out_dim, components in decreasing variance (so prefixes are the
    best low-rank views). Columns past the data's rank are zero."""
    data = np.asarray(features, dtype=np.float64)
    mean = data.mean(axis=0)
    _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
    keep = min(out_dim, vt.shape[0])
    weight = np.zeros((data.shape[1], out_dim), dtype=np.float64)
    weight[:, :keep] = vt[:keep].T
    # SVD signs are arbitrary: fix them so refits on the same data give the same head
    signs = np.sign(weight[np.abs(weight).argmax(axis=0), np.arange(out_dim)])
    weight *= np.where(signs == 0, 1.0, signs)
    return LinearHead(mean.astype(np.float32), weight.astype(np.float32))
