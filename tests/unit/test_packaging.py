"""pyproject lists every import package, and `import encoders` stays torch-free."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    listed = set(data["tool"]["setuptools"]["packages"])
    found = set()
    for top in ("encoders", "plugin", "rerank"):
        for init in (ROOT / top).rglob("__init__.py"):
            found.add(".".join(init.parent.relative_to(ROOT).parts))
    for init in (ROOT / "proto" / "mmsearch").rglob("__init__.py"):
        found.add(".".join(init.parent.relative_to(ROOT / "proto").parts))
    assert found == listed


def test_serving_imports_do_not_pull_torch() -> None:
    code = ("import sys, encoders, encoders.runtimes.onnx_runtime, mmsearch.config;"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "False False"

