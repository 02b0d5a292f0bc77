"""Cross-fit lists: the unseen styles query the other held-out styles through the
cross-fit embedder; the check part never trains; bad --cross-fit values name the flag."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mmsearch.encoders.data.records import in_validation
from mmsearch.encoders.errors import UsageError
from mmsearch.rerank.train.crossfit import (
    cross_fit_checks,
    cross_fit_pairs,
    drawings,
    parse_cross_fit,
)
from mmsearch.rerank.train.heldout import in_check, without_check
from mmsearch.rerank.train.lists import Side
from support.data import write_styles

LABELS = [f"1F{i:03X}" for i in range(400)]
CHECK = [label for label in LABELS if in_check(label)][:6]
FIT = [label for label in LABELS if in_validation(label) and not in_check(label)][:4]
TRAINED = [label for label in LABELS if not in_validation(label)][:6]


def _styles(folder: Path) -> list[Path]:
    """Three styles of the same identities, every item train-split."""
    return write_styles(folder, CHECK + FIT + TRAINED, ("a", "b", "c"))


def test_check_part_is_validation_only_and_never_in_the_fit_part(tmp_path: Path) -> None:
    manifests = tuple(_styles(tmp_path))
    check = {label for _, label in drawings(manifests, check=True)}
    fit = {label for _, label in drawings(manifests, check=False)}
    assert check == set(CHECK)
    assert fit == set(FIT + TRAINED)
    assert all(in_validation(label) for label in check)


@pytest.mark.parametrize(("value", "reason"), [
    ("no-equals-sign", "is not EXPORT_DIR=STYLE.jsonl"),
    ("{export}=", "is not EXPORT_DIR=STYLE.jsonl"),
    ("{empty}={a}", "no manifest.json in"),
    ("{export}={other}", "is not one of the --held-out manifests"),
    ("{export}={a},{b},{c}", "leaves no --held-out style for the gallery"),
])
def test_bad_values_name_the_flag(tiny_model: tuple[Path, Path], tmp_path: Path, value: str,
                                  reason: str) -> None:
    a, b, c = _styles(tmp_path / "data")
    (tmp_path / "empty").mkdir()
    other = tmp_path / "other.jsonl"
    other.write_text("")
    filled = value.format(export=tiny_model[1], empty=tmp_path / "empty", a=a, b=b, c=c,
                          other=other)
    with pytest.raises(UsageError, match=reason) as raised:
        parse_cross_fit(filled, [a, b, c])
    assert raised.value.flag == "--cross-fit"


def test_unseen_styles_query_the_others_and_checks_stay_apart(
        tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    a, b, c = _styles(tmp_path / "data")
    crossfit = parse_cross_fit(f"{tiny_model[1]}={a}", [a, b, c])
    [(queries, gallery, lists)] = cross_fit_pairs([crossfit], [a, b, c], depth=4,
                                                  cache=tmp_path / "cache")
    assert len(queries.labels) == len(FIT + TRAINED)  # style a alone, fit part
    assert len(gallery.labels) == 2 * len(FIT + TRAINED)  # styles b and c
    assert not set(queries.labels) & set(CHECK) and not set(gallery.labels) & set(CHECK)
    assert lists.relevant.any(axis=1).all()  # the other styles' drawings are forced in
    assert (gallery.labels[lists.candidates][lists.relevant]
            == queries.labels[lists.query].repeat(lists.relevant.sum(1))).all()
    checks = cross_fit_checks([crossfit], [a, b, c], depth=4, cache=tmp_path / "cache")
    check_queries, check_gallery, check_lists = checks[f"cross-fit {tiny_model[1].name}"]
    assert set(check_queries.labels) == set(CHECK) == set(check_gallery.labels)
    assert len(check_lists.query) == len(CHECK)  # unforced, but every identity findable


def test_shipped_embedder_lists_drop_the_check_identities() -> None:
    labels = np.array(CHECK[:2] + TRAINED[:3])
    side = Side(np.arange(5, dtype=np.float32)[:, None], np.zeros((5, 1, 1), np.float32),
                labels)
    kept = without_check(side)
    assert list(kept.labels) == TRAINED[:3]
    assert kept.vectors[:, 0].tolist() == [2.0, 3.0, 4.0]  # rows stay aligned


def test_the_recorded_command_reruns_the_same_flags(tiny_model: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    from mmsearch.app.cli import build_parser
    from mmsearch.rerank.train.command import RECORDED_FLAGS, command_line

    a, b, c = _styles(tmp_path / "data")
    argv = ["train", "reranker", "--model", "m", "--no-fused-lists", "--held-out", str(a),
            str(b), str(c), "--cross-fit", f"{tiny_model[1]}={a}", "--epochs", "3"]
    parser = build_parser()
    args = parser.parse_args(argv)
    recorded = command_line(args).split()
    assert recorded[:3] == ["mmsearch", "train", "reranker"]
    again = parser.parse_args(recorded[1:])
    for key in RECORDED_FLAGS:
        assert getattr(again, key) == getattr(args, key), key
    assert again.held_out == [a, b, c] and again.fused_lists is False
