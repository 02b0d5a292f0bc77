"""Baseline retrieval quality on test identities, image-only queries vs image-only gallery.

Directions google->twitter, twitter->google, openmoji->google, openmoji->twitter; Recall@1,
Recall@10 and mAP@R at every width, for raw MobileNetV2 pooled features (first w dims) and
the PCA head. Each vendor draws an identity once, so R = 1 and mAP@R equals Recall@1 here.
The PCA head is linear on the pooled features, so its vectors are computed from the same
features; a sample is checked against the exported ONNX model to prove they are the same.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from mmsearch.encoders import load_encoder
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.data.records import read_manifest
from mmsearch.encoders.features import image_features
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width, l2_normalize
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower

DIRECTIONS = (("google", "twitter"), ("twitter", "google"), ("openmoji", "google"),
              ("openmoji", "twitter"))


def test_items(data: Path, vendor: str) -> tuple[list[str], list[str]]:
    records = [r for r in read_manifest(data / f"{vendor}.jsonl")
               if r.split == "test" and r.image]
    return [str(data / r.image) for r in records], [str(r.label) for r in records]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--model-dir", type=Path, default=Path("models/baseline"))
    parser.add_argument("--export-dir", type=Path, default=Path("models/export/baseline"))
    args = parser.parse_args()

    config = ModelConfig.load(args.model_dir)
    heads = HeadSet.load(args.model_dir)
    tower = load_image_tower(config.image_tower, config.local.grid)
    spec = ImageSpec(config.image_tower.input_size, config.image_tower.mean,
                     config.image_tower.std)
    raw, labels, paths = {}, {}, {}
    for vendor in ("google", "twitter", "openmoji"):
        paths[vendor], labels[vendor] = test_items(args.data, vendor)
        raw[vendor], _ = image_features(tower, spec, paths[vendor], progress=True)

    onnx = load_encoder("onnx", export_dir=args.export_dir)
    sample = onnx.encode_images(paths["google"][:64])
    onnx_gap = float(np.abs(at_width(sample.vectors, 512)
                            - at_width(heads.image.apply(raw["google"][:64]), 512)).max())
    assert onnx_gap < 1e-3, f"exported model disagrees with the head: {onnx_gap}"

    feature_dim = raw["google"].shape[1]
    methods = {"raw": [*config.widths, feature_dim], "pca": list(config.widths)}
    rows, results = [], []
    for query, gallery in DIRECTIONS:
        for method, widths in methods.items():
            for width in widths:
                if method == "raw":
                    q = l2_normalize(raw[query][:, :width])
                    g = l2_normalize(raw[gallery][:, :width])
                else:
                    q = at_width(heads.image.apply(raw[query]), width)
                    g = at_width(heads.image.apply(raw[gallery]), width)
                m = retrieval_metrics(q, labels[query], g, labels[gallery])
                results.append({"direction": f"{query}->{gallery}", "method": method,
                                "width": width, **m})
                rows.append((f"{query}->{gallery}", method, width, int(m["queries"]),
                             m["recall@1"], m["recall@10"], m["map@r"]))
    table = markdown_table(("direction", "features", "width", "queries", "R@1", "R@10",
                            "mAP@R"), rows)
    intro = ("# Baseline quality (untrained)\n\nImage-only queries against an image-only "
             "gallery of test identities. `raw` = MobileNetV2 pooled features, first w dims "
             "(1280 = all); `pca` = the PCA baseline head. mAP@R equals R@1 here (one "
             f"drawing per identity per vendor). ONNX vs head max gap {onnx_gap:.1e}.\n\n")
    write("baseline_quality", {"results": results, "onnx_vs_head_max_abs": onnx_gap},
          intro + table + "\n\n![R@1 vs width](baseline_quality.png)")
    plot(results, config.widths)
    print(intro + table)


def plot(results: list[dict], widths: tuple[int, ...]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (query, gallery) in enumerate(DIRECTIONS):
        name = f"{query}->{gallery}"
        for method, style in (("pca", "-"), ("raw", "--")):
            points = [(r["width"], r["recall@1"]) for r in results
                      if r["direction"] == name and r["method"] == method]
            xs, ys = zip(*sorted(points), strict=True)
            ax.plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{name} {method}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("embedding width")
    ax.set_ylabel("Recall@1")
    ax.set_title("Untrained baseline: Recall@1 vs width (dashed = raw features prefix)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / "baseline_quality.png", dpi=120)


if __name__ == "__main__":
    main()
