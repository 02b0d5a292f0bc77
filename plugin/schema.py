"""Collection layout and schema: one collection per width behind the alias `<base>_d<w>`.

Fields: id (VARCHAR primary key, the item id), vector, label, content_hash, the item's
attrs as typed nullable scalar fields (filterable), and in the full-width collection
`local` (base64 of fp16 local features; "" when the item has no image).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mmsearch.encoders.data.records import ID_MAX_BYTES
from mmsearch.encoders.errors import ConfigError

ID_MAX = ID_MAX_BYTES
LABEL_MAX = 512
HASH_LEN = 64
LOCAL_MAX = 8192
STRING_MAX = 2048
RESERVED = {"id", "vector", "label", "content_hash", "local"}
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
ATTR_TYPES = ("varchar", "int64", "double", "bool")
MODEL_ID_PROPERTY = "mmsearch.model_id"
WIDTH_PROPERTY = "mmsearch.width"
# a random id given to each physical collection when it is created (copied by an index
# rebuild, which copies the data): checkpoints record it, so a checkpoint never vouches for
# a collection that was dropped or recreated (Milvus Lite reports id 0 and no creation time)
UUID_PROPERTY = "mmsearch.collection_uuid"
# the index spec a version was built with (JSON): some servers (Milvus Lite) do not report
# build params in describe_index, and none report search params
INDEX_PROPERTY = "mmsearch.index"


@dataclass(frozen=True)
class Layout:
    base: str
    widths: tuple[int, ...]

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.base) or len(self.base) > 200:
            raise ConfigError("base", f"{self.base!r} is not a valid collection name prefix")

    @property
    def full_width(self) -> int:
        return self.widths[-1]

    def alias(self, width: int) -> str:
        return f"{self.base}_d{width}"

    def physical(self, width: int, version: int = 1) -> str:
        return f"{self.base}_d{width}_v{version}"


def attr_type_of(value: Any) -> str | None:
    """Milvus scalar type for a JSON attr value; None for values we cannot store."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int64" if -(2**63) <= value < 2**63 else None
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "varchar"
    return None


def check_attr_value(name: str, value: Any, declared: str) -> str | None:
    """None if value fits the declared type, else the reason (for the dead-letter file)."""
    if value is None:
        return None
    actual = attr_type_of(value)
    if actual is None:
        return f"unsupported value type {type(value).__name__} (string, integer, float, bool)"
    if actual == declared or (declared == "double" and actual == "int64"):
        if declared == "varchar" and len(value.encode()) > STRING_MAX:
            return f"string longer than {STRING_MAX} bytes"
        return None
    return f"type {actual} conflicts with the collection's {declared} field"


def attr_name_problem(name: str) -> str | None:
    """Why `name` cannot be an attr field, or None (declared and inferred attrs alike)."""
    if name in RESERVED:
        return f"reserved for mmsearch's own fields {sorted(RESERVED)}"
    if not NAME_RE.match(name):
        return ("not a valid field name: a letter or _ then letters, digits or _, "
                "at most 128 characters")
    return None


def parse_declared_attrs(raw: Mapping[str, Any]) -> dict[str, str]:
    attrs = {}
    for name, kind in raw.items():
        problem = attr_name_problem(str(name))
        if problem:
            raise ConfigError(f"attrs.{name}", problem)
        if str(kind).lower() not in ATTR_TYPES:
            raise ConfigError(f"attrs.{name}", f"type must be one of {ATTR_TYPES}")
        attrs[str(name)] = str(kind).lower()
    return attrs


ZERO_VALUES = {"varchar": "", "int64": 0, "double": 0.0, "bool": False}


def server_supports_nullable(version: str) -> bool:
    """Nullable scalar fields arrived in Milvus 2.5; 2.3/2.4 silently ignore the flag and
    then reject nulls. Milvus Lite 3 supports them. Unknown strings are assumed modern."""
    match = re.search(r"v?(\d+)\.(\d+)", version)
    if version.startswith("milvus_lite") or match is None:  # Milvus Lite 3: supported
        return True
    return (int(match.group(1)), int(match.group(2))) >= (2, 5)


def build_schema(layout: Layout, width: int, attrs: Mapping[str, str],
                 nullable: bool = True) -> Any:
    from pymilvus import DataType, MilvusClient

    kinds = {"varchar": DataType.VARCHAR, "int64": DataType.INT64, "double": DataType.DOUBLE,
             "bool": DataType.BOOL}
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False,
                                        description=f"mmsearch {layout.base} width {width}")
    schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=width)
    schema.add_field("label", DataType.VARCHAR, max_length=LABEL_MAX, nullable=nullable)
    schema.add_field("content_hash", DataType.VARCHAR, max_length=HASH_LEN)
    for name, kind in sorted(attrs.items()):
        extra = {"max_length": STRING_MAX} if kind == "varchar" else {}
        schema.add_field(name, kinds[kind], nullable=nullable, **extra)
    if width == layout.full_width:
        schema.add_field("local", DataType.VARCHAR, max_length=LOCAL_MAX)
    return schema


def describe_fields(description: Mapping[str, Any]) -> dict[str, str]:
    """{field: 'type[/dim]'} from describe_collection, for comparing schemas."""
    out = {}
    for item in description.get("fields", []):
        kind = getattr(item["type"], "name", str(item["type"])).lower()
        dim = item.get("params", {}).get("dim")
        out[item["name"]] = f"{kind}/{dim}" if dim else kind
    return out


def schema_difference(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    problems = []
    for name, kind in expected.items():
        if name not in actual:
            problems.append(f"field '{name}' ({kind}) is missing")
        elif actual[name] != kind:
            problems.append(f"field '{name}' is {actual[name]}, expected {kind}")
    problems += [f"unexpected field '{name}' ({kind})" for name, kind in actual.items()
                 if name not in expected]
    return problems


def attrs_from_fields(fields: Mapping[str, str]) -> dict[str, str]:
    names = {"varchar": "varchar", "int64": "int64", "double": "double", "bool": "bool"}
    return {n: names[k] for n, k in fields.items() if n not in RESERVED and k in names}
