"""The identity split rule and manifest building, on a synthetic emoji package."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.encoders.data.emoji import build_vendor, tone_caption
from mmsearch.encoders.data.openmoji import strip_fe0f
from mmsearch.encoders.data.records import read_manifest, split_of, write_manifest


def test_split_rule_is_the_documented_hash() -> None:
    labels = [f"1F{i:03X}" for i in range(200)] + ["1F385-1F3FE", "0023-FE0F-20E3"]
    for label in labels:
        odd = int(hashlib.sha256(label.encode()).hexdigest(), 16) % 2 == 1
        assert split_of(label) == ("test" if odd else "train")
    splits = {split_of(label) for label in labels}
    assert splits == {"train", "test"}


def test_tone_captions_name_every_modifier() -> None:
    assert tone_caption("father christmas", "1F3FE") == "father christmas: medium-dark skin tone"
    assert tone_caption("kiss", "1F3FB-1F3FF") == "kiss: light skin tone, dark skin tone"


def test_fe0f_is_ignored_when_matching_openmoji() -> None:
    assert strip_fe0f("2764-FE0F") == strip_fe0f("2764") == "2764"


def _fake_package(root: Path) -> Path:
    entries = [
        {"name": "FATHER CHRISTMAS", "unified": "1F385", "short_name": "santa",
         "image": "1f385.png", "category": "People & Body", "subcategory": "person-fantasy",
         "has_img_google": True, "skin_variations": {
             "1F3FE": {"unified": "1F385-1F3FE", "image": "1f385-1f3fe.png",
                       "has_img_google": True}}},
        {"name": "MAN IN TUXEDO", "unified": "1F935", "short_name": "person_in_tuxedo",
         "image": "1f935.png", "category": "People & Body", "subcategory": "person",
         "has_img_google": True},
        {"name": "MAN IN TUXEDO", "unified": "1F935-200D-2642-FE0F",
         "short_name": "man_in_tuxedo", "image": "1f935-200d-2642-fe0f.png",
         "category": "People & Body", "subcategory": "person", "has_img_google": True},
        {"name": "NO GOOGLE", "unified": "1F999", "short_name": "x", "image": "1f999.png",
         "category": "Objects", "subcategory": "x", "has_img_google": False},
    ]
    package = root / "package"
    (package / "img" / "google" / "64").mkdir(parents=True)
    (package / "emoji.json").write_text(json.dumps(entries))
    for name in ("1f385.png", "1f385-1f3fe.png", "1f935.png", "1f935-200d-2642-fe0f.png"):
        Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(package / "img" / "google" / "64" / name)
    return package


def test_build_vendor_writes_the_item_format(tmp_path: Path) -> None:
    records = build_vendor(_fake_package(tmp_path), "google", tmp_path / "out")
    by_label = {r.label: r for r in records}
    assert set(by_label) == {"1F385", "1F385-1F3FE", "1F935", "1F935-200D-2642-FE0F"}
    assert by_label["1F385-1F3FE"].text == "father christmas: medium-dark skin tone"
    assert by_label["1F935"].text == "person in tuxedo"  # shared upstream name disambiguated
    assert len({r.text for r in records}) == len(records)
    for record in records:
        assert record.id == f"google:{record.label}"
        assert record.split == split_of(record.label)
        assert record.attrs == {"category": "People & Body",
                                "subcategory": by_label[record.label].attrs["subcategory"],
                                "vendor": "google"}
        with Image.open(tmp_path / "out" / record.image) as image:
            assert image.mode == "RGB" and image.getpixel((5, 5)) == (255, 255, 255)
    manifest = tmp_path / "out" / "google.jsonl"
    assert write_manifest(manifest, records) == 4
    assert list(read_manifest(manifest)) == records


def _write_idx(path: Path, array: np.ndarray) -> None:
    import gzip

    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_debian_idx_files(tmp_path: Path) -> None:
    from mmsearch.encoders.data.fashion_mnist import CLASSES, prepare_fashion_mnist

    source = tmp_path / "fmnist"
    source.mkdir()
    rng = np.random.default_rng(0)
    for prefix, count in (("train", 5), ("t10k", 3)):
        _write_idx(source / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (count, 28, 28)))
        _write_idx(source / f"{prefix}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    manifest = prepare_fashion_mnist(tmp_path / "out", limit=4, source=source)
    records = list(read_manifest(manifest))
    assert [r.split for r in records] == ["train"] * 4 + ["test"] * 3
    assert records[1].label == CLASSES[1] and records[1].text == CLASSES[1]
    with Image.open(tmp_path / "out" / records[0].image) as image:
        assert image.size == (28, 28)


def test_fashion_mnist_missing_package_says_how_to_install(tmp_path: Path) -> None:
    import pytest

    from mmsearch.encoders.data.fashion_mnist import prepare_fashion_mnist

    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        prepare_fashion_mnist(tmp_path, source=tmp_path / "nothing")
