"""Integration fixtures: a models folder laid out like production, manifests on disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import CAPTIONS, random_images


@pytest.fixture(scope="session")
def models_dir(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/tiny (model.json + heads) and models/export/tiny (ONNX + manifest)."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(tiny_model[0], root / "tiny")
    shutil.copytree(tiny_model[1], root / "export" / "tiny")
    return root


def write_items(folder: Path, count: int, seed: int = 0, prefix: str = "item") -> Path:
    """A JSONL manifest of `count` fused items with real PNG files and typed attrs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    lines = []
    for i, blob in enumerate(random_images(count, seed=seed, size=24)):
        name = f"img/{prefix}-{i}.png"
        (folder / name).write_bytes(blob)
        lines.append({"id": f"{prefix}-{i}", "image": name, "text": CAPTIONS[i % len(CAPTIONS)],
                      "label": f"L{i % 7}", "split": "test",
                      "attrs": {"category": ["a", "b", "c"][i % 3], "rank": i,
                                "score": i / 10, "flag": i % 2 == 0}})
    manifest = folder / "items.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


# the sidecar stack fixture, shared by test_sidecar.py and test_sidecar_rerank.py
from tests.integration.sidecar_stack import stack  # noqa: E402, F401
