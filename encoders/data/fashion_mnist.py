"""Optional source: Fashion-MNIST from Debian's `dataset-fashion-mnist` (class labels only)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.encoders.data.records import ItemRecord, write_manifest

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ("t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt",
           "sneaker", "bag", "ankle boot")


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        data = handle.read()
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def prepare_fashion_mnist(out_dir: Path, limit: int | None = None,
                          source: Path = DEBIAN_DIR) -> Path:
    if not (source / "t10k-images-idx3-ubyte.gz").is_file():
        raise FileNotFoundError(f"{source} has no Fashion-MNIST files; fix: "
                                "apt-get install -y dataset-fashion-mnist")
    records = []
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = _read_idx(source / f"{prefix}-images-idx3-ubyte.gz")
        labels = _read_idx(source / f"{prefix}-labels-idx1-ubyte.gz")
        count = len(images) if limit is None else min(limit, len(images))
        for i in range(count):
            relative = f"images/fashion-mnist/{split}-{i:05d}.png"
            target = Path(out_dir) / relative
            if not target.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(images[i]).save(target)
            name = CLASSES[int(labels[i])]
            records.append(ItemRecord(f"fmnist:{split}-{i:05d}", relative, name, name, split,
                                      {"vendor": "fashion-mnist"}))
    manifest = Path(out_dir) / "fashion-mnist.jsonl"
    write_manifest(manifest, records)
    return manifest
