"""Where items come from: a JSONL manifest, a Parquet file with the same columns, or a
folder of images. Each yields numbered raw records from a given offset, so a resumed run
skips exactly what its checkpoint committed."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.encoders.errors import BackendMissingError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class RawRecord:
    line: int  # 1-based position in the source (line, row, or file number)
    data: dict[str, Any] | None
    error: str | None = None  # why the line could not be parsed
    error_field: str = "line"  # the field the error names
    error_id: str | None = None  # the item's id, when it is known


class Source(ABC):
    """root: the folder that relative image paths are resolved against (and confined to)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def notes(self) -> list[str]:
        """What the source leaves out, for the summary (nothing is skipped unsaid)."""
        return []

    @property
    def root(self) -> Path:
        return self.path.parent

    @abstractmethod
    def records(self, start_after: int = 0) -> Iterator[RawRecord]:
        """Records whose line number is greater than start_after."""

    def fingerprint(self) -> str:
        """Content hash: a changed source is processed again (unchanged items are skipped)."""
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()


def parse_jsonl_line(number: int, raw: bytes) -> RawRecord | None:
    """One manifest line as a record (None for a blank line)."""
    if not raw.strip():
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return RawRecord(number, None, "line is not valid UTF-8")
    except json.JSONDecodeError as exc:
        return RawRecord(number, None, f"not valid JSON ({exc.msg})")
    if not isinstance(data, dict):
        return RawRecord(number, None, "line is not a JSON object")
    return RawRecord(number, data)


def jsonl_span(path: Path, offset: int, first_line: int, lines: int) -> Iterator[RawRecord]:
    """The records of `lines` lines starting at byte `offset` (which begins line
    `first_line`): how a bulk block reads its part of a manifest without the rest."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        for number in range(first_line, first_line + lines):
            raw = handle.readline()
            if not raw:
                return
            record = parse_jsonl_line(number, raw)
            if record is not None:
                yield record


class JsonlSource(Source):
    def records(self, start_after: int = 0) -> Iterator[RawRecord]:
        with open(self.path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                if number > start_after and (record := parse_jsonl_line(number, raw)):
                    yield record


class ParquetSource(Source):
    def records(self, start_after: int = 0) -> Iterator[RawRecord]:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise BackendMissingError("pyarrow (Parquet manifests)",
                                      "pip install 'mmsearch[parquet]'") from None
        number = 0
        for batch in pq.ParquetFile(self.path).iter_batches(batch_size=1024):
            for row in batch.to_pylist():
                number += 1
                if number <= start_after:
                    continue
                attrs = row.get("attrs")
                if isinstance(attrs, str):  # attrs stored as a JSON string column
                    try:
                        row["attrs"] = json.loads(attrs)
                    except json.JSONDecodeError:
                        yield RawRecord(number, None, "attrs column is not valid JSON")
                        continue
                elif isinstance(attrs, list):  # a map column arrives as key/value pairs
                    row["attrs"] = dict(attrs)
                yield RawRecord(number, row)


class FolderSource(Source):
    """Every image file under the folder (sorted): id = relative path, text = a sibling
    `<stem>.txt` if present."""

    @property
    def root(self) -> Path:
        return self.path

    def _files(self) -> list[Path]:
        return sorted(p for p in self.path.rglob("*")
                      if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)

    def records(self, start_after: int = 0) -> Iterator[RawRecord]:
        for number, file in enumerate(self._files(), start=1):
            if number <= start_after:
                continue
            relative = file.relative_to(self.path).as_posix()
            caption = file.with_suffix(".txt")
            try:
                text = caption.read_text(encoding="utf-8").strip() if caption.is_file() else None
            except UnicodeDecodeError as exc:
                yield RawRecord(number, None, f"{caption.name} is not UTF-8 (byte "
                                f"{exc.start})", "text", relative)
                continue
            yield RawRecord(number, {"id": relative, "image": relative, "text": text or None})

    def notes(self) -> list[str]:
        images = {p.with_suffix("") for p in self._files()}
        orphans = sorted(p for p in self.path.rglob("*.txt") if p.with_suffix("") not in images)
        if not orphans:
            return []
        return [f"{len(orphans)} caption file(s) with no image beside them were not read "
                f"(first: {orphans[0].relative_to(self.path)})"]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for file in self._files():
            stat = file.stat()
            digest.update(f"{file.relative_to(self.path)}:{stat.st_size}:{stat.st_mtime_ns}\n"
                          .encode())
        return digest.hexdigest()


def open_source(path: Path) -> Source:
    path = Path(path)
    if path.is_dir():
        return FolderSource(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if path.suffix.lower() == ".parquet":
        return ParquetSource(path)
    return JsonlSource(path)
