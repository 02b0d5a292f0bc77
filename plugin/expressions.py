"""Milvus filter expressions built from user values, and the rule for what an id may hold.

Every expression that embeds an id goes through `ids_expression`: Milvus string literals
are double-quoted with backslash escapes, and the two grammars differ past that (Milvus Lite
rejects every `\\u` escape that `json.dumps` writes; the 2.3 server accepts them), so the
only escapes written are `\\\\` and `\\"` and every other character goes in as itself. A
newline cannot (Lite reads it as an unterminated literal), so ids hold no control
characters: `id_problem` is the one check, run at every edge that takes an id.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from mmsearch.plugin.schema import ID_MAX

CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def id_problem(value: object) -> str | None:
    """Why `value` cannot be an item id, or None: a non-empty string of at most ID_MAX
    UTF-8 bytes with no control characters (U+0000-U+001F, U+007F)."""
    if not isinstance(value, str) or not value.strip():
        return "missing or not a non-empty string"
    if len(value.encode("utf-8", "surrogatepass")) > ID_MAX:
        return f"longer than {ID_MAX} bytes"
    found = CONTROL.search(value)
    if found:
        return (f"contains the control character U+{ord(found.group()):04X} at "
                f"{found.start()}: ids hold printable characters only")
    return None


def string_literal(value: str) -> str:
    """`value` as a Milvus expression string literal (both grammars)."""
    if CONTROL.search(value):
        raise ValueError("control characters cannot appear in a Milvus string literal")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def ids_expression(ids: Iterable[str]) -> str:
    """`id in [...]` for these ids."""
    return "id in [" + ", ".join(string_literal(i) for i in ids) + "]"
