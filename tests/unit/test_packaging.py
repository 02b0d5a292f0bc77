"""One installed name (`mmsearch`), every package listed, and serving imports stay
torch-free."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("app", "encoders", "plugin", "rerank", "proto", "pyproject.toml", "README.md")


def test_every_package_is_listed() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for package, folder in data["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *parts]))
    assert found == set(data["packages"])


def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (ROOT / name).is_dir() else shutil.copy
        copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("mmsearch-*.whl"))
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mmsearch"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-index", str(wheel)], check=True, capture_output=True)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    installed = {p.name for p in site.iterdir()
                 if not p.name.endswith((".dist-info", ".pth")) and p.name not in (
                     "pip", "_distutils_hack", "setuptools", "pkg_resources", "__pycache__")}
    assert installed == {"mmsearch"}
    assert (site / "mmsearch" / "encoders" / "export.py").is_file()
    assert (site / "mmsearch" / "v1" / "service_config.json").is_file()


def _run_outside_checkout(code: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=cwd, env=env, check=False)


def test_old_top_level_names_are_gone(tmp_path: Path) -> None:
    for name in ("encoders", "plugin", "rerank"):
        out = _run_outside_checkout(f"import {name}", tmp_path)
        assert out.returncode != 0 and "No module named" in out.stderr, name
    assert _run_outside_checkout("import mmsearch.encoders, mmsearch.app.cli",
                                 tmp_path).returncode == 0


def test_the_library_import_runs_no_cli(tmp_path: Path) -> None:
    out = _run_outside_checkout("import sys, mmsearch; print(sorted(m for m in sys.modules "
                                "if m.startswith('mmsearch')))", tmp_path)
    assert out.stdout.strip() == "['mmsearch']"


def test_serving_imports_do_not_pull_torch(tmp_path: Path) -> None:
    code = ("import sys, mmsearch.encoders, mmsearch.encoders.runtimes.onnx_runtime, "
            "mmsearch.app.config, mmsearch.app.wiring, mmsearch.rerank.server;"
            "print('torch' in sys.modules, 'transformers' in sys.modules)")
    out = _run_outside_checkout(code, tmp_path)
    assert out.stdout.strip() == "False False", out.stderr


def test_make_exports_the_default_model_and_scorer() -> None:
    """`make test` and `make demo` rebuild models/export/$(MODEL) with `mmsearch export`,
    which exports the configured default: the two must name the same model and scorer."""
    import re

    from mmsearch.app.config import ModelsConfig

    makefile = (ROOT / "Makefile").read_text()
    named = dict(re.findall(r"^(MODEL|SCORER) := (\S+)$", makefile, re.MULTILINE))
    defaults = ModelsConfig()
    assert named == {"MODEL": defaults.model, "SCORER": defaults.scorer}
    assert (ROOT / "models" / defaults.model / "model.json").is_file()
    assert (ROOT / "models" / defaults.scorer / "scorer.json").is_file()
