"""Create, verify, describe and drop the width collections of a base.

Collections are addressed through their alias only; the physical name is looked up per
call and never cached, so a rebuild can swap the alias under a running worker or sidecar.
An existing collection with another schema, dimension or model is never altered: the
caller gets an error that says what differs.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Mapping
from typing import Any

from mmsearch.encoders.errors import MmsearchError
from mmsearch.encoders.manifest import require_same_model
from mmsearch.plugin.index_spec import IndexSpec
from mmsearch.plugin.schema import (
    INDEX_PROPERTY,
    MODEL_ID_PROPERTY,
    UUID_PROPERTY,
    WIDTH_PROPERTY,
    Layout,
    attrs_from_fields,
    build_schema,
    describe_fields,
    schema_difference,
    server_supports_nullable,
)


class SchemaMismatchError(MmsearchError):
    """An existing collection differs from what this base/config needs."""


def describe_or_none(client: Any, name: str) -> dict[str, Any] | None:
    if not client.has_collection(name):
        return None
    return client.describe_collection(name)


def existing_attrs(client: Any, layout: Layout) -> dict[str, str] | None:
    """The attr fields fixed by the full-width collection, or None if it does not exist."""
    description = describe_or_none(client, layout.alias(layout.full_width))
    return None if description is None else attrs_from_fields(describe_fields(description))


def expected_fields(layout: Layout, width: int, attrs: Mapping[str, str]) -> dict[str, str]:
    return describe_fields({"fields": build_schema(layout, width, attrs).to_dict()["fields"]})


def _index_params(client: Any, spec: IndexSpec) -> Any:
    params = client.prepare_index_params()
    params.add_index(field_name="vector", index_name="vector", index_type=spec.index_type,
                     metric_type=spec.metric_type, params=dict(spec.params))
    return params


def _verify(description: Mapping[str, Any], layout: Layout, width: int,
            attrs: Mapping[str, str], model_id: str) -> None:
    alias = layout.alias(width)
    problems = schema_difference(expected_fields(layout, width, attrs),
                                 describe_fields(description))
    if problems:
        raise SchemaMismatchError(
            f"collection {alias} ({description['collection_name']}) exists with another "
            f"schema: {'; '.join(problems)}. mmsearch never alters existing data: use another "
            f"--base, or drop it with `mmsearch collections drop --base {layout.base}`."
        )
    require_same_model(description.get("properties", {}).get(MODEL_ID_PROPERTY), model_id,
                       f"collection {alias}")


def ensure_collections(client: Any, layout: Layout, attrs: Mapping[str, str], model_id: str,
                       specs: Mapping[int, IndexSpec]) -> list[str]:
    """Create what is missing, verify what exists. Returns the aliases created."""
    created = []
    nullable = server_supports_nullable(client.get_server_version())
    for width in layout.widths:
        alias = layout.alias(width)
        description = describe_or_none(client, alias)
        if description is not None:
            _verify(description, layout, width, attrs, model_id)
            ensure_loaded(client, alias)
            continue
        physical = layout.physical(width)
        if not client.has_collection(physical):
            create_version(client, layout, width, 1, attrs, model_id, specs[width], nullable)
            client.load_collection(physical)
        client.create_alias(physical, alias)
        created.append(alias)
    return created


def create_version(client: Any, layout: Layout, width: int, version: int,
                   attrs: Mapping[str, str], model_id: str, spec: IndexSpec, nullable: bool,
                   properties: Mapping[str, str] | None = None) -> str:
    """A new, empty, indexed physical collection `<base>_d<w>_v<version>` (not loaded, no
    alias): the one place the collection properties are set."""
    physical = layout.physical(width, version)
    client.create_collection(
        physical, schema=build_schema(layout, width, attrs, nullable),
        properties={MODEL_ID_PROPERTY: model_id, WIDTH_PROPERTY: str(width),
                    UUID_PROPERTY: uuid.uuid4().hex,
                    INDEX_PROPERTY: json.dumps(spec.to_json()), **(properties or {})})
    # an empty collection's index is ready at once, so no wait: pymilvus's wait starts
    # with AllocTimestamp, which Milvus Lite lacks (an ERROR traceback each)
    client.create_index(physical, _index_params(client, spec), sync=False)
    return physical


def collection_uuids(client: Any, layout: Layout) -> dict[str, str | None]:
    """{alias: the collection's UUID_PROPERTY} per width; None where the alias does not
    exist, "" for a collection created before collections carried one."""
    out: dict[str, str | None] = {}
    for width in layout.widths:
        description = describe_or_none(client, layout.alias(width))
        out[layout.alias(width)] = (None if description is None else
                                    description.get("properties", {}).get(UUID_PROPERTY, ""))
    return out


def ensure_loaded(client: Any, name: str, timeout: float | None = None) -> None:
    """Load a released collection (a DBA's release, or a process killed while creating it):
    queries and searches need it loaded."""
    state = client.get_load_state(name, timeout=timeout).get("state")
    if "Loaded" not in str(state):
        client.load_collection(name, timeout=timeout)


def count(client: Any, name: str) -> int:
    rows = client.query(name, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(rows[0]["count(*)"])


def describe_base(client: Any, layout: Layout) -> list[dict[str, Any]]:
    out = []
    for width in layout.widths:
        alias = layout.alias(width)
        description = describe_or_none(client, alias)
        if description is None:
            out.append({"width": width, "alias": alias, "exists": False})
            continue
        index = client.describe_index(alias, index_name="vector") or {}
        out.append({
            "width": width, "alias": alias, "exists": True,
            "collection": description["collection_name"], "entities": count(client, alias),
            "model_id": description.get("properties", {}).get(MODEL_ID_PROPERTY),
            "fields": describe_fields(description),
            "index": {k: index.get(k) for k in ("index_type", "metric_type", "M",
                                                "efConstruction", "nlist", "state")
                      if index.get(k) is not None},
        })
    return out


def drop_base(client: Any, layout: Layout) -> list[str]:
    """Drop every alias and every physical version of the base's width collections."""
    dropped = []
    prefixes = tuple(f"{layout.base}_d{w}_v" for w in layout.widths)
    for width in layout.widths:
        alias = layout.alias(width)
        with contextlib.suppress(Exception):  # no alias is fine when dropping
            client.drop_alias(alias)
    for name in client.list_collections():
        if name.startswith(prefixes) and name.rsplit("_v", 1)[-1].isdigit():
            client.drop_collection(name)
            dropped.append(name)
    return dropped
