"""`mmsearch train reranker`: mine lists with the embedder on train identities (both
directions between the two vendors), plus held-out and cross-fitted lists where asked,
train, choose the correction weight on the check lists, save the checkpoint, export to
ONNX."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import UsageError, check_at_least
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.encoders.train.command import code_version
from mmsearch.rerank.scorer.export import export_scorer, save_checkpoint
from mmsearch.rerank.scorer.model import ScorerConfig
from mmsearch.rerank.train.crossfit import (
    CrossFit,
    cross_fit_checks,
    cross_fit_pairs,
    parse_cross_fit,
)
from mmsearch.rerank.train.emoji import encode_fused, encode_side
from mmsearch.rerank.train.gate import calibrate, choose_correction_weight
from mmsearch.rerank.train.heldout import held_out_check, held_out_pairs, without_check
from mmsearch.rerank.train.lists import Lists, Side, mine
from mmsearch.rerank.train.loop import TrainSettings, train

log = logging.getLogger(__name__)


def joined(pairs: list[tuple[Side, Side, Lists]]) -> tuple[Side, Side, Lists]:
    """Concatenate (query side, gallery side, lists) pairs into one training set."""
    q_off = g_off = 0
    sides_q, sides_g, lists = [], [], []
    for queries, gallery, mined in pairs:
        sides_q.append(queries)
        sides_g.append(gallery)
        lists.append(Lists(mined.query + q_off, mined.candidates + g_off, mined.scores,
                           mined.relevant))
        q_off += len(queries.labels)
        g_off += len(gallery.labels)

    def cat(sides: list[Side]) -> Side:
        return Side(*(np.concatenate([getattr(s, f) for s in sides])
                      for f in ("vectors", "local", "labels")))

    return cat(sides_q), cat(sides_g), Lists(*(np.concatenate([getattr(x, f) for x in lists])
                                              for f in ("query", "candidates", "scores",
                                                        "relevant")))


def training_pairs(encoder: Encoder, data: Path, cache: Path | None, depth: int,
                   fused_lists: bool, query_views: int) -> list[tuple[Side, Side, Lists]]:
    """(queries, gallery, lists) per list kind, train split without the check part's
    identities (`in_check`: the checks stay unseen). The same lists serve the command and
    the benchmark's ablations."""
    google = without_check(encode_side(encoder, data, "google", "train", cache))
    twitter = without_check(encode_side(encoder, data, "twitter", "train", cache))
    pairs = [(q, g, mine(q, g, depth, force_positive=True))
             for q, g in ((google, twitter), (twitter, google))]
    if fused_lists:  # by stored id in a mixed-vendor gallery of fused items
        fused = without_check(encode_fused(encoder, data, ("google", "twitter"), "train",
                                           cache))
        pairs.append((fused, fused, mine(fused, fused, depth, force_positive=True,
                                         exclude_self=True)))
    for view in range(1, query_views + 1):  # augmented queries against clean galleries
        for vendor, gallery in (("google", twitter), ("twitter", google)):
            queries = without_check(encode_side(encoder, data, vendor, "train", cache, view))
            pairs.append((queries, gallery, mine(queries, gallery, depth,
                                                 force_positive=True)))
    return pairs


def check_args(args: argparse.Namespace) -> list[CrossFit]:
    """UsageError naming the first bad flag; the parsed --cross-fit values."""
    check_at_least({"--epochs": (args.epochs, 1), "--pg-epochs": (args.pg_epochs, 0),
                    "--chunk-size": (args.chunk_size, 1), "--candidates": (args.candidates, 1),
                    "--query-views": (args.query_views, 0)})
    for manifest in args.held_out or []:
        if not Path(manifest).is_file():
            raise UsageError("--held-out", f"{manifest} not found (run `mmsearch data emoji` "
                             "and `mmsearch data styles`)")
    if args.candidates % args.chunk_size:  # lists are cut into whole chunks
        raise UsageError("--candidates", f"({args.candidates}) must be a multiple of "
                         f"--chunk-size ({args.chunk_size})")
    if args.cross_fit and not args.held_out:
        raise UsageError("--cross-fit", "needs --held-out (the styles the shipped embedder "
                         "trained on: the cross-fit gallery is drawn from them)")
    return [parse_cross_fit(value, args.held_out) for value in args.cross_fit or []]


