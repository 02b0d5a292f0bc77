"""Noisy queries (issue 15): the same directions as embedder_quality, test identities,
with every query photographed badly by a fixed recipe, clean vs noisy R@1 / R@10.

The recipe (seeded per query, seed 0) is deliberately not the training augmentation
(`encoders/train/augment.py`: colour, line weight, fills, outlines, scale, blur, and in the
query-noise preset rotation up to 12 degrees, noise-texture clutter, occlusion of 3-8 %,
JPEG 50-90). Perspective, pixel noise and stripe clutter are never trained on, and the
shared kinds are harsher. Each query gets a rotation of 8-25 degrees either way, a
perspective warp (corners moved up to 12 %), background clutter (pasted on a random
two-colour stripe texture), an occlusion (a grey square over 8-15 % of the picture),
Gaussian pixel noise (sigma 6-14) and JPEG at quality 20-45. Galleries stay clean: a
catalogue is drawn, the query is a photo of a screen or a sticker.

    python -m benchmarks.noisy_queries      (needs mmsearch data emoji + openmoji, export)
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks._report import bar_chart, markdown_table, write
from benchmarks.baseline_quality import DIRECTIONS, test_items
from mmsearch.encoders import load_encoder
from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.features import image_features
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.metrics import retrieval_metrics
from mmsearch.encoders.mrl import at_width, l2_normalize
from mmsearch.encoders.preprocess import ImageSpec
from mmsearch.encoders.towers import load_image_tower

SEED = 0
WIDTHS = (64, 512)


def _clutter(size: tuple[int, int], rng: random.Random) -> Image.Image:
    colours = [tuple(rng.randint(60, 230) for _ in range(3)) for _ in range(2)]
    texture = Image.new("RGB", size, colours[0])
    draw = ImageDraw.Draw(texture)
    step = rng.randint(4, 10)
    for offset in range(-size[1], size[0], 2 * step):
        draw.polygon([(offset, 0), (offset + step, 0), (offset + step + size[1], size[1]),
                      (offset + size[1], size[1])], fill=colours[1])
    return texture


def _perspective(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    shift = [rng.uniform(-0.12, 0.12) * (width if i % 2 == 0 else height) for i in range(8)]
    # PIL's QUAD takes the source corners upper left, lower left, lower right, upper right;
    # any other order mirrors the picture as well as warping it
    corners = [(0, 0), (0, height), (width, height), (width, 0)]
    quad = [c + shift[2 * i + j] for i, corner in enumerate(corners)
            for j, c in enumerate(corner)]
    return image.transform(image.size, Image.Transform.QUAD, quad,
                           Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _rotate(rgb: Image.Image, rng: random.Random) -> Image.Image:
    angle = rng.choice((-1, 1)) * rng.uniform(8, 25)
    return rgb.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def _stripes_behind(rgb: Image.Image, rng: random.Random) -> Image.Image:
    foreground = rgb.convert("L").point(lambda v: 255 if v < 245 else 0)
    return Image.composite(rgb, _clutter(rgb.size, rng), foreground)


def _grey_square(rgb: Image.Image, rng: random.Random) -> Image.Image:
    area = rng.uniform(0.08, 0.15) * rgb.size[0] * rgb.size[1]
    side = int(area ** 0.5)
    left, top = rng.randint(0, rgb.size[0] - side), rng.randint(0, rgb.size[1] - side)
    ImageDraw.Draw(rgb).rectangle((left, top, left + side, top + side), fill=(128, 128, 128))
    return rgb


def _pixel_noise(rgb: Image.Image, rng: random.Random) -> Image.Image:
    pixels = np.asarray(rgb, dtype=np.float32)
    noise = np.random.default_rng(rng.randrange(2**31)).normal(0, rng.uniform(6, 14),
                                                                pixels.shape)
    return Image.fromarray(np.clip(pixels + noise, 0, 255).astype(np.uint8))


def _low_jpeg(rgb: Image.Image, rng: random.Random) -> Image.Image:
    buffer = io.BytesIO()
    rgb.save(buffer, format="JPEG", quality=rng.randint(20, 45))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


# the recipe's steps in the order they are applied; "all" chains them on one rng
KINDS: dict[str, Callable[[Image.Image, random.Random], Image.Image]] = {
    "rotation": _rotate, "perspective": _perspective, "stripes": _stripes_behind,
    "occlusion": _grey_square, "pixel noise": _pixel_noise, "jpeg": _low_jpeg}


def distort(image: Image.Image, rng: random.Random, kinds: tuple[str, ...] = tuple(KINDS)
            ) -> Image.Image:
    """One noisy photo of an emoji on white: the recipe in the module docstring, or only
    the named steps of it (to see which one costs what)."""
    rgb = image.convert("RGB").resize((128, 128), Image.Resampling.BICUBIC)
    for kind in kinds:
        rgb = KINDS[kind](rgb, rng)
    return rgb


def noisy_copies(paths: list[str], folder: Path, kinds: tuple[str, ...] = tuple(KINDS)
                 ) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for index, path in enumerate(paths):
        target = folder / f"{index}.png"
        with Image.open(path) as image:
            distort(image, random.Random(SEED * 1_000_003 + index), kinds).save(target)
        out.append(str(target))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/emoji"))
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--models", nargs="+", default=["emoji-v1", "emoji-v2"],
                        help="trained models exported under models/export/, compared in one run")
    parser.add_argument("--by-kind", action="store_true",
                        help="also each distortion of the recipe alone (R@1 at d512)")
    args = parser.parse_args()
    vendors = sorted({v for pair in DIRECTIONS for v in pair})
    paths, labels = {}, {}
    for vendor in vendors:
        paths[vendor], labels[vendor] = test_items(args.data, vendor)
    queries = sorted({q for q, _ in DIRECTIONS})
    base_config = ModelConfig.load(args.models_dir / "baseline")
    pca = HeadSet.load(args.models_dir / "baseline")
    tower = load_image_tower(base_config.image_tower, base_config.local.grid)
    spec = ImageSpec(base_config.image_tower.input_size, base_config.image_tower.mean,
                     base_config.image_tower.std)
    trained = {model: load_encoder("onnx", export_dir=args.models_dir / "export" / model)
               for model in args.models}
    vectors: dict[tuple[str, str, str], np.ndarray] = {}
    conditions = {"clean": None, "noisy": tuple(KINDS)} | {
        kind: (kind,) for kind in (KINDS if args.by_kind else ())}
    with tempfile.TemporaryDirectory() as tmp:
        for condition, kinds in conditions.items():
            for vendor in (vendors if kinds is None else queries):
                source = paths[vendor] if kinds is None else noisy_copies(
                    paths[vendor], Path(tmp) / condition / vendor, kinds)
                raw = image_features(tower, spec, source, progress=False)[0]
                vectors[("raw", condition, vendor)] = l2_normalize(raw)
                vectors[("pca", condition, vendor)] = pca.image.apply(raw)
                for model, encoder in trained.items():
                    vectors[(model, condition, vendor)] = encoder.encode_images(
                        source).vectors
    results, rows = [], []
    for query, gallery in DIRECTIONS:
        for method in ("raw", "pca", *args.models):
            for width in (None,) if method == "raw" else WIDTHS:
                cells = []
                for condition in ("clean", "noisy"):
                    m = against_clean(vectors, labels, method, condition, query, gallery,
                                      width)
                    results.append({"task": f"{query}->{gallery}", "method": method,
                                    "width": width, "queries": condition, **m})
                    cells += [m["recall@1"], m["recall@10"]]
                rows.append([f"{query}->{gallery}", method, width or "1280 raw", *cells,
                             cells[2] - cells[0]])
    headers = ["direction", "method", "width", "clean R@1", "clean R@10", "noisy R@1",
               "noisy R@10", "noisy - clean R@1"]
    markdown = ("# Noisy queries (test identities; galleries clean)\n\n"
                "Recipe (seed 0) in `benchmarks/noisy_queries.py`: rotation 8-25 degrees, "
                "perspective, stripe clutter, grey occlusion of 8-15 %, pixel noise, JPEG "
                "20-45; perspective, pixel noise and stripes are never trained on, the rest "
                "harsher than training's query-noise preset.\n\n" + markdown_table(headers, rows))
    if args.by_kind:
        markdown += "\n\n" + by_kind_table(vectors, labels, ("raw", "pca", *args.models),
                                            results)
    write("noisy_queries", {"seed": SEED, "results": results}, markdown)
    bar_chart("noisy_queries", {f"{r[0]} {r[1]} d{r[2]}": r[5] for r in rows
                                if r[2] == 512}, "noisy R@1 (d512)", "noisy queries")
    print(markdown)


def against_clean(vectors: dict[tuple[str, str, str], np.ndarray],
                  labels: dict[str, list[str]], method: str, condition: str, query: str,
                  gallery: str, width: int | None) -> dict[str, float]:
    """One method's queries under `condition` against the clean gallery (at `width`, or
    the raw features' own dims with None)."""
    query_vectors = vectors[(method, condition, query)]
    gallery_vectors = vectors[(method, "clean", gallery)]
    if width is not None:
        query_vectors = at_width(query_vectors, width)
        gallery_vectors = at_width(gallery_vectors, width)
    return retrieval_metrics(query_vectors, labels[query], gallery_vectors, labels[gallery])


def by_kind_table(vectors: dict[tuple[str, str, str], np.ndarray],
                  labels: dict[str, list[str]], methods: tuple[str, ...],
                  results: list[dict]) -> str:
    """R@1 with each step of the recipe alone (d512; raw at its 1280 dims), appended to
    `results`: which distortion costs what."""
    columns = ["clean", *KINDS, "noisy"]
    rows = []
    for query, gallery in DIRECTIONS:
        for method in methods:
            width = None if method == "raw" else 512
            cells = []
            for condition in columns:
                m = against_clean(vectors, labels, method, condition, query, gallery, width)
                if condition in KINDS:
                    results.append({"task": f"{query}->{gallery}", "method": method,
                                    "width": width, "queries": f"{condition} alone", **m})
                cells.append(m["recall@1"])
            rows.append([f"{query}->{gallery}", method, width or "1280 raw", *cells])
    headers = ["direction", "method", "width", *(c if c in ("clean", "noisy")
                                                  else f"{c} alone" for c in columns)]
    return ("## Each distortion alone (R@1)\n\nThe same seeded steps as the recipe, one at "
            "a time; `noisy` is all of them chained.\n\n" + markdown_table(headers, rows))


if __name__ == "__main__":
    main()
