"""The pure parts of `mmsearch index`: config files, size estimates, exact top-k, the Pareto
front and the recommendation rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders.errors import ConfigError
from mmsearch.plugin.index.configs import default_configs, load_configs
from mmsearch.plugin.index.estimate import estimate_bytes
from mmsearch.plugin.index.exact import exact_top_k, recall_at
from mmsearch.plugin.index.report import config_block, pick_cheapest
from mmsearch.plugin.index.sweep import mark_pareto
from mmsearch.plugin.index_spec import specs_for


def test_default_configs_are_sized_to_the_data() -> None:
    configs = default_configs(rows=1_000_000, dim=64, k=100)
    kinds = [c.index_type for c in configs]
    assert kinds[0] == "FLAT" and {"HNSW", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "SCANN"} <= set(kinds)
    ivf = next(c for c in configs if c.index_type == "IVF_FLAT")
    assert ivf.params["nlist"] == 4096  # 4*sqrt(1M) = 4000 -> 4096
    assert max(s["nprobe"] for s in ivf.search) <= ivf.params["nlist"]
    pq = next(c for c in configs if c.index_type == "IVF_PQ")
    assert 64 % pq.params["m"] == 0
    hnsw = next(c for c in configs if c.index_type == "HNSW")
    assert min(s["ef"] for s in hnsw.search) >= 100  # Milvus refuses ef < limit


def test_config_file_errors_name_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"index_type": "HNSW", "params": {"M": 8}},
                                {"index_type": "NOPE"}]))
    with pytest.raises(ConfigError, match=r"c.json\[1\].index_type"):
        load_configs(path)
    path.write_text(json.dumps([{"index_type": "FLAT", "serch": []}]))
    with pytest.raises(ConfigError, match="serch"):
        load_configs(path)
    path.write_text(json.dumps([{"index_type": "ivf_flat", "params": {"nlist": 8},
                                 "search": [{"nprobe": 2}]}]))
    assert load_configs(path)[0].index_type == "IVF_FLAT"


def test_estimates_order_as_the_index_types_do() -> None:
    size = {kind: estimate_bytes(kind, {"nlist": 1024, "M": 16}, 1_000_000, 512)["memory"]
            for kind in ("FLAT", "IVF_FLAT", "IVF_SQ8", "IVF_PQ", "HNSW")}
    assert size["FLAT"] == 1_000_000 * 512 * 4
    assert size["IVF_PQ"] < size["IVF_SQ8"] < size["FLAT"] < size["IVF_FLAT"] < size["HNSW"]
    with pytest.raises(ValueError, match="NOPE"):
        estimate_bytes("NOPE", {}, 1, 1)


def test_exact_top_k_excludes_self_and_recall_counts_overlap() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((50, 8)).astype(np.float32)
    top = exact_top_k(base, base[:5], 3, exclude=np.arange(5))
    assert all(i not in row for i, row in enumerate(top.tolist()))
    scores = base[:5] @ base.T
    for i, row in enumerate(top):
        assert scores[i, row[0]] == max(scores[i, j] for j in range(50) if j != i)
    assert recall_at([[1, 2, 9]], [[1, 2, 3]], 3) == pytest.approx(2 / 3)


def point(r10: float, r100: float, qps: float, memory: int = 1, **extra: object) -> dict:
    return {"recall@10": r10, "recall@100": r100, "qps_batch1": qps, "memory": memory,
            "index_type": "HNSW", "params": {"M": 8}, "search": {"ef": 100}, **extra}


def test_pareto_front_and_cheapest_pick() -> None:
    points = [point(0.99, 0.98, 100), point(0.90, 0.85, 400), point(0.89, 0.84, 300),
              point(0.95, 0.97, 250)]
    mark_pareto(points)
    assert [p["pareto"] for p in points] == [True, True, False, True]
    payload = {"configs": [{"points": points}]}
    assert pick_cheapest(payload, 100, 0.95) is points[3]  # fastest of those meeting 0.95
    assert pick_cheapest(payload, 10, 0.999) is None
    block = config_block({64: points[3]}, "IP")
    import yaml

    section = yaml.safe_load(block)["index"]
    assert specs_for((64, 512), section)[64].search_params == {"ef": 100}


def test_index_command_flags_are_checked_at_the_edge(capsys: pytest.CaptureFixture) -> None:
    from mmsearch.app.cli import main

    assert main(["index", "recommend", "--target", "1.5"]) == 1
    assert "--target" in capsys.readouterr().err
    assert main(["index", "funnel", "--queries", "0"]) == 1
    assert "--queries" in capsys.readouterr().err
