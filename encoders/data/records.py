"""The one item format (manifest line), its parser, the id rule and the identity split.

Every reader of manifests (the ingestion worker, training, benchmarks, the demo) goes
through `parse_item`, so an item means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# ids: the VARCHAR primary key of every width collection, and a literal inside Milvus
# filter expressions, where a control character (a newline) cannot appear on Milvus Lite
ID_MAX_BYTES = 512
OPS = ("upsert", "delete")
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


def split_of(label: str) -> str:
    """`test` iff sha256(label) is odd: a fixed split by identity, never by image."""
    return "test" if int(hashlib.sha256(label.encode()).hexdigest(), 16) % 2 == 1 else "train"


VALIDATION_PERCENT = 15


def in_validation(label: str, percent: int = VALIDATION_PERCENT) -> bool:
    """Whether a train-split identity belongs to the validation fold: the hash's bits above
    the split bit, mod 100, fall under `percent` (independent of the split bit, so ~15 %
    of train identities by default; 0 = no validation fold). It reads only the label, so
    it holds for a user's own manifest, whose `split` field (not this hash) says what is
    train."""
    digest = int(hashlib.sha256(label.encode()).hexdigest(), 16)
    return (digest >> 1) % 100 < percent


def fold_of(label: str) -> str:
    """The emoji data's fold: `test` as split_of says, else `validation` or `train`
    (in_validation). Every model choice is made on validation, never on test."""
    if split_of(label) == "test":
        return "test"
    return "validation" if in_validation(label) else "train"


def strip_fe0f(code: str) -> str:
    """The form other styles are matched on: upper case, U+FE0F (emoji presentation)
    removed, since packages disagree on where they write it."""
    return "-".join(part for part in code.upper().split("-") if part != "FE0F")


def id_problem(value: object) -> str | None:
    """Why `value` cannot be an item id, or None: a non-empty string of at most
    ID_MAX_BYTES UTF-8 bytes with no control characters (U+0000-U+001F, U+007F)."""
    if not isinstance(value, str) or not value.strip():
        return "missing or not a non-empty string"
    if len(value.encode("utf-8", "surrogatepass")) > ID_MAX_BYTES:
        return f"longer than {ID_MAX_BYTES} bytes"
    found = CONTROL_CHARS.search(value)
    if found:
        return (f"contains the control character U+{ord(found.group()):04X} at position "
                f"{found.start()}: ids hold printable characters only")
    return None


@dataclass(frozen=True)
class ItemRecord:
    """{"id", "image", "text", "label", "split", "attrs"}; image relative to the manifest."""

    id: str
    image: str | None
    text: str | None
    label: str | None
    split: str | None
    attrs: dict[str, Any] = field(default_factory=dict)
    op: str = "upsert"  # or "delete": remove the item from every width


class RecordError(ValueError):
    """A manifest line that is not an item: names the field (and the id when it has one)."""

    def __init__(self, field_name: str, reason: str, item_id: str | None = None) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field, self.reason, self.item_id = field_name, reason, item_id


def parse_item(data: Any) -> ItemRecord:
    """One decoded manifest line as an ItemRecord, or RecordError naming the field."""
    if not isinstance(data, dict):
        raise RecordError("line", "not a JSON object")
    problem = id_problem(data.get("id"))
    if problem:
        shown = data["id"][:80] if isinstance(data.get("id"), str) else None
        raise RecordError("id", problem, shown)
    item_id = data["id"]
    op = data.get("op", "upsert")
    if op not in OPS:
        raise RecordError("op", f"must be one of {', '.join(OPS)}, got {op!r}", item_id)
    if op == "delete":  # the id is all a delete needs
        return ItemRecord(item_id, None, None, None, None, {}, op="delete")
    for name in ("text", "label", "split"):
        if data.get(name) is not None and not isinstance(data[name], str):
            raise RecordError(name, "must be a string or null", item_id)
    attrs = data.get("attrs") or {}
    if not isinstance(attrs, dict):
        raise RecordError("attrs", "must be an object or null", item_id)
    image = data.get("image")
    if image is not None and (not isinstance(image, str) or not image):
        raise RecordError("image", "must be a relative path string or null", item_id)
    if image is None and data.get("text") is None:
        raise RecordError("image,text", "item has neither image nor text", item_id)
    return ItemRecord(item_id, image, data.get("text"), data.get("label"), data.get("split"),
                      attrs)


def manifest_line(record: ItemRecord) -> str:
    fields = asdict(record)
    if record.op == "upsert":  # the default: manifests stay in the documented shape
        del fields["op"]
    return json.dumps(fields, ensure_ascii=False) + "\n"


def write_manifest(path: Path, records: Iterable[ItemRecord]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(manifest_line(record))
            count += 1
    tmp.replace(path)  # a half-written manifest never appears under the final name
    return count


def read_manifest(path: Path) -> Iterator[ItemRecord]:
    """Every item of a manifest this project or a user wrote for training, benchmarks or
    the demo; a bad line stops with an error naming the file, line and field (the
    ingestion worker dead-letters such lines instead, see mmsearch.plugin.validate)."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield parse_item(json.loads(line))
            except (json.JSONDecodeError, RecordError) as exc:
                raise RecordError("line", f"{path}:{number}: {exc}") from None
