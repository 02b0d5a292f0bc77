"""The committed stubs are what the pinned grpcio-tools generates from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ("search_pb2.py", "search_pb2.pyi", "search_pb2_grpc.py")


def test_committed_stubs_are_fresh(tmp_path: Path) -> None:
    protos = sorted(str(p.relative_to(ROOT / "proto"))
                    for p in (ROOT / "proto" / "mmsearch" / "v1").glob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT / "proto"),
                    f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
                    f"--grpc_python_out={tmp_path}", *protos], check=True)
    for name in GENERATED:
        fresh = (tmp_path / "mmsearch" / "v1" / name).read_text()
        committed = (ROOT / "proto" / "mmsearch" / "v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: run `make proto` and commit"


def test_enums_have_a_safe_zero_value() -> None:
    from mmsearch.v1 import search_pb2

    for enum in search_pb2.DESCRIPTOR.enum_types_by_name.values():
        assert enum.values[0].number == 0 and enum.values[0].name.endswith("_UNSPECIFIED")
