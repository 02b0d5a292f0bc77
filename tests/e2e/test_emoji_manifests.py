"""The prepared emoji manifests keep their identities: every item's id, label and split are
those written before the captions moved to CLDR names (the fingerprint in
tests/support/emoji_identities.json), and 'red heart' is U+2764's caption."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from mmsearch.encoders.data.records import read_manifest

ROOT = Path(__file__).resolve().parents[2]
EXPECTED = json.loads((ROOT / "tests/support/emoji_identities.json").read_text())


@pytest.mark.parametrize("vendor", ["google", "twitter"])
def test_labels_and_split_are_unchanged(vendor: str) -> None:
    manifest = ROOT / "data/emoji" / f"{vendor}.jsonl"
    if not manifest.is_file():
        pytest.fail("data/emoji is missing: run `mmsearch data emoji` (make test does)")
    records = list(read_manifest(manifest))
    lines = "".join(f"{r.id}\t{r.label}\t{r.split}\n" for r in records)
    assert len(records) == EXPECTED[vendor]["items"]
    assert hashlib.sha256(lines.encode()).hexdigest() == \
        EXPECTED[vendor]["sha256_of_id_label_split_lines"]
    captions = {r.label: r.text or "" for r in records}
    assert captions["2764-FE0F"].startswith("red heart (")
    assert captions["1F44D"].startswith("thumbs up (")
    assert len(set(captions.values())) == len(captions)
