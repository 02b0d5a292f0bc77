"""Cross-fitted lists for the scorer: each style's drawings queried through an embedder
that never trained on that style.

Lists from the shipped embedder are nearly solved on the styles it trained on, so a scorer
trained on them learns corrections that only hold where the first stage is already right;
a new catalogue's lists look like those of an embedder meeting a style it never saw. A
`CrossFit` names such an embedder (exported from a leave-one-family-out run,
`benchmarks.family_holdout --save-models`) and the style manifests it never saw: their
drawings query a gallery of every other `--held-out` style's drawings.

Both sides are train-split drawings. The validation fold's `check` part (`part_of`, the
same cut as the held-out lists) is kept apart: its lists decide the correction weight and
are recorded in scorer.json; every other drawing gives training lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsearch.encoders.errors import UsageError
from mmsearch.encoders.manifest import MANIFEST_FILE
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.rerank.train.emoji import encode_rows
from mmsearch.rerank.train.heldout import in_check, train_drawings
from mmsearch.rerank.train.lists import Lists, Side, mine

FLAG = "--cross-fit"


@dataclass(frozen=True)
class CrossFit:
    export_dir: Path  # an exported embedder that never trained on `styles`
    styles: tuple[Path, ...]  # the manifests of the styles it never saw (the queries)

    @property
    def name(self) -> str:
        return self.export_dir.name


def parse_cross_fit(value: str, held_out: list[Path]) -> CrossFit:
    """`EXPORT_DIR=STYLE.jsonl[,STYLE.jsonl]`, checked: the folder holds an exported
    embedder and every style is one of the --held-out manifests (the gallery is the
    rest of them)."""
    folder, sep, styles = value.partition("=")
    if not sep or not folder or not styles:
        raise UsageError(FLAG, f"{value!r} is not EXPORT_DIR=STYLE.jsonl[,STYLE.jsonl]")
    if not (Path(folder) / MANIFEST_FILE).is_file():
        raise UsageError(FLAG, f"no {MANIFEST_FILE} in {folder}: export the held-out run "
                         "with `mmsearch export --model-dir ... --out ...`")
    manifests = tuple(Path(style) for style in styles.split(","))
    known = {Path(m).resolve() for m in held_out}
    for manifest in manifests:
        if manifest.resolve() not in known:
            raise UsageError(FLAG, f"{manifest} is not one of the --held-out manifests "
                             "(the styles the shipped embedder trained on)")
    if known <= {m.resolve() for m in manifests}:
        raise UsageError(FLAG, f"{value!r} leaves no --held-out style for the gallery")
    return CrossFit(Path(folder), manifests)


def drawings(manifests: tuple[Path, ...], check: bool) -> list[tuple[str, str]]:
    """(image path, label) of the train-split drawings in the check part, or outside it."""
    rows = train_drawings(manifests, lambda label: in_check(label) == check)
    if not rows:
        part = "check" if check else "fit"
        raise ValueError(f"no train-split drawings in the {part} part of {list(manifests)}")
    return rows


def encoded(encoder: Encoder, manifests: tuple[Path, ...], check: bool, cache: Path | None
            ) -> Side:
    return encode_rows(encoder, drawings(manifests, check), "crossfit", 0, cache)


def sides(crossfit: CrossFit, held_out: list[Path], check: bool, cache: Path | None
          ) -> tuple[Side, Side]:
    """(queries: the unseen styles, gallery: every other held-out style) encoded by the
    cross-fit embedder."""
    from mmsearch.encoders import load_encoder

    encoder = load_encoder("onnx", export_dir=crossfit.export_dir)
    unseen = {m.resolve() for m in crossfit.styles}
    others = tuple(Path(m) for m in held_out if Path(m).resolve() not in unseen)
    return (encoded(encoder, crossfit.styles, check, cache),
            encoded(encoder, others, check, cache))


def cross_fit_pairs(crossfits: list[CrossFit], held_out: list[Path], depth: int,
                    cache: Path | None) -> list[tuple[Side, Side, Lists]]:
    """Training lists, one (queries, gallery, lists) per cross-fit embedder."""
    pairs = []
    for crossfit in crossfits:
        queries, gallery = sides(crossfit, held_out, False, cache)
        pairs.append((queries, gallery, mine(queries, gallery, depth, force_positive=True)))
    return pairs


def check_lists(queries: Side, gallery: Side, depth: int) -> Lists:
    """Unforced lists (a list without its identity is a miss for every order) of the
    queries whose identity the gallery holds."""
    lists = mine(queries, gallery, depth, force_positive=False)
    findable = np.isin(queries.labels[lists.query], gallery.labels)
    return Lists(lists.query[findable], lists.candidates[findable], lists.scores[findable],
                 lists.relevant[findable])


def cross_fit_checks(crossfits: list[CrossFit], held_out: list[Path], depth: int,
                     cache: Path | None) -> dict[str, tuple[Side, Side, Lists]]:
    """The check part's lists, by cross-fit embedder name."""
    checks = {}
    for crossfit in crossfits:
        queries, gallery = sides(crossfit, held_out, True, cache)
        checks[f"cross-fit {crossfit.name}"] = (queries, gallery,
                                                check_lists(queries, gallery, depth))
    return checks
