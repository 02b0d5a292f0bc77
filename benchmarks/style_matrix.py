"""Every emoji style against every other, on test identities (issue 15's quality table).

Image-only queries in one style against the image-only gallery of another, for every
ordered pair of the training styles (google, twitter and `mmsearch data styles`) and for
openmoji (never trained on) against each training style. R@1, R@10, mAP@R and nDCG@10 at
d64 (what the ANN stage sees) and d512 (refine order), for raw MobileNetV2 pooled
features, the PCA baseline and each trained model named by --models (exported ONNX, what
serving runs), all in one run. Test identities only: `mmsearch bench` territory.

    python -m benchmarks.style_matrix [--models emoji-v1 emoji-v2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from mmsearch.encoders import load_encoder
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.data.records import read_manifest
from mmsearch.encoders.data.styles import STYLES
from mmsearch.encoders.features import image_features
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width, l2_normalize
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower

TRAIN_STYLES = ("google", "twitter", *(style.name for style in STYLES))
UNSEEN = "openmoji"
WIDTHS = (64, 512)


def manifest_of(data: Path, style: str) -> Path:
    top = data / f"{style}.jsonl"
    return top if top.is_file() else data / "styles" / f"{style}.jsonl"


def test_items(data: Path, style: str) -> tuple[list[str], list[str]]:
    """(image paths, labels) of a style's test-identity drawings."""
    manifest = manifest_of(data, style)
    if not manifest.is_file():
        raise SystemExit(f"{manifest} missing: run `mmsearch data emoji`, `mmsearch data "
                         "openmoji` and `mmsearch data styles`")
    records = [r for r in read_manifest(manifest) if r.split == "test" and r.image]
    return [str(manifest.parent / r.image) for r in records], [str(r.label) for r in records]


def directions() -> list[tuple[str, str]]:
    pairs = [(q, g) for q in TRAIN_STYLES for g in TRAIN_STYLES if q != g]
    return pairs + [(UNSEEN, g) for g in TRAIN_STYLES]


def embed_all(args: argparse.Namespace, paths: dict[str, list[str]]
              ) -> dict[str, dict[str, np.ndarray]]:
    """method -> style -> unit vectors at the method's full width."""
    baseline_dir = args.models_dir / args.baseline
    config = ModelConfig.load(baseline_dir)
    tower = load_image_tower(config.image_tower, config.local.grid)
    spec = ImageSpec(config.image_tower.input_size, config.image_tower.mean,
                     config.image_tower.std)
    raw = {s: image_features(tower, spec, p, progress=True)[0] for s, p in paths.items()}
    pca = HeadSet.load(baseline_dir).image
    vectors = {"raw": {s: l2_normalize(v) for s, v in raw.items()},
               "pca": {s: l2_normalize(pca.apply(v)) for s, v in raw.items()}}
    for model in args.models:
        encoder = load_encoder("onnx", export_dir=args.models_dir / "export" / model)
        vectors[model] = {s: encoder.encode_images(p).vectors for s, p in paths.items()}
    return vectors


def summarise(results: list[dict], methods: list[str]) -> list[tuple]:
    """Per method and width: mean R@1 over training-style pairs, openmoji's mean, and the
    named directions the issue's targets are about."""
    rows = []
    for method in methods:
        for width in WIDTHS:
            mine = {r["task"]: r for r in results
                    if r["method"] == method and r["width"] == width}
            trained = [r["recall@1"] for t, r in mine.items() if not t.startswith(UNSEEN)]
            unseen = [r["recall@1"] for t, r in mine.items() if t.startswith(UNSEEN)]
            rows.append((method, width, float(np.mean(trained)), float(np.mean(unseen)),
                         mine["google->twitter"]["recall@1"],
                         mine["twitter->google"]["recall@1"],
                         mine["openmoji->google"]["recall@1"],
                         mine["openmoji->twitter"]["recall@1"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--models", nargs="+", default=["emoji-v1", "emoji-v2"],
                        help="trained models exported under models/export/")
    parser.add_argument("--baseline", default="baseline", help="PCA model under models/")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    args = parser.parse_args()

    paths, labels = {}, {}
    for style in (*TRAIN_STYLES, UNSEEN):
        paths[style], labels[style] = test_items(args.data, style)
    vectors = embed_all(args, paths)
    results = []
    for method, by_style in vectors.items():
        for query, gallery in directions():
            for width in WIDTHS:
                metrics = retrieval_metrics(
                    at_width(by_style[query], width), labels[query],
                    at_width(by_style[gallery], width), labels[gallery])
                results.append({"task": f"{query}->{gallery}", "method": method,
                                "width": width, **metrics})
    methods = list(vectors)
    summary = markdown_table(("method", "width", "R@1 mean, training-style pairs",
                              "R@1 mean, openmoji->each", "google->twitter",
                              "twitter->google", "openmoji->google", "openmoji->twitter"),
                             summarise(results, methods))
    best = methods[-1]
    matrix = markdown_table(("query \\ gallery", *TRAIN_STYLES), [
        (query, *(next((f"{r['recall@1']:.2f}" for r in results
                        if r["task"] == f"{query}->{gallery}" and r["method"] == best
                        and r["width"] == 512), "-") for gallery in TRAIN_STYLES))
        for query in (*TRAIN_STYLES, UNSEEN)])
    counts = ", ".join(f"{s} {len(labels[s])}" for s in labels)
    intro = ("# Every style against every other (test identities, image -> image)\n\n"
             f"Test drawings per style: {counts}. Raw = MobileNetV2 pooled features, pca = "
             "the untrained baseline head, the rest exported ONNX models. The JSON holds "
             "R@1, R@10, mAP@R and nDCG@10 for every direction, method and width.\n\n")
    write("style_matrix", {"results": results, "methods": methods},
          intro + "## Summary (R@1)\n\n" + summary + f"\n\n## `{best}` at d512, R@1 per "
          "direction\n\n" + matrix + "\n\n![R@1 matrix](style_matrix.png)")
    plot(results, best)
    print(summary + "\n\n" + matrix)


def plot(results: list[dict], method: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    queries = (*TRAIN_STYLES, UNSEEN)
    grid = np.full((len(queries), len(TRAIN_STYLES)), np.nan)
    for r in results:
        if r["method"] == method and r["width"] == 512:
            query, gallery = r["task"].split("->")
            grid[queries.index(query), TRAIN_STYLES.index(gallery)] = r["recall@1"]
    fig, ax = plt.subplots(figsize=(9, 7))
    image = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(TRAIN_STYLES)), TRAIN_STYLES, rotation=60, ha="right")
    ax.set_yticks(range(len(queries)), queries)
    for (i, j), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="w")
    ax.set(xlabel="gallery style", ylabel="query style",
           title=f"{method} d512 R@1, test identities")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(RESULTS / "style_matrix.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
