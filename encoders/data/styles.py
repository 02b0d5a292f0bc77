"""`mmsearch data styles`: more drawings of the same identities, one manifest per style, for
many-instance training and leave-one-family-out validation (issue 15).

The identity (`label`) is exactly the google datasource's `unified` string (FE0F
included), as in `mmsearch data emoji`; another style's drawing is matched to it with FE0F
removed on both sides, and the split is the same sha256 rule on that label. Styles whose
package names icons only by name are matched through emojibase's English labels, then
CLDR's; what maps is counted, the rest dropped and counted, never guessed. Every style's
package, version, licence (as the package states it) and counts go to `sources.json`.
openmoji is not here: it stays never-trained (`mmsearch data openmoji`).
"""

from __future__ import annotations

import io
import json
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from mmsearch.encoders.data.captions import (
    CLDR,
    EMOJIBASE,
    Caption,
    cldr_names,
    cross_check,
    read_emojibase,
)
from mmsearch.encoders.data.emoji import EMOJI_VERSION, composite_on_white, identities
from mmsearch.encoders.data.records import ItemRecord, split_of, strip_fe0f, write_manifest
from mmsearch.encoders.errors import BackendMissingError
from mmsearch.encoders.preprocess import on_white

log = logging.getLogger(__name__)
Fetch = Callable[[str, str], Path]  # (npm name, version) -> unpacked package folder
Drawing = tuple[str, Callable[[Path], None]]  # (code points, write the 64 px PNG there)
SIZE = 64
UNMAPPED = ""  # an icon whose name maps to no identity


def _never_written(target: Path) -> None:
    raise AssertionError(f"an unmapped icon has no identity to be written as {target}")


@dataclass(frozen=True)
class Style:
    name: str
    family: str  # held out together in leave-one-family-out validation
    package: str
    version: str
    licence: str  # as the package states it
    source: str  # datasource | png | iconify | iconify-names
    chars_from: tuple[str, str] | None = None  # (package, version) whose chars.json to use
    # JoyPixels names its files without the zero-width joiners (1f9b8-1f3fe-2642.png): match
    # with U+200D removed on both sides too (checked to keep every google identity apart)
    without_zwj: bool = False


STYLES = (
    Style("emojione4", "emojione", "emoji-datasource-emojione", "4.0.4", "MIT", "datasource"),
    Style("joypixels", "emojione", "emoji-assets", "11.0.0",
          "JoyPixels Free License (https://www.joypixels.com/licenses/free): fetched by the "
          "user's own npm pack, never redistributed here", "png", without_zwj=True),
    Style("emojione-v1", "emojione", "@iconify-json/emojione-v1", "1.2.3", "CC-BY-SA-4.0",
          "iconify-names"),
    Style("fluent-flat", "fluent", "@iconify-json/fluent-emoji-flat", "1.2.6", "MIT",
          "iconify"),
    Style("fluent-colour", "fluent", "@iconify-json/fluent-emoji", "1.2.7", "MIT", "iconify",
          chars_from=("@iconify-json/fluent-emoji-flat", "1.2.6")),
    Style("fluent-high-contrast", "fluent", "@iconify-json/fluent-emoji-high-contrast",
          "1.2.6", "MIT", "iconify"),
    Style("noto-v1", "noto", "@iconify-json/noto-v1", "1.2.5", "Apache-2.0", "iconify-names"),
)


def slug(name: str) -> str:
    """Iconify's icon-name form of a label: "Flag: Åland" -> "flag-aland"."""
    plain = name.lower().replace("\u2019", "").replace("'", "").replace("&", "and")
    plain = unicodedata.normalize("NFKD", plain).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")


def codes_by_name(fetch: Fetch) -> dict[str, str]:
    """slug(English name) -> code points, from emojibase (labels, skin tones included),
    then CLDR's tts names for what emojibase lacks."""
    names: dict[str, str] = {}
    emojibase = fetch(*EMOJIBASE)
    for entry in json.loads((emojibase / "en" / "data.json").read_text()):
        for item in [entry, *entry.get("skins", [])]:
            names.setdefault(slug(item["label"]), item["hexcode"])
    cldr = fetch(*CLDR)
    annotations = json.loads((cldr / "annotations" / "en" / "annotations.json").read_text())
    for emoji, names_of in annotations["annotations"]["annotations"].items():
        for tts in names_of.get("tts", []):
            names.setdefault(slug(tts), "-".join(f"{ord(c):X}" for c in emoji))
    return names


def render_svg_text(svg: str, target: Path) -> None:
    try:
        import cairosvg
    except (ImportError, OSError):
        raise BackendMissingError("cairosvg (and libcairo2)", "pip install cairosvg") from None
    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=SIZE, output_height=SIZE)
    with Image.open(io.BytesIO(png)) as image:
        flat = on_white(image)
    target.parent.mkdir(parents=True, exist_ok=True)
    flat.save(target)


def iconify_svg(icons: dict[str, Any], name: str) -> str | None:
    """The icon (or the alias's parent, if the alias does not transform it) as an SVG."""
    alias = icons.get("aliases", {}).get(name)
    if alias is not None:
        if set(alias) - {"parent"}:
            return None  # a rotated or flipped variant: not a drawing of its own
        name = alias["parent"]
    icon = icons["icons"].get(name)
    if icon is None:
        return None
    width, height = icon.get("width", icons.get("width", 16)), icon.get(
        "height", icons.get("height", 16))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="{icon.get("left", 0)} '
            f'{icon.get("top", 0)} {width} {height}">{icon["body"]}</svg>')


