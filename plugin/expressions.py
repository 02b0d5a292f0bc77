"""Milvus filter expressions built from user values, and the rule for what an id may hold.

Every expression that embeds an id goes through `ids_expression`: Milvus string literals
are double-quoted with backslash escapes, and the two grammars differ past that (Milvus Lite
rejects every `\\u` escape that `json.dumps` writes; the 2.3 server accepts them), so the
only escapes written are `\\\\` and `\\"` and every other character goes in as itself. A
newline cannot (Lite reads it as an unterminated literal), so ids hold no control
characters: `id_problem` (the item format's id rule) runs at every edge that takes an id.
"""

from __future__ import annotations

from collections.abc import Iterable

from mmsearch.encoders.data.records import CONTROL_CHARS, id_problem

__all__ = ["id_problem", "ids_expression", "string_literal"]


def string_literal(value: str) -> str:
    """`value` as a Milvus expression string literal (both grammars)."""
    if CONTROL_CHARS.search(value):
        raise ValueError("control characters cannot appear in a Milvus string literal")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ids_expression(ids: Iterable[str]) -> str:
    """`id in [...]` for these ids."""
    return "id in [" + ", ".join(string_literal(i) for i in ids) + "]"
