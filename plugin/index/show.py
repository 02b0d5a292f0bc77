"""`mmsearch index show`: what each width collection of a base is and costs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mmsearch.plugin.collections import count, describe_or_none
from mmsearch.plugin.index.estimate import estimate_bytes, human
from mmsearch.plugin.index.versions import current_version, versions
from mmsearch.plugin.index_spec import INDEX_TYPES, IndexSpec
from mmsearch.plugin.schema import INDEX_PROPERTY, Layout

# build params a server may report in describe_index, by index type
BUILD_KEYS = ("M", "efConstruction", "nlist", "m", "nbits", "with_raw_data", "sq_type")
ESTIMATED_TYPES = tuple(t for t in INDEX_TYPES if t != "AUTOINDEX")


def live_spec(index: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The live index: type and metric from the server; build params from the server where
    it reports them, else from the spec recorded when the version was built."""
    params = {k: index[k] for k in BUILD_KEYS if index.get(k) is not None}
    if isinstance(index.get("params"), Mapping):
        params.update(index["params"])
    if not params and recorded.get("index_type") == index.get("index_type"):
        params = dict(recorded.get("params", {}))
    return {"index_type": index.get("index_type"), "metric_type": index.get("metric_type"),
            "params": params, "search_params": dict(recorded.get("search_params", {})),
            "state": index.get("state")}


def differences(live: Mapping[str, Any], configured: IndexSpec) -> list[str]:
    wanted = configured.to_json()
    out = [f"{key}: {live.get(key)} (configured {wanted[key]})"
           for key in ("index_type", "metric_type") if live.get(key) != wanted[key]]
    for key, value in wanted["params"].items():
        if str(live["params"].get(key)) != str(value):
            out.append(f"params.{key}: {live['params'].get(key)} (configured {value})")
    return out


def show_width(client: Any, layout: Layout, width: int, configured: IndexSpec
               ) -> dict[str, Any]:
    alias = layout.alias(width)
    description = describe_or_none(client, alias)
    if description is None:
        return {"width": width, "alias": alias, "exists": False}
    recorded = json.loads(description.get("properties", {}).get(INDEX_PROPERTY) or "{}")
    live = live_spec(client.describe_index(alias, index_name="vector") or {}, recorded)
    rows = count(client, alias)
    return {
        "width": width, "alias": alias, "exists": True,
        "collection": description["collection_name"],
        "version": current_version(client, layout, width),
        "versions": versions(client, layout, width),
        "entities": rows, "index": live,
        "estimate": estimate_bytes(str(live["index_type"]), live["params"], rows, width),
        "estimates_by_type": {kind: estimate_bytes(kind, {}, rows, width)
                              for kind in ESTIMATED_TYPES},
        "configured": configured.to_json(),
        "differs_from_config": differences(live, configured),
    }


def show_table(report: list[dict[str, Any]]) -> str:
    lines = ["width | alias -> collection (kept versions) | index | metric | build params | "
             "search params | entities | memory est. | differs from config",
             "---|---|---|---|---|---|---|---|---"]
    for item in report:
        if not item["exists"]:
            lines.append(f"{item['width']} | {item['alias']} (missing) | - | - | - | - | - | - "
                         "| -")
            continue
        index = item["index"]
        kept = ",".join(f"v{v}" for v in item["versions"])
        lines.append(" | ".join(str(x) for x in (
            item["width"], f"{item['alias']} -> {item['collection']} ({kept})",
            index["index_type"], index["metric_type"], _params(index["params"]),
            _params(index["search_params"]), item["entities"],
            human(item["estimate"]["memory"]),
            "; ".join(item["differs_from_config"]) or "-")))
    present = [i for i in report if i["exists"]]
    if present:
        lines += ["", "memory estimate by index type (default params):",
                  "width | " + " | ".join(ESTIMATED_TYPES),
                  "---|" + "---|" * len(ESTIMATED_TYPES)]
        lines += [f"{i['width']} | " + " | ".join(human(i["estimates_by_type"][t]["memory"])
                                                  for t in ESTIMATED_TYPES) for i in present]
    return "\n".join(lines)


def _params(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
