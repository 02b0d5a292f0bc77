"""Candidate index configs for `mmsearch index bench`: defaults sized to the collection, or a
YAML/JSON file of `[{index_type, params, search: [{...}, ...]}, ...]`."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsearch.encoders.errors import ConfigError
from mmsearch.plugin.index_spec import INDEX_TYPES


@dataclass(frozen=True)
class CandidateConfig:
    index_type: str
    params: dict[str, Any] = field(default_factory=dict)
    search: tuple[dict[str, Any], ...] = ({},)

    def label(self) -> str:
        build = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.index_type}({build})" if build else self.index_type


def default_configs(rows: int, dim: int, k: int) -> list[CandidateConfig]:
    """FLAT as the reference, three HNSW graphs, IVF_FLAT / IVF_SQ8 / IVF_PQ / SCANN with
    nlist ~ 4*sqrt(rows) (a power of two), each with a sweep of its search knob."""
    nlist = int(min(4096, max(16, 2 ** round(math.log2(4 * math.sqrt(max(rows, 1)))))))
    probes = tuple({"nprobe": p} for p in (1, 4, 8, 16, 32, 64, 128) if p <= nlist)
    efs = tuple({"ef": ef} for ef in sorted({k, 2 * k, 4 * k}))
    m = next(m for m in (dim // 8, dim // 4, dim // 2, dim) if m >= 1 and dim % m == 0)
    return [
        CandidateConfig("FLAT"),
        *(CandidateConfig("HNSW", {"M": m_, "efConstruction": 200}, efs) for m_ in (8, 16, 32)),
        CandidateConfig("IVF_FLAT", {"nlist": nlist}, probes),
        CandidateConfig("IVF_SQ8", {"nlist": nlist}, probes),
        CandidateConfig("IVF_PQ", {"nlist": nlist, "m": m, "nbits": 8}, probes),
        CandidateConfig("SCANN", {"nlist": nlist, "with_raw_data": True},
                        tuple({**p, "reorder_k": max(k, 200)} for p in probes)),
    ]


def load_configs(path: Path) -> list[CandidateConfig]:
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        raw = yaml.safe_load(text)
    else:
        raw = json.loads(text)
    if not isinstance(raw, list) or not raw:
        raise ConfigError(str(path), "must be a non-empty list of index configs")
    return [_parse(f"{path}[{i}]", item) for i, item in enumerate(raw)]


def _parse(key: str, item: Any) -> CandidateConfig:
    if not isinstance(item, Mapping):
        raise ConfigError(key, "must be a mapping with index_type, params, search")
    unknown = set(item) - {"index_type", "params", "search"}
    if unknown:
        raise ConfigError(f"{key}.{sorted(unknown)[0]}", "unknown key")
    kind = str(item.get("index_type", "")).upper()
    if kind not in INDEX_TYPES:
        raise ConfigError(f"{key}.index_type", f"one of {INDEX_TYPES}, got {kind!r}")
    params = item.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{key}.params", "must be a mapping")
    search = item.get("search", [{}])
    if not isinstance(search, list) or not all(isinstance(s, Mapping) for s in search):
        raise ConfigError(f"{key}.search", "must be a list of search-param mappings")
    return CandidateConfig(kind, dict(params), tuple(dict(s) for s in search) or ({},))
