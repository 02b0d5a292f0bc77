"""`mmsearch data openmoji`: OpenMoji 17.0.0 colour SVGs rendered offline (cairosvg), for
the test identities it shares with the emoji set. Never trained on: it measures how the
model does on drawings in a style it never saw."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from mmsearch.encoders.data.captions import EMOJIBASE, read_emojibase
from mmsearch.encoders.data.emoji import EMOJI_VERSION, identities
from mmsearch.encoders.data.npm import fetch_npm_package
from mmsearch.encoders.data.records import ItemRecord, split_of, strip_fe0f, write_manifest
from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.preprocess import on_white

OPENMOJI_VERSION = "17.0.0"


def render_svg(svg: Path, target: Path, size: int = 64) -> None:
    try:
        import cairosvg
    except (ImportError, OSError):
        raise BackendMissingError("cairosvg (and libcairo2)", "pip install cairosvg") from None
    png = cairosvg.svg2png(url=str(svg), output_width=size, output_height=size)
    with Image.open(io.BytesIO(png)) as image:
        flat = on_white(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    flat.save(target)


def prepare_openmoji(out_dir: Path, cache_dir: Path) -> Path:
    emoji_package = fetch_npm_package("emoji-datasource-google", EMOJI_VERSION, cache_dir)
    package = fetch_npm_package("openmoji", OPENMOJI_VERSION, cache_dir)
    entries = json.loads((emoji_package / "emoji.json").read_text())
    captions = read_emojibase(fetch_npm_package(*EMOJIBASE, cache_dir))
    wanted: dict[str, tuple[str, str, dict]] = {}
    for vendor in ("google", "twitter"):
        for unified, _, caption, entry in identities(entries, vendor, captions):
            if split_of(unified) == "test":
                wanted.setdefault(strip_fe0f(unified), (unified, caption, entry))
    records = []
    for item in json.loads((package / "data" / "openmoji.json").read_text()):
        match = wanted.get(strip_fe0f(item["hexcode"]))
        svg = package / "color" / "svg" / f"{item['hexcode']}.svg"
        if match is None or not svg.is_file():
            continue
        unified, caption, entry = match
        relative = f"images/openmoji/{unified.lower()}.png"
        if not (Path(out_dir) / relative).is_file():
            render_svg(svg, Path(out_dir) / relative)
        attrs = {"category": entry["category"], "subcategory": entry["subcategory"],
                 "vendor": "openmoji"}
        records.append(ItemRecord(f"openmoji:{unified}", relative, caption, unified, "test",
                                  attrs))
        del wanted[strip_fe0f(item["hexcode"])]  # one drawing per identity
    manifest = Path(out_dir) / "openmoji.jsonl"
    write_manifest(manifest, records)
    return manifest
