"""Memory / disk estimates per index type, from the formulas Milvus documents for sizing.

Approximations for planning (vectors are float32, `n` rows, `d` dims): raw vectors are
n*d*4 bytes; IVF adds nlist centroids; SQ8 stores one byte per dim; PQ stores m codes of
nbits; HNSW adds about M*2 links of 4 bytes per row on the base layer (plus ~1/M upper
layers); DISKANN keeps PQ codes in memory and the graph + raw vectors on disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def estimate_bytes(index_type: str, params: Mapping[str, Any], rows: int, dim: int
                   ) -> dict[str, int]:
    """{'memory': bytes, 'disk': bytes} for one index over `rows` vectors of `dim`."""
    raw = rows * dim * 4
    nlist = int(params.get("nlist", 128))
    centroids = nlist * dim * 4
    kind = index_type.upper()
    if kind in ("FLAT", "AUTOINDEX"):
        memory = raw
    elif kind in ("IVF_FLAT", "SCANN"):
        memory = raw + centroids
    elif kind == "IVF_SQ8":
        memory = rows * dim + centroids
    elif kind == "IVF_PQ":
        m = int(params.get("m", max(1, dim // 8)))
        nbits = int(params.get("nbits", 8))
        memory = rows * m * nbits // 8 + centroids + m * (2**nbits) * (dim // m) * 4
    elif kind in ("HNSW", "HNSW_SQ"):
        links = int(params.get("M", 16)) * 2 * 4 * 1.1
        per_row = (dim if kind == "HNSW_SQ" else dim * 4) + links
        memory = int(rows * per_row)
    elif kind == "DISKANN":
        return {"memory": rows * max(1, dim // 4), "disk": int(raw * 1.5)}
    else:
        raise ValueError(f"no size model for index type {index_type}")
    return {"memory": int(memory), "disk": int(memory)}


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{int(value)} B"
        value /= 1024
    return f"{value:.1f} TiB"
