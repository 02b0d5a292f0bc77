"""Input size study, first cut (issue 15): emoji are 64 px, the tower reads 224 px. For
96 / 128 / 160 / 224 px: the MobileNetV2 tower's image encode ms per item at batch 1 and
32 (torch, this machine's threads), and the leave-one-family-out R@1 of its raw pooled
features on validation identities (the proxy for what training can start from; test
identities untouched). A choice still needs a trained run per finalist size.

    python -m benchmarks.input_size      (needs mmsearch data emoji + styles)
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks._report import bar_chart, markdown_table, write
from benchmarks.style_holdout import FAMILIES, holdout_metrics, manifests
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.features import image_features
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower
from mmsearch.encoders.train.command import read_train_items

SIZES = (96, 128, 160, 224)


def encode_ms(tower: torch.nn.Module, size: int, batch: int, repeats: int) -> float:
    """Median ms per item of the tower's forward pass on a batch of `batch` images."""
    pixels = torch.randn(batch, 3, size, size)
    times = []
    with torch.inference_mode():
        tower(pixels)  # warm-up
        for _ in range(repeats):
            started = time.perf_counter()
            tower(pixels)
            times.append((time.perf_counter() - started) * 1000 / batch)
    return float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    validation = read_train_items(list(manifests().values()), "validation")
    config = ModelConfig.load(Path("models/emoji-v1"))
    tower = load_image_tower(config.image_tower, config.local.grid).eval()
    rows, results = [], []
    for size in SIZES:
        spec = ImageSpec(size, config.image_tower.mean, config.image_tower.std)
        pooled, _ = image_features(tower, spec, list(validation.images))
        recall = {f: holdout_metrics(pooled, validation, FAMILIES[f], None)["recall@1"]
                  for f in FAMILIES}
        speed = {b: encode_ms(tower, size, b, args.repeats) for b in (1, 32)}
        results.append({"size": size, "recall@1": recall, "ms_per_item": speed})
        rows.append([size, *recall.values(), float(np.mean(list(recall.values()))),
                     speed[1], speed[32]])
    headers = ["input px", *(f"R@1 {f} held out" for f in FAMILIES), "mean R@1",
               "ms/item batch 1", "ms/item batch 32"]
    markdown = ("# Input size (raw MobileNetV2 features, validation identities)\n\n"
                f"{len(validation.images)} validation drawings; torch "
                f"{torch.__version__}, {torch.get_num_threads()} threads.\n\n"
                + markdown_table(headers, rows))
    write("input_size", {"threads": torch.get_num_threads(), "results": results}, markdown)
    bar_chart("input_size", {f"{r[0]} px": r[4] for r in rows}, "mean held-out R@1 (raw)",
              "input size, raw tower features")
    print(markdown)


if __name__ == "__main__":
    main()
