"""The correction weight: a correction that lowers rerank below refine on a check is
turned off; a harmless one is kept; the chosen weight survives export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mmsearch.rerank.scorer.export import export_scorer, load_checkpoint, save_checkpoint
from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig
from mmsearch.rerank.scorer.runtime import OnnxScorer
from mmsearch.rerank.train.gate import WEIGHTS, calibrate, choose_correction_weight
from mmsearch.rerank.train.heldout import rerank_check
from mmsearch.rerank.train.lists import Side, mine

CONFIG = ScorerConfig(width=16, cells=3, local_dim=4, d_model=16, heads=2, layers=1)


def _unit(array: np.ndarray) -> np.ndarray:
    return (array / np.linalg.norm(array, axis=-1, keepdims=True)).astype(np.float32)


def _check(seed: int = 0) -> tuple[Side, Side, object]:
    """Queries whose own identity is always the nearest gallery item: refine is perfect,
    so any correction can only lower it."""
    rng = np.random.default_rng(seed)
    gallery = _unit(rng.standard_normal((40, CONFIG.width)))
    queries = _unit(gallery[:20] + 0.05 * rng.standard_normal((20, CONFIG.width)))
    local = _unit(rng.standard_normal((40, CONFIG.cells, CONFIG.local_dim)))
    labels = np.array([f"id{i}" for i in range(40)])
    q, g = Side(queries, local[:20], labels[:20]), Side(gallery, local, labels)
    return q, g, mine(q, g, 8, force_positive=False)


def _scrambling_scorer() -> ListwiseScorer:
    torch.manual_seed(0)
    model = ListwiseScorer(CONFIG)
    with torch.no_grad():  # a large random correction: it reorders the list
        model.correction_head.weight.normal_(0, 50.0)
    return model.eval()


def test_a_correction_that_lowers_a_check_is_turned_off() -> None:
    model = _scrambling_scorer()
    record = choose_correction_weight(model, {"perfect refine": _check()}, chunk=4)
    full = next(t for t in record["tried"] if t["weight"] == 1.0)
    assert not full["never_lower"]  # the scrambling correction really lowers R@1
    assert record["chosen"] == 0.0 and model.config.correction_weight == 0.0
    off = record["tried"][-1]["checks"]["perfect refine"]
    assert off["rerank_recall@1"] == off["refine_recall@1"] == 1.0
    assert [t["weight"] for t in record["tried"]] == list(WEIGHTS)


def test_a_harmless_correction_keeps_its_full_weight() -> None:
    model = ListwiseScorer(CONFIG).eval()  # untrained: the correction is zero
    record = choose_correction_weight(model, {"perfect refine": _check()}, chunk=4)
    assert record["chosen"] == 1.0
    assert all(t["never_lower"] for t in record["tried"])


def test_the_chosen_weight_survives_export(tmp_path: Path) -> None:
    model = _scrambling_scorer()
    choose_correction_weight(model, {"perfect refine": _check()}, chunk=4)
    save_checkpoint(model, tmp_path / "ckpt", {})
    assert load_checkpoint(tmp_path / "ckpt")[0].config.correction_weight == 0.0
    scorer = OnnxScorer(export_scorer(tmp_path / "ckpt", tmp_path / "onnx"), chunk_size=4)
    queries, gallery, lists = _check(1)
    for row in range(5):
        candidates = lists.candidates[row]
        scores = scorer.rerank(queries.vectors[lists.query[row]], queries.local[row],
                               gallery.vectors[candidates], gallery.local[candidates],
                               np.ones(len(candidates), bool), lists.scores[row])
        assert (np.argsort(-scores, kind="stable") == np.arange(len(candidates))).all()


def test_platt_scaling_lowers_the_checks_loss_and_keeps_the_order() -> None:
    model = _scrambling_scorer()
    checks = {"perfect refine": _check()}
    choose_correction_weight(model, checks, chunk=4)
    before = rerank_check(model, checks["perfect refine"], 4)
    record = calibrate(model, checks, chunk=4)
    assert record["bce_after"] < record["bce_before"]
    assert record["scale"] > 0 and model.config.calibration_scale == record["scale"]
    assert rerank_check(model, checks["perfect refine"], 4) == before
