"""Cross-fitted scorer lists: validation-fold identities only, split fit/check, self never
listed, and the check compares the scorer's order with the first stage's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.encoders import load_encoder
from mmsearch.encoders.data.records import in_validation
from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig
from mmsearch.rerank.train.heldout import (
    held_out_check,
    held_out_pairs,
    held_out_records,
    part_of,
    rerank_check,
)
from support.data import write_styles

LABELS = [f"1F{i:03X}" for i in range(400)]
HELD = [label for label in LABELS if in_validation(label)][:16]


def _styles(folder: Path) -> list[Path]:
    """Two styles of the same held-out identities, plus train-fold identities that must
    never appear; every item is train-split."""
    trained = [label for label in LABELS if not in_validation(label)][:4]
    return write_styles(folder, HELD + trained, ("a", "b"))


def test_parts_hold_validation_identities_only_and_are_disjoint(tmp_path: Path) -> None:
    manifests = _styles(tmp_path)
    fit = {label for _, label in held_out_records(manifests, "fit")}
    check = {label for _, label in held_out_records(manifests, "check")}
    assert fit and check and not fit & check
    assert fit | check == set(HELD)
    assert all(part_of(label) == "fit" for label in fit)


def test_lists_never_hold_the_query_and_find_the_other_style(
        tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    manifests = _styles(tmp_path / "data")
    encoder = load_encoder("onnx", export_dir=tiny_model[1])
    pairs = held_out_pairs(encoder, manifests, depth=4, cache=tmp_path / "cache",
                           query_views=1)
    assert len(pairs) == 2  # clean queries, then one augmented view
    for queries, gallery, lists in pairs:
        assert not (lists.candidates == lists.query[:, None]).any()
        assert lists.relevant.any(axis=1).all()  # the other style's drawing is forced in
        found = gallery.labels[lists.candidates][lists.relevant]
        assert set(found) <= set(queries.labels)
    check = rerank_check(ListwiseScorer(ScorerConfig(
        width=32, cells=encoder.config.local.cells, local_dim=8, d_model=32, heads=4,
        layers=1, colour=True)), held_out_check(encoder, manifests, depth=4,
                                                cache=tmp_path / "cache"), chunk=2)
    assert check["lists"] > 0
    for key in ("refine_recall@1", "rerank_recall@1", "refine_ndcg@10", "rerank_ndcg@10"):
        assert 0.0 <= check[key] <= 1.0


def test_no_validation_identity_is_a_clear_error(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    label = next(label for label in LABELS if not in_validation(label))
    manifest.write_text(json.dumps({"id": "x", "image": "x.png", "text": "x",
                                    "label": label, "split": "train", "attrs": {}}) + "\n")
    with pytest.raises(ValueError, match="no validation-fold drawings"):
        held_out_records([manifest], "fit")
