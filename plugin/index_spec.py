"""Index spec per width: index type, metric, build params, search params.

Defaults: HNSW everywhere (vectors are unit length, so IP = cosine). Small widths get a
small graph; the full width, searched only by the direct baseline and fetched by id in the
funnel, gets a wider one. `mmsearch index` measures and replaces these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mmsearch.encoders.errors import ConfigError

INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW", "HNSW_SQ", "SCANN", "DISKANN",
               "AUTOINDEX")
METRICS = ("IP", "COSINE", "L2")


@dataclass(frozen=True)
class IndexSpec:
    index_type: str = "HNSW"
    metric_type: str = "IP"
    params: dict[str, Any] = field(default_factory=dict)
    search_params: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"index_type": self.index_type, "metric_type": self.metric_type,
                "params": dict(self.params), "search_params": dict(self.search_params)}


def search_params_for(spec: IndexSpec, limit: int) -> dict[str, Any]:
    """The search_params argument for a search of `limit` hits on an index built by `spec`."""
    params = dict(spec.search_params)
    if spec.index_type.startswith("HNSW"):
        params["ef"] = max(int(params.get("ef", 64)), limit)  # HNSW needs ef >= limit
    return {"metric_type": spec.metric_type, "params": params}


def default_spec(width: int, width_max: int) -> IndexSpec:
    if width >= width_max or width > 128:
        return IndexSpec("HNSW", "IP", {"M": 32, "efConstruction": 200}, {"ef": 128})
    return IndexSpec("HNSW", "IP", {"M": 16, "efConstruction": 200}, {"ef": 64})


def parse_spec(key: str, raw: Mapping[str, Any]) -> IndexSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(key, "must be a mapping with index_type, metric_type, params")
    unknown = set(raw) - {"index_type", "metric_type", "params", "search_params"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    index_type = str(raw.get("index_type", "HNSW")).upper()
    if index_type not in INDEX_TYPES:
        raise ConfigError(f"{key}.index_type", f"one of {INDEX_TYPES}, got {index_type!r}")
    metric = str(raw.get("metric_type", "IP")).upper()
    if metric not in METRICS:
        raise ConfigError(f"{key}.metric_type", f"one of {METRICS}, got {metric!r}")
    for name in ("params", "search_params"):
        if not isinstance(raw.get(name, {}), Mapping):
            raise ConfigError(f"{key}.{name}", "must be a mapping")
    return IndexSpec(index_type, metric, dict(raw.get("params", {})),
                     dict(raw.get("search_params", {})))


def specs_for(widths: tuple[int, ...], configured: Mapping[Any, Any]) -> dict[int, IndexSpec]:
    """Config `index: {64: {...}}` over the defaults; keys must be configured widths."""
    by_width = {str(key): value for key, value in configured.items()}
    for key in by_width:
        if not key.isdigit() or int(key) not in widths:
            raise ConfigError(f"index.{key}", f"not one of the configured widths {list(widths)}")
    return {w: parse_spec(f"index.{w}", by_width[str(w)]) if str(w) in by_width
            else default_spec(w, widths[-1]) for w in widths}
