"""Trained embedder vs the PCA baseline vs raw tower features, in one run, on test identities.

Image-only queries against an image-only gallery: google->twitter, twitter->google,
openmoji->google, openmoji->twitter (openmoji is never trained on). Recall@1, Recall@10 and
mAP@R at every width. Name->image: each test identity's caption as a text-only query
against each vendor's image-only gallery, Recall@10. int8: the same directions with the
int8 models, and the fp32/int8 cosine per item. Trained and int8 numbers come from the
exported ONNX models (what serving runs); raw and PCA from the tower's pooled features.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks._report import RESULTS, markdown_table, write
from benchmarks.baseline_quality import DIRECTIONS, test_items
from mmsearch.encoders import load_encoder
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.data.captions import name_of
from mmsearch.encoders.data.records import read_manifest
from mmsearch.encoders.features import image_features
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width, l2_normalize
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.quantize import cosine_agreement
from mmsearch.encoders.towers import load_image_tower

VENDORS = ("google", "twitter", "openmoji")


def captions_of(data: Path, vendor: str) -> dict[str, str]:
    """label -> the name a user types: the caption's CLDR label, keywords left out."""
    return {str(r.label): name_of(str(r.text)) for r in read_manifest(data / f"{vendor}.jsonl")
            if r.split == "test" and r.text}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--model", default="emoji-v1", help="trained model under models/")
    parser.add_argument("--baseline", default="baseline", help="PCA model under models/")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--output", default="embedder_quality",
                        help="results name (another model's page beside the shipped one)")
    args = parser.parse_args()

    paths, labels = {}, {}
    for vendor in VENDORS:
        paths[vendor], labels[vendor] = test_items(args.data, vendor)
    baseline_dir = args.models_dir / args.baseline
    base_config = ModelConfig.load(baseline_dir)
    pca = HeadSet.load(baseline_dir)
    tower = load_image_tower(base_config.image_tower, base_config.local.grid)
    spec = ImageSpec(base_config.image_tower.input_size, base_config.image_tower.mean,
                     base_config.image_tower.std)
    raw = {v: image_features(tower, spec, paths[v], progress=True)[0] for v in VENDORS}

    export_dir = args.models_dir / "export" / args.model
    fp32 = load_encoder("onnx", export_dir=export_dir)
    int8 = load_encoder("onnx", export_dir=export_dir, precision="int8")
    trained = {v: fp32.encode_images(paths[v]).vectors for v in VENDORS}
    quantised = {v: int8.encode_images(paths[v]).vectors for v in VENDORS}
    widths = list(fp32.config.widths)

    def views(method: str, vendor: str, width: int) -> np.ndarray:
        if method == "raw":
            return l2_normalize(raw[vendor][:, :width])
        if method == "pca":
            return at_width(pca.image.apply(raw[vendor]), width)
        source = trained if method == "trained" else quantised
        return at_width(source[vendor], width)

    results, rows = [], []
    for query, gallery in DIRECTIONS:
        for method in ("raw", "pca", "trained", "int8"):
            for width in widths + ([raw["google"].shape[1]] if method == "raw" else []):
                m = retrieval_metrics(views(method, query, width), labels[query],
                                      views(method, gallery, width), labels[gallery])
                results.append({"task": f"{query}->{gallery}", "method": method,
                                "width": width, **m})
                rows.append((f"{query}->{gallery}", method, width, m["recall@1"],
                             m["recall@10"], m["map@r"]))
    name_rows = []
    for gallery in VENDORS:
        names = captions_of(args.data, gallery)
        query_labels = sorted(names)
        for method, encoder in (("trained", fp32), ("int8", int8)):
            texts = encoder.encode_texts([names[label] for label in query_labels]).vectors
            images = trained[gallery] if method == "trained" else quantised[gallery]
            for width in widths:
                m = retrieval_metrics(at_width(texts, width), query_labels,
                                      at_width(images, width), labels[gallery])
                results.append({"task": f"name->{gallery}", "method": method, "width": width,
                                **m})
                name_rows.append((f"name->{gallery}", method, width, m["recall@1"],
                                  m["recall@10"]))
    cosines = np.concatenate([cosine_agreement(trained[v], quantised[v]) for v in VENDORS])
    agreement = {"min": float(cosines.min()), "mean": float(cosines.mean()),
                 "p01": float(np.percentile(cosines, 1))}
    table = markdown_table(("direction", "method", "width", "R@1", "R@10", "mAP@R"), rows)
    names_table = markdown_table(("task", "method", "width", "R@1", "R@10"), name_rows)
    intro = (f"# Embedder quality: trained `{args.model}` vs PCA baseline vs raw features\n\n"
             "Test identities only, image-only galleries (openmoji never trained on). `raw` = "
             "MobileNetV2 pooled features, first w dims (1280 = all); `pca` = the untrained "
             "baseline head; `trained` / `int8` = the exported ONNX models. One drawing per "
             "identity per vendor, so mAP@R equals R@1.\n\n"
             f"int8 vs fp32 image embeddings over {len(cosines)} test images: cosine min "
             f"{agreement['min']:.4f}, 1st percentile {agreement['p01']:.4f}, mean "
             f"{agreement['mean']:.4f}.\n\n")
    write(args.output, {"results": results, "int8_cosine": agreement},
          intro + "## Image -> image\n\n" + table + "\n\n## Name -> image\n\n" + names_table
          + f"\n\n![R@1 vs width]({args.output}.png)")
    plot(results, widths, args.output)
    print(intro + table + "\n\n" + names_table)


def plot(results: list[dict], widths: list[int], name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    styles = {"raw": ":", "pca": "--", "trained": "-", "int8": "-."}
    for i, (query, gallery) in enumerate(DIRECTIONS):
        task = f"{query}->{gallery}"
        for method, style in styles.items():
            points = sorted((r["width"], r["recall@1"]) for r in results
                            if r["task"] == task and r["method"] == method
                            and r["width"] in widths)
            xs, ys = zip(*points, strict=True)
            axes[0].plot(xs, ys, style, marker="o", color=f"C{i}", label=f"{task} {method}")
    for i, gallery in enumerate(VENDORS):
        points = sorted((r["width"], r["recall@10"]) for r in results
                        if r["task"] == f"name->{gallery}" and r["method"] == "trained")
        xs, ys = zip(*points, strict=True)
        axes[1].plot(xs, ys, marker="o", color=f"C{i}", label=f"name->{gallery}")
    for ax, title, ylabel in ((axes[0], "Image->image Recall@1 vs width", "Recall@1"),
                              (axes[1], "Name->image Recall@10 vs width (trained)",
                               "Recall@10")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("embedding width")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=120)


if __name__ == "__main__":
    main()