def drawings(style: Style, fetch: Fetch) -> Iterator[Drawing]:
    package = fetch(style.package, style.version)
    if style.source == "datasource":
        vendor = style.package.rsplit("-", 1)[1]
        entries = json.loads((package / "emoji.json").read_text())
        for unified, image, _caption, _entry in identities(entries, vendor, {}):
            source = package / "img" / vendor / "64" / image
            yield unified, lambda target, s=source: composite_on_white(s, target)
    elif style.source == "png":
        for path in sorted((package / "png" / "64").glob("*.png")):
            yield path.stem.upper(), lambda target, s=path: composite_on_white(s, target)
    else:
        icons = json.loads((package / "icons.json").read_text())
        if style.source == "iconify":
            chars_package = fetch(*style.chars_from) if style.chars_from else package
            by_code = json.loads((chars_package / "chars.json").read_text())
        else:
            names = codes_by_name(fetch)
            by_code = {names[n]: n for n in sorted(icons["icons"]) if n in names}
            for _name in sorted(n for n in icons["icons"] if n not in names):
                yield UNMAPPED, _never_written  # counted as dropped, never guessed
        for code, name in sorted(by_code.items()):
            svg = iconify_svg(icons, name)
            if svg is not None:
                yield code.upper(), lambda target, t=svg: render_svg_text(t, target)


def match_key(code: str, without_zwj: bool) -> str:
    key = strip_fe0f(code)
    return "-".join(p for p in key.split("-") if p != "200D") if without_zwj else key


def google_identities(fetch: Fetch, captions: dict[str, Caption], without_zwj: bool = False
                      ) -> dict[str, tuple[str, str, dict[str, Any]]]:
    """match key -> (google unified, caption, entry): the labels (and the captions) every
    style uses, as `mmsearch data emoji` writes them."""
    package = fetch("emoji-datasource-google", EMOJI_VERSION)
    entries = json.loads((package / "emoji.json").read_text())
    found: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for unified, _image, caption, entry in identities(entries, "google", captions):
        key = match_key(unified, without_zwj)
        if key in found:
            raise ValueError(f"{unified} and {found[key][0]} match the same drawings")
        found[key] = (unified, caption, entry)
    return found


def build_style(style: Style, fetch: Fetch, wanted: dict[str, tuple[str, str, dict]],
                root: Path) -> tuple[list[ItemRecord], dict[str, int]]:
    """The style's drawings of known identities, their PNGs written under `root`."""
    records: list[ItemRecord] = []
    seen: set[str] = set()
    offered = unmatched = unrenderable = 0
    for code, write_png in drawings(style, fetch):
        offered += 1
        match = wanted.get(match_key(code, style.without_zwj))
        if match is None or match[0] in seen:
            unmatched += 1
            continue
        unified, caption, entry = match
        seen.add(unified)
        relative = f"images/{style.name}/{unified.lower()}.png"
        if not (root / relative).is_file():
            try:
                write_png(root / relative)
            except Exception as exc:  # noqa: BLE001 - cairo raises MemoryError, CairoError, ...
                log.warning("%s %s: cannot render (%s): left out", style.name, code, exc)
                unrenderable += 1
                continue
        attrs = {"category": entry["category"], "subcategory": entry["subcategory"],
                 "vendor": style.name, "family": style.family}
        records.append(ItemRecord(f"{style.name}:{unified}", relative, caption, unified,
                                  split_of(unified), attrs))
    return records, {"drawings": offered, "items": len(records), "dropped": unmatched,
                     "unrenderable": unrenderable}


def prepare_styles(out_dir: Path, fetch: Fetch, names: tuple[str, ...] | None = None
                   ) -> dict[str, Path]:
    """<out_dir>/styles/<style>.jsonl per style (images beside them, under images/) and
    <out_dir>/styles/sources.json (with the captions' cross-check against CLDR)."""
    root = Path(out_dir) / "styles"
    chosen = [s for s in STYLES if names is None or s.name in names]
    captions = read_emojibase(fetch(*EMOJIBASE))
    write_sources(root, {"captions": {
        "package": f"{EMOJIBASE[0]}@{EMOJIBASE[1]}", "cross_check": f"{CLDR[0]}@{CLDR[1]}",
        **cross_check({code: c.label for code, c in captions.items()},
                      cldr_names(fetch(*CLDR)))}})
    manifests = {}
    for style in chosen:
        wanted = google_identities(fetch, captions, style.without_zwj)
        records, counts = build_style(style, fetch, wanted, root)
        manifests[style.name] = root / f"{style.name}.jsonl"
        write_manifest(manifests[style.name], records)
        sources = {style.name: {"package": style.package, "version": style.version,
                                "licence": style.licence, "family": style.family, **counts}}
        log.info("%s: %s", style.name, sources[style.name])
        write_sources(root, sources)  # per style, so a long run keeps what it finished
    return manifests


def write_sources(root: Path, sources: dict[str, Any]) -> None:
    path = root / "sources.json"
    existing = json.loads(path.read_text()) if path.is_file() else {}
    root.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**existing, **sources}, indent=1, sort_keys=True))
