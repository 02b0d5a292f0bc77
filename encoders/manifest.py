"""The model manifest: what was exported, from which model, with content hashes.

`model_id` identifies the model itself (config + head weights + tower weights), so a
worker on the torch runtime and a sidecar on ONNX Runtime agree they run the same model;
file hashes catch an exported file swapped or altered after export.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.errors import ModelMismatchError

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_id(config: ModelConfig, component_hashes: dict[str, str]) -> str:
    """Hash of the canonical model config and the weights it uses (sorted by name)."""
    payload = json.dumps({"config": config.to_json(), "weights": component_hashes},
                         sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


@dataclass(frozen=True)
class FileEntry:
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ModelManifest:
    model_id: str
    config: ModelConfig
    text_max_length: int
    files: dict[str, FileEntry]
    io: dict[str, Any] = field(default_factory=dict)
    engines: dict[str, FileEntry] = field(default_factory=dict)

    @property
    def widths(self) -> tuple[int, ...]:
        return self.config.widths

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "model_id": self.model_id,
            "model_name": self.config.name,
            "widths": list(self.config.widths),
            "width_max": self.config.width_max,
            "image_input_size": self.config.image_tower.input_size,
            "text_max_length": self.text_max_length,
            "local_features": {"cells": self.config.local.cells, "dim": self.config.local.dim},
            "config": self.config.to_json(),
            "files": {k: vars(v) for k, v in sorted(self.files.items())},
            "engines": {k: vars(v) for k, v in sorted(self.engines.items())},
            "io": self.io,
        }

    def save(self, folder: Path) -> Path:
        path = folder / MANIFEST_FILE
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelManifest:
        path = Path(folder) / MANIFEST_FILE
        if not path.is_file():
            raise FileNotFoundError(f"no {MANIFEST_FILE} in {folder}: run `mmsearch export`")
        data = json.loads(path.read_text())
        if data.get("format_version") != FORMAT_VERSION:
            raise ModelMismatchError(
                f"{path}: manifest format {data.get('format_version')}, expected {FORMAT_VERSION}"
            )
        return cls(
            model_id=data["model_id"],
            config=ModelConfig.from_json(data["config"]),
            text_max_length=int(data["text_max_length"]),
            files={k: FileEntry(**v) for k, v in data["files"].items()},
            io=data.get("io", {}),
            engines={k: FileEntry(**v) for k, v in data.get("engines", {}).items()},
        )

    def verify_files(self, folder: Path, names: tuple[str, ...] | None = None) -> None:
        """Raise ModelMismatchError if a listed file is missing or its content changed."""
        listed = {**self.files, **self.engines}
        for name in names or tuple(self.files):
            entry = listed[name]
            path = Path(folder) / name
            if not path.is_file():
                raise ModelMismatchError(f"{path} is listed in the manifest but missing")
            if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
                raise ModelMismatchError(
                    f"{path} does not match the manifest hash: re-run `mmsearch export`"
                )


REINGEST = ("re-ingest it with the loaded model (`mmsearch ingest` into a new --base, or "
            "`mmsearch collections drop` then ingest), or load the model it was built with")


def require_same_model(built_with: str | None, loaded: str, what: str,
                       fix: str = REINGEST) -> None:
    """The one same-model rule: vectors from two models live in different spaces, so the
    worker, the sidecar and the scorer refuse to mix them."""
    if built_with != loaded:
        raise ModelMismatchError(f"{what} was built with model {built_with}, the loaded model "
                                 f"is {loaded}: {fix}")
