"""The captions users type: emojibase's English labels (the CLDR short names, skin tones
included, so U+2764 is "red heart", not Unicode's "heavy black heart") and keywords
(emojibase's tags and the datasource's short names, as people type them).

emojibase-data is the source; CLDR's own annotations (cldr-annotations-full) are the
cross-check `mmsearch data styles` records. An identity emojibase lacks keeps its Unicode
name, and how many did is recorded, never hidden.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmsearch.encoders.data.records import strip_fe0f

EMOJIBASE = ("emojibase-data", "17.0.0")
CLDR = ("cldr-annotations-full", "48.2.0")


@dataclass(frozen=True)
class Caption:
    label: str  # the CLDR short name, what a name query types
    keywords: tuple[str, ...] = ()

    def text(self) -> str:
        """The item's caption: 'red heart (emotion, heart, love, red)'."""
        return f"{self.label} ({', '.join(self.keywords)})" if self.keywords else self.label


def name_of(caption: str) -> str:
    """The label part of a caption Caption.text() wrote: what a name query types (CLDR
    label only, no keywords). The split is at the last " (", since a label may hold
    parentheses itself ("flag: Myanmar (Burma)") and keywords always follow it."""
    if caption.endswith(")") and " (" in caption:
        return caption.rsplit(" (", 1)[0]
    return caption


def read_emojibase(package: Path) -> dict[str, Caption]:
    """FE0F-free code points -> Caption; a skin variation gets its own label and its
    base emoji's tags."""
    captions: dict[str, Caption] = {}
    for entry in json.loads((package / "en" / "data.json").read_text()):
        tags = tuple(entry.get("tags") or ())
        for item in [entry, *(entry.get("skins") or ())]:
            captions[strip_fe0f(item["hexcode"])] = Caption(item["label"], tags)
    return captions


def with_short_names(caption: Caption, entry: Mapping[str, Any]) -> Caption:
    """Add the datasource's short names (':thumbsup:' users type) to the keywords, once
    each, never repeating the label."""
    keywords = list(caption.keywords)
    for short in entry.get("short_names") or [entry.get("short_name") or ""]:
        word = short.replace("_", " ").lower()
        if word and word != caption.label and word not in keywords:
            keywords.append(word)
    return Caption(caption.label, tuple(keywords))


def cldr_names(package: Path) -> dict[str, str]:
    """FE0F-free code points -> CLDR's English tts name (base emoji only: skin tones are
    in CLDR's derived annotations)."""
    annotations = json.loads((package / "annotations" / "en" / "annotations.json").read_text())
    names = {}
    for emoji, names_of in annotations["annotations"]["annotations"].items():
        if names_of.get("tts"):
            code = "-".join(f"{ord(c):X}" for c in emoji)
            names[strip_fe0f(code)] = names_of["tts"][0]
    return names


def cross_check(labels: Mapping[str, str], cldr: Mapping[str, str]) -> dict[str, Any]:
    """How the captions' labels (FE0F-free code -> label) agree with CLDR's names."""
    agree = [code for code, label in labels.items() if cldr.get(code) == label]
    differ = sorted(code for code, label in labels.items()
                    if code in cldr and cldr[code] != label)
    return {"labels": len(labels), "agree_with_cldr": len(agree), "differ": len(differ),
            "not_in_cldr_base_annotations": len(labels) - len(agree) - len(differ),
            "differ_examples": {code: [labels[code], cldr[code]] for code in differ[:10]}}
