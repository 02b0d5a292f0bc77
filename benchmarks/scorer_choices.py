"""Scorer settings chosen on validation (issue 15): variants trained on the same lists and
compared on the held-out fold's `check` half (identities neither the embedder nor the
scorer trained on; every style against the others, several relevant items per list).

Refine vs rerank R@1 and nDCG@10 per variant; the issue's rule is that rerank never lowers
either. Test identities are not touched (`rerank_quality` is the test-set page).

    python -m benchmarks.scorer_choices --model emoji-v2
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from benchmarks._report import bar_chart, markdown_table, write
from benchmarks.style_matrix import TRAIN_STYLES, manifest_of
from mmsearch.encoders import load_encoder
from mmsearch.rerank.scorer.model import ScorerConfig
from mmsearch.rerank.train.command import joined, training_pairs
from mmsearch.rerank.train.heldout import held_out_check, held_out_pairs, rerank_check
from mmsearch.rerank.train.loop import TrainSettings, train

DEPTH = 64
BASE = TrainSettings(chunk_size=16, epochs=2, pg_epochs=1, seed=0)
# (name, settings, held-out query views, google/twitter train lists too)
VARIANTS = (
    ("shipped recipe", BASE, 1, True),
    ("no policy gradient", replace(BASE, pg_epochs=0), 1, True),
    ("4 epochs", replace(BASE, epochs=4), 1, True),
    ("held-out lists only", BASE, 1, False),
    ("3 augmented views", BASE, 3, True),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--model", default="emoji-v2")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--cache", type=Path, default=Path(".cache/features"))
    args = parser.parse_args()
    encoder = load_encoder("onnx", export_dir=args.models_dir / "export" / args.model)
    manifests = [manifest_of(args.data, style) for style in TRAIN_STYLES]
    config = ScorerConfig(width=encoder.config.width_max, cells=encoder.config.local.cells,
                          local_dim=encoder.config.local.dim,
                          colour=encoder.config.local.colour)
    emoji_lists = training_pairs(encoder, args.data, args.cache, DEPTH, True, 1)
    check_lists = held_out_check(encoder, manifests, DEPTH, args.cache)
    results, rows = [], []
    for name, settings, views, with_emoji in VARIANTS:
        pairs = held_out_pairs(encoder, manifests, DEPTH, args.cache, views)
        model, losses = train(config, *joined((emoji_lists if with_emoji else []) + pairs),
                              settings)
        check = rerank_check(model, check_lists, settings.chunk_size)
        results.append({"variant": name, "settings": vars(settings), "views": views,
                        "emoji_lists": with_emoji, "losses": losses, **check})
        rows.append((name, check["refine_recall@1"], check["rerank_recall@1"],
                     check["refine_ndcg@10"], check["rerank_ndcg@10"]))
        print(rows[-1], flush=True)
    intro = (f"# Scorer settings on the validation fold's check half (`{args.model}`)\n\n"
             f"{results[0]['lists']} lists of {results[0]['identities']} identities never "
             "trained on by the embedder or the scorer; depth 64, chunks of 16.\n\n")
    table = markdown_table(("variant", "refine R@1", "rerank R@1", "refine nDCG@10",
                            "rerank nDCG@10"), rows)
    write("scorer_choices", {"model": args.model, "results": results},
          intro + table + "\n\n![rerank nDCG@10](scorer_choices.png)")
    bar_chart("scorer_choices", {r[0]: r[4] for r in rows}, "rerank nDCG@10 (check half)",
              "scorer variants")
    print(intro + table)


if __name__ == "__main__":
    main()
