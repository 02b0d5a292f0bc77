"""Integration fixtures: a models folder laid out like production, manifests on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir(tiny_model: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """models/tiny (model.json + heads) and models/export/tiny (ONNX + manifest)."""
    root = tmp_path_factory.mktemp("models")
    shutil.copytree(tiny_model[0], root / "tiny")
    shutil.copytree(tiny_model[1], root / "export" / "tiny")
    return root


# the sidecar stack fixture, shared by the sidecar tests
from support.sidecar_stack import stack  # noqa: E402, F401