def checks_of(encoder: Encoder, args: argparse.Namespace, crossfits: list[CrossFit],
              cache: Path) -> dict[str, tuple[Side, Side, Lists]]:
    """The check lists the correction weight is chosen on: the held-out styles' check
    part through the shipped embedder, and each cross-fit embedder's."""
    checks = {}
    if args.held_out:
        checks["held-out styles"] = held_out_check(encoder, args.held_out, args.candidates,
                                                   cache)
    try:
        checks |= cross_fit_checks(crossfits, args.held_out, args.candidates, cache)
    except ValueError as exc:  # no check-part drawing in a cross-fit's styles
        raise UsageError("--cross-fit", str(exc)) from None
    return checks


RECORDED_FLAGS = ("model", "out", "epochs", "pg_epochs", "seed", "candidates", "chunk_size",
                  "query_views", "fused_lists", "vector_tokens", "held_out", "cross_fit")


def command_line(args: argparse.Namespace) -> str:
    """The flags that shape the scorer, as a command that reruns it."""
    parts = ["mmsearch", "train", "reranker"]
    for key in RECORDED_FLAGS:
        value, flag = getattr(args, key, None), "--" + key.replace("_", "-")
        if isinstance(value, bool):
            parts.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif isinstance(value, list) and value:
            parts += [flag, *map(str, value)]
        elif value is not None and not isinstance(value, list):
            parts += [flag, str(value)]
    return " ".join(parts)


def cmd_train_reranker(args: argparse.Namespace, export_dir: Path, models_dir: Path) -> int:
    crossfits = check_args(args)
    encoder = load_encoder("onnx", export_dir=export_dir)
    cache = Path(args.cache)
    pairs = training_pairs(encoder, Path(args.data), cache, args.candidates,
                           args.fused_lists, args.query_views)
    if args.held_out:  # cross-fitted lists: identities the embedder never trained on
        try:
            pairs += held_out_pairs(encoder, args.held_out, args.candidates, cache,
                                    args.query_views)
        except ValueError as exc:  # no validation-fold identity in these manifests
            raise UsageError("--held-out", str(exc)) from None
    try:
        pairs += cross_fit_pairs(crossfits, args.held_out, args.candidates, cache)
    except ValueError as exc:
        raise UsageError("--cross-fit", str(exc)) from None
    queries, gallery, lists = joined(pairs)
    settings = TrainSettings(chunk_size=args.chunk_size, epochs=args.epochs,
                             pg_epochs=args.pg_epochs, seed=args.seed, progress=True)
    scorer_config = ScorerConfig(width=encoder.config.width_max,
                                 cells=encoder.config.local.cells,
                                 local_dim=encoder.config.local.dim,
                                 colour=encoder.config.local.colour,
                                 use_vectors=args.vector_tokens)
    model, losses = train(scorer_config, queries, gallery, lists, settings)
    checks = checks_of(encoder, args, crossfits, cache)
    gate = choose_correction_weight(model, checks, args.chunk_size) if checks else None
    if gate is not None:
        gate["calibration"] = calibrate(model, checks, args.chunk_size)
    chosen_checks = (None if gate is None else
                     next(t for t in gate["tried"] if t["weight"] == gate["chosen"])["checks"])
    check = None if chosen_checks is None else chosen_checks.get("held-out styles")
    info = {"embedder_model_id": encoder.model_id, "losses": losses,
            "train": vars(settings), "lists": int(len(lists.query)), "depth": args.candidates,
            "fused_lists": args.fused_lists, "query_views": args.query_views,
            "held_out": [str(m) for m in args.held_out or []], "held_out_check": check,
            "cross_fit": [{"embedder": str(c.export_dir), "styles": [str(m) for m in c.styles]}
                          for c in crossfits],
            "checks": chosen_checks, "correction_weight": gate,
            "command": command_line(args),
            "code_version": code_version()}
    out = Path(args.out)
    save_checkpoint(model, out, info)
    exported = export_scorer(out, models_dir / "export" / out.name, out.name)
    print(f"scorer trained on {len(lists.query)} lists (loss {losses[0]:.3f} -> "
          f"{losses[-1]:.3f}); checkpoint {out}, ONNX {exported}")
    if gate is not None:
        print(f"correction weight {gate['chosen']} (tried {[t['weight'] for t in gate['tried']]})")
    for name, r in (chosen_checks or {}).items():
        print(f"{name} check ({r['lists']} lists): R@1 refine {r['refine_recall@1']:.3f} -> "
              f"rerank {r['rerank_recall@1']:.3f}, nDCG@10 {r['refine_ndcg@10']:.3f} -> "
              f"{r['rerank_ndcg@10']:.3f}")
    return 0
