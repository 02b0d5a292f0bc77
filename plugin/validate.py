"""Validation of one raw record at the edge: a Candidate, or a Rejection naming the field.

Image decoding itself is checked by the encoder (its InputProblems become rejections too);
here: structure, types, paths confined to the manifest folder, duplicates, attr types.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.encoders.data.records import ItemRecord, RecordError, parse_item
from mmsearch.plugin.schema import LABEL_MAX, attr_name_problem, check_attr_value
from mmsearch.plugin.sources import RawRecord

MAX_IMAGE_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    line: int
    id: str
    image: bytes | None
    text: str | None
    label: str | None
    attrs: dict[str, Any]
    content_hash: str


@dataclass(frozen=True)
class Deletion:
    line: int
    id: str


@dataclass(frozen=True)
class Rejection:
    line: int
    id: str | None
    field: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"line": self.line, "id": self.id, "field": self.field, "reason": self.reason}


def content_hash(image: bytes | None, text: str | None, label: str | None,
                 attrs: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(hashlib.sha256(image).digest() if image is not None else b"-")
    # ASCII-escaped JSON: stable, and defined even for text the encoder will reject
    digest.update(json.dumps([text, label, dict(sorted(attrs.items()))]).encode())
    return digest.hexdigest()


@dataclass
class RecordValidator:
    """Stateful across a run: remembers ids already seen to reject duplicates."""

    root: Path
    seen: dict[str, int] = field(default_factory=dict)

    def remember(self, record_id: str, line: int) -> None:
        self.seen.setdefault(record_id, line)

    def validate(self, raw: RawRecord) -> Candidate | Deletion | Rejection:
        if raw.data is None:
            return Rejection(raw.line, raw.error_id, raw.error_field, raw.error or "unreadable")
        try:
            record = parse_item(raw.data)
        except RecordError as exc:
            return Rejection(raw.line, exc.item_id, exc.field, exc.reason)
        first = self.seen.get(record.id)
        if first is not None and first != raw.line:
            return Rejection(raw.line, record.id, "id",
                             f"duplicate id in this manifest (first on line {first})")
        self.seen[record.id] = raw.line
        if record.op == "delete":
            return Deletion(raw.line, record.id)
        return self._candidate(raw.line, record)

    def _candidate(self, line: int, record: ItemRecord) -> Candidate | Rejection:
        if record.label is not None and len(record.label.encode()) > LABEL_MAX:
            return Rejection(line, record.id, "label", f"longer than {LABEL_MAX} bytes")
        for name in record.attrs:
            problem = attr_name_problem(str(name))
            if problem:
                return Rejection(line, record.id, f"attrs.{name}", problem)
        image = None
        if record.image is not None:
            loaded = self._read_image(record.image)
            if isinstance(loaded, str):
                return Rejection(line, record.id, "image", loaded)
            image = loaded
        return Candidate(line, record.id, image, record.text, record.label, record.attrs,
                         content_hash(image, record.text, record.label, record.attrs))

    def _read_image(self, image_path: str) -> bytes | str:
        """The file's bytes, or the reason it cannot be used."""
        relative = Path(image_path)
        if relative.is_absolute():
            return f"absolute path {image_path!r}: paths must be relative to the manifest"
        root = self.root.resolve()
        resolved = (root / relative).resolve()
        if not resolved.is_relative_to(root):
            return f"path {image_path!r} escapes the manifest folder"
        if not resolved.is_file():
            return f"file not found: {image_path}"
        size = resolved.stat().st_size
        if size > MAX_IMAGE_BYTES:
            return f"file is {size} bytes, over the {MAX_IMAGE_BYTES} byte limit"
        return resolved.read_bytes()


def check_attrs(candidate: Candidate, schema: Mapping[str, str]) -> Rejection | None:
    for name, value in candidate.attrs.items():
        if name not in schema:
            return Rejection(candidate.line, candidate.id, f"attrs.{name}",
                             f"not a field of the collection (fields: {sorted(schema)})")
        reason = check_attr_value(name, value, schema[name])
        if reason:
            return Rejection(candidate.line, candidate.id, f"attrs.{name}", reason)
    return None
