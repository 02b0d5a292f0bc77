"""How much of the tower to tune, decided on validation (issue 15): the per-epoch
validation scores that `mmsearch train encoder` records in train.json, for runs that differ
only in --tune-blocks (same data, views, augmentation, instances and seed).

    python -m benchmarks.tune_blocks --runs models/emoji-v2 /tmp/exp/emoji-v2-t3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks._report import RESULTS, markdown_table, write

SAME = ("views", "augment", "settings", "data", "items", "identities")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True,
                        help="model folders whose train.json to compare")
    args = parser.parse_args()
    records = {run: json.loads((run / "train.json").read_text()) for run in args.runs}
    first = next(iter(records.values()))
    for run, record in records.items():
        differs = [key for key in SAME if record.get(key) != first.get(key)]
        if differs:
            raise SystemExit(f"{run} differs from {args.runs[0]} in {differs}, not only in "
                             "tune_blocks")
    rows, summary = [], []
    for run, record in records.items():
        scores = [entry["validation"] for entry in record["loss_history"]]
        best = max(scores)
        summary.append({"run": str(run), "tune_blocks": record["tune_blocks"],
                        "epoch_chosen": record["epoch_chosen"], "best": best,
                        "scores": scores, "seconds": record["seconds"],
                        "validation": record["validation"]})
        recall = record["validation"]["cross_style_recall@1"]
        rows.append((record["tune_blocks"], record["epoch_chosen"], best, recall["64"],
                     recall["512"], record["seconds"]))
    table = markdown_table(("tune blocks", "epoch chosen", "best validation score",
                            "validation R@1 d64", "validation R@1 d512", "train seconds"),
                           rows)
    intro = ("# Tower stages tuned, chosen on validation\n\n"
             "Runs differing only in `--tune-blocks`; validation score = cross-style image "
             "R@1 of the validation fold, mean over widths (train.json). Seconds as train.json "
             "records them, from the command's start: a run that found its trunk cache on "
             "disk excludes it, one that built it (each cut point needs its own) includes "
             "it.\n\n")
    write("tune_blocks", {"runs": summary}, intro + table + "\n\n![per epoch](tune_blocks.png)")
    plot(summary)
    print(intro + table)


def plot(summary: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for run in summary:
        ax.plot(range(1, len(run["scores"]) + 1), run["scores"], marker=".",
                label=f"tune_blocks {run['tune_blocks']}")
    ax.set(xlabel="epoch", ylabel="validation score", title="validation score per epoch")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "tune_blocks.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
