"""README's "your own data" commands on a tiny synthetic catalogue, as a user runs them:
several photos of each product share its label; train the embedder on them, export,
ingest, search. Uses the pretrained offline towers (the `train` extra `make test` installs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PRODUCTS = 12
PHOTOS = 3  # photos per product; the last one is kept out of the catalogue as a query


def catalogue(folder: Path) -> tuple[Path, list[dict]]:
    """Products = a shape in a colour; photos = the product moved, scaled, on a tinted
    background (what several shots of one product differ by)."""
    rng = np.random.default_rng(0)
    shapes = ("square", "disc", "bar")
    colours = {"red": (200, 30, 30), "green": (30, 160, 60), "blue": (40, 60, 200),
               "yellow": (230, 200, 20)}
    (folder / "img").mkdir(parents=True)
    items, queries = [], []
    for product in range(PRODUCTS):
        shape, (name, rgb) = shapes[product % 3], list(colours.items())[product // 3]
        for photo in range(PHOTOS):
            canvas = np.full((96, 96, 3), 235, np.uint8) + rng.integers(-15, 15, 3).astype(
                np.uint8)
            size, x, y = rng.integers(40, 60), rng.integers(4, 30), rng.integers(4, 30)
            if shape == "square":
                canvas[y:y + size, x:x + size] = rgb
            elif shape == "bar":
                canvas[y:y + size // 3, x:x + size] = rgb
            else:
                yy, xx = np.mgrid[:96, :96]
                canvas[(yy - y - size / 2) ** 2 + (xx - x - size / 2) ** 2 < (size / 2) ** 2] = rgb
            path = f"img/p{product}-{photo}.jpg"
            Image.fromarray(canvas).save(folder / path, quality=90)
            record = {"id": f"p{product}-{photo}", "image": path, "text": f"{name} {shape}",
                      "label": f"product-{product}", "split": "train", "attrs": {}}
            (queries if photo == PHOTOS - 1 else items).append(record)
    manifest = folder / "catalogue.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in items))
    return manifest, queries


def cli(*argv: str) -> subprocess.CompletedProcess:
    environ = {**os.environ, "MMSEARCH_MODELS__SCORER": ""}  # no scorer for this model yet
    done = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", *argv], env=environ,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_train_export_ingest_search_on_your_own_catalogue(tmp_path: Path) -> None:
    manifest, queries = catalogue(tmp_path / "shop")
    models = tmp_path / "models"
    cli("train", "encoder", "--manifest", str(manifest), "--out", str(models / "shop-v1"),
        "--name", "shop-v1", "--epochs", "8", "--views", "2", "--tune-blocks", "0",
        "--batch-identities", "12", "--no-colour", "--validation-percent", "0",
        "--cache", str(tmp_path / "cache"))
    common = ["--models-dir", str(models), "--model", "shop-v1"]
    cli("export", *common, "--no-int8")
    uri = str(tmp_path / "shop.db")
    done = cli("ingest", "--manifest", str(manifest), "--base", "shop", "--uri", uri,
               "--state-dir", str(tmp_path / "state"), "--no-progress", *common)
    assert f"ingested {PRODUCTS * (PHOTOS - 1)}" in done.stdout
    lines = [{"qid": q["label"], "image": f"shop/{q['image']}"} for q in queries]
    (tmp_path / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in lines))
    cli("search", "--base", "shop", "--queries", str(tmp_path / "queries.jsonl"), "--top-k",
        "2", "--output", str(tmp_path / "hits.jsonl"), "--uri", uri, *common)
    results = [json.loads(line) for line in (tmp_path / "hits.jsonl").read_text().splitlines()]
    top = [r["hits"][0]["id"].rsplit("-", 1)[0] == r["qid"].replace("product-", "p")
           for r in results]
    # an unseen photo of each product finds another photo of that product first
    assert sum(top) >= 0.75 * PRODUCTS, [r["hits"][0]["id"] for r in results]
