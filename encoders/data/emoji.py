"""`mmsearch data emoji`: Google and Twitter emoji (emoji-datasource-* 16.0.0) as manifests.

Identity (label) = the `unified` code of each emoji and each skin variation; the same
identity drawn by the two vendors is an item-to-item match. Caption = lower-cased name,
plus the tone(s) for a skin variation, so no two identities share a caption.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.encoders.data.npm import fetch_npm_package
from mmsearch.encoders.data.records import ItemRecord, split_of, write_manifest
from mmsearch.encoders.preprocess import on_white

EMOJI_VERSION = "16.0.0"
VENDORS = ("google", "twitter")
TONES = {"1F3FB": "light", "1F3FC": "medium-light", "1F3FD": "medium", "1F3FE": "medium-dark",
         "1F3FF": "dark"}


def tone_caption(base_name: str, modifiers: str) -> str:
    """'father christmas' + '1F3FE' -> 'father christmas: medium-dark skin tone'."""
    tones = [f"{TONES[code]} skin tone" for code in modifiers.split("-")]
    return f"{base_name}: {', '.join(tones)}"


def base_caption(entry: dict[str, Any], shared: set[str]) -> str:
    """Lower-cased name; where upstream gives two identities one name (1F935 is named
    'man in tuxedo' like 1F935-200D-2642), the short name disambiguates."""
    name = (entry.get("name") or "").lower()
    if not name or name in shared:
        return entry["short_name"].replace("_", " ").lower()
    return name


def identities(entries: list[dict[str, Any]], vendor: str) -> Iterator[tuple[str, str, str, dict]]:
    """(unified, image file name, caption, emoji entry) for every drawing the vendor has."""
    flag = f"has_img_{vendor}"
    names = Counter((entry.get("name") or "").lower() for entry in entries)
    shared = {name for name, count in names.items() if count > 1}
    for entry in entries:
        name = base_caption(entry, shared)
        if entry.get(flag):
            yield entry["unified"], entry["image"], name, entry
        for modifiers, variation in (entry.get("skin_variations") or {}).items():
            if variation.get(flag):
                yield variation["unified"], variation["image"], tone_caption(name, modifiers), entry


def composite_on_white(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        flat = on_white(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    flat.save(target)


def build_vendor(package: Path, vendor: str, out_dir: Path) -> list[ItemRecord]:
    entries = json.loads((package / "emoji.json").read_text())
    records: list[ItemRecord] = []
    captions: dict[str, str] = {}
    for unified, image_name, caption, entry in identities(entries, vendor):
        if captions.setdefault(caption, unified) != unified:
            raise ValueError(f"caption {caption!r} shared by {unified} and {captions[caption]}")
        relative = f"images/{vendor}/{unified.lower()}.png"
        target = out_dir / relative
        if not target.is_file():
            composite_on_white(package / "img" / vendor / "64" / image_name, target)
        attrs = {"category": entry["category"], "subcategory": entry["subcategory"],
                 "vendor": vendor}
        records.append(ItemRecord(f"{vendor}:{unified}", relative, caption, unified,
                                  split_of(unified), attrs))
    return records


def prepare_emoji(out_dir: Path, cache_dir: Path, vendors: tuple[str, ...] = VENDORS
                  ) -> dict[str, Path]:
    """Write <out_dir>/<vendor>.jsonl per vendor; returns the manifest paths."""
    manifests = {}
    for vendor in vendors:
        package = fetch_npm_package(f"emoji-datasource-{vendor}", EMOJI_VERSION, cache_dir)
        records = build_vendor(package, vendor, Path(out_dir))
        manifests[vendor] = Path(out_dir) / f"{vendor}.jsonl"
        write_manifest(manifests[vendor], records)
    return manifests
