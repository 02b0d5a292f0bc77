"""The one item format (manifest line) and the identity split rule."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def split_of(label: str) -> str:
    """`test` iff sha256(label) is odd: a fixed split by identity, never by image."""
    return "test" if int(hashlib.sha256(label.encode()).hexdigest(), 16) % 2 == 1 else "train"


@dataclass(frozen=True)
class ItemRecord:
    """{"id", "image", "text", "label", "split", "attrs"}; image relative to the manifest."""

    id: str
    image: str | None
    text: str | None
    label: str | None
    split: str | None
    attrs: dict[str, Any] = field(default_factory=dict)


def write_manifest(path: Path, records: Iterable[ItemRecord]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(asdict(record), ensure_ascii=False) + "\n")
            count += 1
    tmp.replace(path)  # a half-written manifest never appears under the final name
    return count


def read_manifest(path: Path) -> Iterator[ItemRecord]:
    """Trusting reader for manifests this project wrote (benchmarks, training). The
    ingestion worker validates user manifests line by line instead."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield ItemRecord(**json.loads(line))
