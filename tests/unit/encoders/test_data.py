"""The identity split rule and manifest building, on a synthetic emoji package."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.encoders.data.captions import Caption, cross_check, name_of, read_emojibase
from mmsearch.encoders.data.emoji import build_vendor, tone_caption
from mmsearch.encoders.data.records import (
    fold_of,
    read_manifest,
    split_of,
    strip_fe0f,
    write_manifest,
)


def test_split_rule_is_the_documented_hash() -> None:
    labels = [f"1F{i:03X}" for i in range(200)] + ["1F385-1F3FE", "0023-FE0F-20E3"]
    for label in labels:
        odd = int(hashlib.sha256(label.encode()).hexdigest(), 16) % 2 == 1
        assert split_of(label) == ("test" if odd else "train")
    splits = {split_of(label) for label in labels}
    assert splits == {"train", "test"}


def test_validation_fold_is_disjoint_and_inside_train() -> None:
    labels = [f"1F{i:03X}" for i in range(2000)]
    folds = {label: fold_of(label) for label in labels}
    assert all((folds[label] == "test") == (split_of(label) == "test") for label in labels)
    train = [label for label in labels if split_of(label) == "train"]
    share = sum(folds[label] == "validation" for label in train) / len(train)
    assert 0.12 < share < 0.18, share
    assert set(folds.values()) == {"train", "validation", "test"}


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
    captions = {"1F385": Caption("santa claus", ("christmas", "santa")),
                "1F385-1F3FE": Caption("santa claus: medium-dark skin tone", ("christmas",))}
    records = build_vendor(_fake_package(tmp_path), "google", tmp_path / "out", captions)
    by_label = {r.label: r for r in records}
    assert set(by_label) == {"1F385", "1F385-1F3FE", "1F935", "1F935-200D-2642-FE0F"}
    # emojibase's label and keywords, plus the short name users type
    assert by_label["1F385"].text == "santa claus (christmas, santa)"
    assert by_label["1F385-1F3FE"].text == "santa claus: medium-dark skin tone (christmas, santa)"
    # not in emojibase: the Unicode name, the shared upstream name disambiguated
    assert by_label["1F935"].text == "person in tuxedo"
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


def test_emojibase_captions_cover_skins_and_ignore_fe0f(tmp_path: Path) -> None:
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "data.json").write_text(json.dumps([
        {"hexcode": "2764", "label": "red heart", "tags": ["love"]},
        {"hexcode": "1F44D", "label": "thumbs up", "tags": ["+1"], "skins": [
            {"hexcode": "1F44D-1F3FB", "label": "thumbs up: light skin tone"}]}]))
    captions = read_emojibase(tmp_path)
    assert captions["2764"].text() == "red heart (love)"  # google writes 2764-FE0F
    assert name_of(captions["2764"].text()) == "red heart"
    burma = Caption("flag: Myanmar (Burma)", ("MM",))
    assert name_of(burma.text()) == "flag: Myanmar (Burma)"
    assert captions["1F44D-1F3FB"] == Caption("thumbs up: light skin tone", ("+1",))
    check = cross_check({"2764": "red heart", "1F44D": "thumbs up", "1F600": "grin"},
                        {"2764": "red heart", "1F44D": "thumbs up sign"})
    assert (check["agree_with_cldr"], check["differ"], check["not_in_cldr_base_annotations"]) \
        == (1, 1, 1)
    assert check["differ_examples"] == {"1F44D": ["thumbs up", "thumbs up sign"]}


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
