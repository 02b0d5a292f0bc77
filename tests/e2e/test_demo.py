"""The demo command in a reduced form: real data, the shipped model, Milvus Lite's server,
the sidecar as its own process, real gRPC queries; then a second run that resumes.

Needs `data/emoji` and the default model's export (`make test` prepares both: `mmsearch data
emoji`, `mmsearch export`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mmsearch.app.config import ModelsConfig

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ModelsConfig()  # what the demo runs: the default model and scorer
NEEDED = (ROOT / "data/emoji/google.jsonl",
          ROOT / "models/export" / DEFAULTS.model / "manifest.json",
          ROOT / "models/export" / DEFAULTS.scorer / "scorer.onnx")


def run_demo(work: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "demo", "--identities", "60",
                           "--work-dir", str(work), "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_demo_reduced(tmp_path: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in NEEDED if not p.exists()]
    if missing:
        pytest.fail(f"missing {missing}: run `make data export` (make test does)")
    first = run_demo(tmp_path / "demo", tmp_path / "first.json")
    assert first.returncode == 0, first.stderr[-4000:]
    result = json.loads((tmp_path / "first.json").read_text())
    assert len(result["queries"]) == 5
    assert all(q["hits"] for q in result["queries"])  # every query returns hits
    by_id = next(q for q in result["queries"] if q["title"].startswith("stored id"))
    query_id = by_id["title"].split()[2]
    assert query_id not in [h["id"] for h in by_id["hits"]]  # self excluded
    # the google item queried by id finds the twitter drawing of the same identity first
    assert by_id["hits"][0]["id"] == "twitter:" + query_id.split(":", 1)[1], by_id["hits"]
    right, total = result["by_id_top1"]
    # and so does nearly every google item of the subset (chance is 1 in ~120; measured
    # 59/63 with the shipped embedder and scorer)
    assert total >= 60 and right / total >= 0.8, result["by_id_top1"]
    filtered = next(q for q in result["queries"] if "filter" in q["title"])
    subset = [json.loads(line) for line in (ROOT / "data/emoji/demo-60.jsonl").open()]
    animals = {r["id"] for r in subset if r["attrs"]["category"] == "Animals & Nature"}
    assert {h["id"] for h in filtered["hits"]} <= animals
    assert "gRPC sidecar: stopped cleanly" in first.stdout
    # the results come before the servers' stop lines, and hits show names, not code points
    assert first.stdout.index("== text only") < first.stdout.index("gRPC sidecar: stopped")
    # names as users type them (CLDR labels): each finds its own emoji first, in a subset
    # that holds the purple heart and the thumbs down as well
    for name, label in (("red heart", "2764-FE0F"), ("thumbs up", "1F44D")):
        by_name = next(q for q in result["queries"] if q["title"] == f"text only: '{name}'")
        assert by_name["hits"][0]["label"] == label, by_name["hits"][:3]
    image_only = next(q for q in result["queries"] if q["title"].startswith("image only"))
    assert all(h["id"].startswith("twitter:") for h in image_only["hits"])  # not itself
    assert image_only["hits"][0]["id"].endswith("1F436"), image_only["hits"]  # the dog face
    assert " dog face " in first.stdout
    assert Path(result["contact_sheet"]).read_text().count("<img") >= 10

    second = run_demo(tmp_path / "demo", tmp_path / "second.json")  # resumes: no re-ingest
    assert second.returncode == 0, second.stderr[-4000:]
    assert "already finished" in second.stdout
    assert json.loads((tmp_path / "second.json").read_text())["by_id_top1"] == [right, total]
