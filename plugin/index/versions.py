"""Physical versions behind a width alias: `<base>_d<w>` -> `<base>_d<w>_v<n>`.

The worker and the sidecar address collections only through the alias, so moving it is
the whole swap; the physical name is looked up here per call and never cached.
"""

from __future__ import annotations

import re
from typing import Any

from mmsearch.encoders.errors import MmsearchError
from mmsearch.plugin.schema import Layout


class VersionError(MmsearchError):
    """A version operation that cannot be done (no alias, no older version, ...)."""


def versions(client: Any, layout: Layout, width: int) -> list[int]:
    """Every physical version of one width that exists, ascending."""
    pattern = re.compile(rf"^{re.escape(layout.alias(width))}_v(\d+)$")
    found = (pattern.match(name) for name in client.list_collections())
    return sorted(int(match.group(1)) for match in found if match)


def current_version(client: Any, layout: Layout, width: int) -> int:
    """The version the alias points at now."""
    alias = layout.alias(width)
    try:
        target = client.describe_alias(alias)["collection_name"]
    except Exception as exc:  # noqa: BLE001 - pymilvus raises a bare MilvusException for a missing alias
        raise VersionError(f"alias {alias} does not exist: ingest into base "
                           f"{layout.base!r} first ({exc})") from None
    match = re.match(rf"^{re.escape(alias)}_v(\d+)$", target)
    if match is None:
        raise VersionError(f"alias {alias} points at {target}, which is not a "
                           f"{alias}_v<n> version; mmsearch will not move it")
    return int(match.group(1))


def move_alias(client: Any, layout: Layout, width: int, version: int) -> None:
    client.alter_alias(layout.physical(width, version), layout.alias(width))


def previous_version(client: Any, layout: Layout, width: int) -> int:
    """The newest kept version older than the current one (the rollback target)."""
    now = current_version(client, layout, width)
    older = [v for v in versions(client, layout, width) if v < now]
    if not older:
        raise VersionError(f"{layout.alias(width)} is at v{now} and no older version is "
                           "kept (rebuild keeps it unless --drop-old)")
    return older[-1]
