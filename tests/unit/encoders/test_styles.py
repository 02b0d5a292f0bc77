"""`mmsearch data styles` on small package folders laid out like the real npm packages:
labels are google's unified codes (FE0F kept) matched with FE0F (and, for JoyPixels' file
names, the joiners) removed; the split is the label's; a name-only style maps through
emojibase/CLDR names and counts what it drops; images are 64 px on white."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from mmsearch.encoders.data.records import read_manifest, split_of
from mmsearch.encoders.data.styles import STYLES, prepare_styles, slug

pytest.importorskip("cairosvg", reason="cairosvg renders the SVG styles (train extra)")

GOOGLE = [
    {"unified": "2764-FE0F", "image": "2764-fe0f.png", "name": "HEAVY BLACK HEART",
     "short_name": "heart", "category": "Smileys & Emotion", "subcategory": "heart",
     "has_img_google": True},
    {"unified": "1F9B8-1F3FE-200D-2642-FE0F", "image": "x.png", "name": "MALE SUPERHERO",
     "short_name": "male_superhero", "category": "People & Body",
     "subcategory": "person-fantasy", "has_img_google": True},
]
HEART = '<path fill="#f00" d="M2 2h12v12H2z"/>'


def png(path: Path, colour: tuple[int, int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(path)
    with Image.open(path) as image:
        image.paste(Image.new("RGBA", (32, 32), colour), (16, 16))
        image.save(path)


@pytest.fixture()
def packages(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "npm"
    made: dict[str, Path] = {}

    def folder(name: str) -> Path:
        made[name] = root / name.replace("/", "_")
        made[name].mkdir(parents=True)
        return made[name]

    (folder("emoji-datasource-google") / "emoji.json").write_text(json.dumps(GOOGLE))
    assets = folder("emoji-assets")
    for name in ("2764", "1f9b8-1f3fe-2642", "0032"):  # JoyPixels drops FE0F and 200D
        png(assets / "png" / "64" / f"{name}.png", (255, 0, 0, 255))
    icons = {"width": 16, "height": 16, "icons": {"red-heart": {"body": HEART},
                                                  "not-an-emoji": {"body": HEART}}}
    (folder("@iconify-json/noto-v1") / "icons.json").write_text(json.dumps(icons))
    flat = folder("@iconify-json/fluent-emoji-flat")
    (flat / "chars.json").write_text(json.dumps({"2764": "red-heart"}))
    (flat / "icons.json").write_text(json.dumps(icons))
    colour = folder("@iconify-json/fluent-emoji")
    (colour / "chars.json").write_text("{}")  # as published: map through the flat set's
    (colour / "icons.json").write_text(json.dumps(icons))
    base = folder("emojibase-data") / "en"
    base.mkdir()
    (base / "data.json").write_text(json.dumps([{"label": "red heart", "hexcode": "2764"}]))
    cldr = folder("cldr-annotations-full") / "annotations" / "en"
    cldr.mkdir(parents=True)
    (cldr / "annotations.json").write_text(json.dumps({"annotations": {"annotations": {
        "\u2764": {"default": ["heart"], "tts": ["red heart"]}}}}))
    return made


def test_styles_match_google_identities(packages: dict[str, Path], tmp_path: Path) -> None:
    fetched: list[tuple[str, str]] = []

    def fetch(name: str, version: str) -> Path:
        fetched.append((name, version))
        return packages[name]

    manifests = prepare_styles(tmp_path / "out", fetch, ("joypixels", "noto-v1",
                                                         "fluent-colour"))
    joy = {r.label: r for r in read_manifest(manifests["joypixels"])}
    assert set(joy) == {"2764-FE0F", "1F9B8-1F3FE-200D-2642-FE0F"}
    for label, record in joy.items():
        assert record.id == f"joypixels:{label}" and record.split == split_of(label)
        assert record.attrs["family"] == "emojione" and record.attrs["vendor"] == "joypixels"
    (noto,) = read_manifest(manifests["noto-v1"])
    (fluent,) = read_manifest(manifests["fluent-colour"])
    assert noto.label == fluent.label == "2764-FE0F"
    assert noto.text == "red heart (heart)"  # emojibase's label, google's short name
    with Image.open(manifests["noto-v1"].parent / noto.image) as image:
        assert image.size == (64, 64) and image.mode == "RGB"
        assert image.getpixel((0, 0)) == (255, 255, 255)  # on white
        assert image.getpixel((32, 32))[0] > 200 and image.getpixel((32, 32))[1] < 60
    sources = json.loads((tmp_path / "out" / "styles" / "sources.json").read_text())
    assert sources["joypixels"] | {"licence": ""} == {
        "package": "emoji-assets", "version": "11.0.0", "family": "emojione", "licence": "",
        "drawings": 3, "items": 2, "dropped": 1, "unrenderable": 0}
    assert sources["captions"]["agree_with_cldr"] == sources["captions"]["labels"] == 1
    assert (sources["noto-v1"]["items"], sources["noto-v1"]["dropped"]) == (1, 1)
    assert ("@iconify-json/fluent-emoji-flat", "1.2.6") in fetched  # colour maps via flat


def test_catalogue_pins_every_package_and_names_families() -> None:
    assert len({s.name for s in STYLES}) == len(STYLES) == 7
    assert {s.family for s in STYLES} == {"emojione", "fluent", "noto"}
    assert all(s.version[0].isdigit() and s.licence for s in STYLES)
    assert slug("Flag: \u00c5land Islands") == "flag-aland-islands"
