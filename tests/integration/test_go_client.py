"""The Go example (examples/go), built offline from Debian's Go packages, against the real
sidecar: Info, Search by id and by text, Rerank of the hits. Skips, saying what to install,
where the Debian packages are missing (.ci/run installs them)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from support.sidecar_stack import WIDTHS

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
if not Path("/usr/share/gocode/src/google.golang.org/grpc").is_dir():
    MISSING.append("golang-google-grpc-dev")

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"missing {MISSING}: apt-get install "
                                "golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc "
                                "golang-google-grpc-dev golang-google-protobuf-dev")


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("go")
    done = subprocess.run([str(ROOT / "examples/go/build.sh"), str(out)], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out / "mmsearch-go"


def test_go_client_search_and_rerank(stack: dict, go_client: Path) -> None:
    port = stack["servers"]["rerank"][1]
    done = subprocess.run([str(go_client), "-addr", f"127.0.0.1:{port}", "-base", "items",
                           "-id", "item-3", "-top-k", "4"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert f"widths {list(WIDTHS)}".replace(",", "") in lines[0]
    searched = [line.split("\t")[1] for line in lines if line.startswith("search ")]
    reranked = [line.split("\t")[1] for line in lines if line.startswith("rerank ")]
    assert len(searched) == 4 and "item-3" not in searched  # self excluded
    assert sorted(reranked) == sorted(searched)  # the same candidates, reordered
    by_text = subprocess.run([str(go_client), "-addr", f"127.0.0.1:{port}", "-text",
                              "red face", "-top-k", "2"], capture_output=True, text=True,
                             timeout=60)
    assert by_text.returncode == 0, by_text.stderr
    assert sum(line.startswith("search ") for line in by_text.stdout.splitlines()) == 2
    with_fields = subprocess.run([str(go_client), "-addr", f"127.0.0.1:{port}", "-id",
                                  "item-3", "-top-k", "2", "-fields", "label,category,rank,flag"],
                                 capture_output=True, text=True, timeout=60)
    assert with_fields.returncode == 0, with_fields.stderr
    hit = next(line for line in with_fields.stdout.splitlines() if line.startswith("search "))
    printed = dict(pair.split("=", 1) for pair in hit.split("\t")[-1].split(" "))
    assert set(printed) == {"category", "flag", "label", "rank"}
    assert printed["rank"].isdigit() and printed["flag"] in ("true", "false")
    assert printed["category"].startswith('"')  # a string Value, typed end to end
    batched = subprocess.run([str(go_client), "-addr", f"127.0.0.1:{port}", "-text", "red face",
                              "-top-k", "3", "-batch"], capture_output=True, text=True,
                             timeout=60)
    assert batched.returncode == 0, batched.stderr
    items = [line.split("\t") for line in batched.stdout.splitlines()
             if line.startswith("batch ")]
    assert items == [["batch 0", "hits", "3"], ["batch 1", "error", "NOT_FOUND"]]


def test_go_client_reports_grpc_errors(stack: dict, go_client: Path) -> None:
    port = stack["servers"]["open"][1]
    done = subprocess.run([str(go_client), "-addr", f"127.0.0.1:{port}", "-base", "nope",
                           "-id", "item-3"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "NotFound" in done.stderr and "base" in done.stderr
