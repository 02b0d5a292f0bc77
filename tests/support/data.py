"""Test data built on the fly: a tiny tokenizer, random PNGs, manifests on disk."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "<|endoftext|>"] + [
    "a", "red", "green", "blue", "face", "cat", "dog", "heart", "star", "smiling", "with",
    "skin", "tone", "light", "dark", "medium", "man", "woman", "flag", "of", ":", ",", "-",
]


def write_tokenizer(folder: Path, eos: bool = False) -> Path:
    """A real WordPiece tokenizer.json over a tiny vocabulary."""
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece

    vocab = {token: i for i, token in enumerate(VOCAB)}
    tokenizer = Tokenizer(WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    closing = "<|endoftext|>" if eos else "[SEP]"
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"[CLS] $A {closing}", special_tokens=[("[CLS]", 2), (closing, vocab[closing])])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tokenizer.json"
    tokenizer.save(str(path))
    return path


def png_bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def random_images(count: int, seed: int = 0, size: int = 48) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        pixels[: size // 2] = rng.integers(0, 256, 3, dtype=np.uint8)  # some structure
        images.append(png_bytes(Image.fromarray(pixels)))
    return images


CAPTIONS = ["red face", "green cat", "blue dog", "a heart", "star with skin tone",
            "smiling man", "dark woman", "flag of a star", "medium light heart", "cat dog"]



def write_items(folder: Path, count: int, seed: int = 0, prefix: str = "item") -> Path:
    """A JSONL manifest of `count` fused items with real PNG files and typed attrs."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "img").mkdir(exist_ok=True)
    lines = []
    for i, blob in enumerate(random_images(count, seed=seed, size=24)):
        name = f"img/{prefix}-{i}.png"
        (folder / name).write_bytes(blob)
        lines.append({"id": f"{prefix}-{i}", "image": name, "text": CAPTIONS[i % len(CAPTIONS)],
                      "label": f"L{i % 7}", "split": "test",
                      "attrs": {"category": ["a", "b", "c"][i % 3], "rank": i,
                                "score": i / 10, "flag": i % 2 == 0}})
    manifest = folder / "items.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


def write_styles(folder: Path, labels: list[str], styles: tuple[str, ...]) -> list[Path]:
    """One train-split manifest per style, each drawing every label once (real PNGs,
    a different random drawing per style)."""
    manifests = []
    for seed, style in enumerate(styles, start=1):
        (folder / style).mkdir(parents=True)
        lines = []
        for i, blob in enumerate(random_images(len(labels), seed=seed, size=24)):
            (folder / style / f"{i}.png").write_bytes(blob)
            lines.append(json.dumps({"id": f"{style}{i}", "image": f"{style}/{i}.png",
                                     "text": "x", "label": labels[i], "split": "train",
                                     "attrs": {}}) + "\n")
        manifest = folder / f"{style}.jsonl"
        manifest.write_text("".join(lines))
        manifests.append(manifest)
    return manifests
