"""`mmsearch data emoji`: Google and Twitter emoji (emoji-datasource-* 16.0.0) as manifests.

Identity (label) = the `unified` code of each emoji and each skin variation; the same
identity drawn by the two vendors is an item-to-item match. Caption = emojibase's CLDR
label with its keywords (`captions.py`); an identity emojibase lacks keeps the lower-cased
Unicode name plus the tone(s) for a skin variation. No two identities share a caption.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.encoders.data.captions import EMOJIBASE, Caption, read_emojibase, with_short_names
from mmsearch.encoders.data.npm import fetch_npm_package
from mmsearch.encoders.data.records import ItemRecord, split_of, strip_fe0f, write_manifest
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


def caption_text(unified: str, fallback: str, entry: Mapping[str, Any],
                 captions: Mapping[str, Caption]) -> str:
    found = captions.get(strip_fe0f(unified))
    return with_short_names(found, entry).text() if found else fallback


def identities(entries: list[dict[str, Any]], vendor: str, captions: Mapping[str, Caption]
               ) -> Iterator[tuple[str, str, str, dict]]:
    """(unified, image file name, caption, emoji entry) for every drawing the vendor has;
    the caption from `captions` (FE0F-free code -> Caption), else the Unicode name."""
    flag = f"has_img_{vendor}"
    names = Counter((entry.get("name") or "").lower() for entry in entries)
    shared = {name for name, count in names.items() if count > 1}
    for entry in entries:
        name = base_caption(entry, shared)
        if entry.get(flag):
            yield (entry["unified"], entry["image"],
                   caption_text(entry["unified"], name, entry, captions), entry)
        for modifiers, variation in (entry.get("skin_variations") or {}).items():
            if variation.get(flag):
                unified = variation["unified"]
                yield (unified, variation["image"], caption_text(
                    unified, tone_caption(name, modifiers), entry, captions), entry)


def package_licence(package: Path) -> str:
    """The licence as the package's own package.json states it."""
    manifest = json.loads((package / "package.json").read_text())
    return str(manifest.get("license") or "not stated in package.json")


def composite_on_white(source: Path, target: Path) -> None:
    with Image.open(source) as image:
        flat = on_white(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    flat.save(target)


def build_vendor(package: Path, vendor: str, out_dir: Path, captions: Mapping[str, Caption]
                 ) -> list[ItemRecord]:
    entries = json.loads((package / "emoji.json").read_text())
    records: list[ItemRecord] = []
    owners: dict[str, str] = {}
    for unified, image_name, caption, entry in identities(entries, vendor, captions):
        if owners.setdefault(caption, unified) != unified:
            raise ValueError(f"caption {caption!r} shared by {unified} and {owners[caption]}")
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
    """Write <out_dir>/<vendor>.jsonl per vendor and <out_dir>/sources.json (packages and
    how many captions came from emojibase); returns the manifest paths."""
    captions = read_emojibase(fetch_npm_package(*EMOJIBASE, cache_dir))
    manifests = {}
    sources: dict[str, Any] = {"captions": f"{EMOJIBASE[0]}@{EMOJIBASE[1]}"}
    for vendor in vendors:
        package = fetch_npm_package(f"emoji-datasource-{vendor}", EMOJI_VERSION, cache_dir)
        records = build_vendor(package, vendor, Path(out_dir), captions)
        manifests[vendor] = Path(out_dir) / f"{vendor}.jsonl"
        write_manifest(manifests[vendor], records)
        named = sum(strip_fe0f(str(r.label)) in captions for r in records)
        sources[vendor] = {"package": f"emoji-datasource-{vendor}@{EMOJI_VERSION}",
                           "licence": package_licence(package),
                           "items": len(records), "captions_from_emojibase": named,
                           "captions_from_unicode_names": len(records) - named}
    (Path(out_dir) / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")
    return manifests
