"""Schema rules, attr typing, index specs and the shard hash (no Milvus needed)."""

from __future__ import annotations

import hashlib

import pytest

from mmsearch.encoders.errors import ConfigError
from mmsearch.plugin.index_spec import default_spec, specs_for
from mmsearch.plugin.schema import (
    Layout,
    check_attr_value,
    parse_declared_attrs,
    schema_difference,
    server_supports_nullable,
)
from mmsearch.plugin.sources import RawRecord
from mmsearch.plugin.validate import Candidate
from mmsearch.plugin.worker import Shard, infer_attrs


def test_nullable_support_by_server_version() -> None:
    assert server_supports_nullable("milvus_lite-3.2.2")
    assert server_supports_nullable("v2.5.0") and server_supports_nullable("v2.6.4")
    assert not server_supports_nullable("v2.3.5-lite")  # the embedded 2.3.5 server
    assert not server_supports_nullable("v2.4.15")


def test_layout_names_and_validation() -> None:
    layout = Layout("shop", (64, 512))
    assert layout.alias(64) == "shop_d64" and layout.physical(512, 3) == "shop_d512_v3"
    with pytest.raises(ConfigError, match="base"):
        Layout("bad-name!", (64,))


@pytest.mark.parametrize(("value", "declared", "ok"), [
    ("x", "varchar", True), (3, "int64", True), (3, "double", True), (2.5, "double", True),
    (True, "bool", True), (None, "int64", True), ("3", "int64", False), (2.5, "int64", False),
    (True, "int64", False), ({"a": 1}, "varchar", False), ([1], "int64", False),
    (2**70, "int64", False), ("x" * 5000, "varchar", False),
])
def test_attr_values_against_declared_types(value: object, declared: str, ok: bool) -> None:
    assert (check_attr_value("a", value, declared) is None) == ok


def test_declared_attrs_are_validated() -> None:
    assert parse_declared_attrs({"category": "VARCHAR"}) == {"category": "varchar"}
    with pytest.raises(ConfigError, match="attrs.vector"):
        parse_declared_attrs({"vector": "varchar"})
    with pytest.raises(ConfigError, match="attrs.x"):
        parse_declared_attrs({"x": "json"})


def test_inferred_types_take_the_first_value_seen() -> None:
    items = [Candidate(1, "a", None, "t", None, {"n": 1, "s": "x"}, "h"),
             Candidate(2, "b", None, "t", None, {"n": "one", "f": 0.5, "b": False}, "h")]
    assert infer_attrs(items) == {"n": "int64", "s": "varchar", "f": "double", "b": "bool"}


def test_schema_difference_names_each_field() -> None:
    problems = schema_difference({"id": "varchar", "vector": "float_vector/64"},
                                 {"id": "varchar", "vector": "float_vector/32", "x": "int64"})
    assert problems == ["field 'vector' is float_vector/32, expected float_vector/64",
                        "unexpected field 'x' (int64)"]


def test_index_specs_from_config() -> None:
    specs = specs_for((64, 512), {64: {"index_type": "ivf_flat", "params": {"nlist": 64}}})
    assert specs[64].index_type == "IVF_FLAT" and specs[512] == default_spec(512, 512)
    with pytest.raises(ConfigError, match="index.128"):
        specs_for((64, 512), {"128": {}})
    with pytest.raises(ConfigError, match="index.64.metric_type"):
        specs_for((64, 512), {"64": {"metric_type": "hamming"}})


def test_shard_is_a_stable_sha1_partition() -> None:
    ids = [f"sku-{i}" for i in range(300)]
    records = [RawRecord(i, {"id": x}) for i, x in enumerate(ids)]
    owners = [[Shard(i, 4).owns(r) for i in range(4)] for r in records]
    assert all(sum(row) == 1 for row in owners)
    for record_id, row in zip(ids, owners, strict=True):
        assert row.index(True) == int(hashlib.sha1(record_id.encode()).hexdigest(), 16) % 4
    assert Shard(0, 4).owns(RawRecord(1, None, "bad json"))  # unparsable: shard 0 only
    assert not Shard(1, 4).owns(RawRecord(1, None, "bad json"))
    with pytest.raises(ValueError, match="i/N"):
        Shard.parse("3")
    with pytest.raises(ValueError, match="0 <= i < N"):
        Shard.parse("4/4")
