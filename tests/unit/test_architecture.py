"""The floor plan, checked from the source: layers import downward only.

app (CLI, config, wiring, demo, logging) is the top floor and nothing imports it; rerank and
plugin stand on encoders; encoders imports neither; plugin never imports rerank; only the
training command handlers reach into the training packages, and serving code never does.
Lazy imports inside functions count: they run too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"app": "mmsearch.app", "encoders": "mmsearch.encoders",
           "plugin": "mmsearch.plugin", "rerank": "mmsearch.rerank",
           "proto/mmsearch": "mmsearch"}
TRAINING = ("mmsearch.encoders.train", "mmsearch.rerank.train")
# may import the training packages: themselves, and the command handlers that run them
TRAINING_CALLERS = ("mmsearch.app.commands.train", *TRAINING)


def _module_name(path: Path) -> str:
    for folder, package in FOLDERS.items():
        base = ROOT / folder
        if base in path.parents:
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise AssertionError(path)


def _modules() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            if "_pb2" not in path.name:
                found[_module_name(path)] = path
    return found


def _imports(module: str, path: Path) -> set[str]:
    """Every module name this file imports, relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]) if base else ".".join(anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


MODULES = _modules()
IMPORTS = {name: _imports(name, path) for name, path in MODULES.items()}


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def _offenders(sources: str | tuple[str, ...], targets: str | tuple[str, ...],
               exempt: tuple[str, ...] = ()) -> list[str]:
    sources = (sources,) if isinstance(sources, str) else sources
    targets = (targets,) if isinstance(targets, str) else targets
    return sorted(f"{module} imports {name}" for module, names in IMPORTS.items()
                  if any(_within(module, s) for s in sources)
                  and not any(_within(module, e) for e in exempt)
                  for name in names if any(_within(name, t) for t in targets))


def test_the_walk_finds_the_library() -> None:
    assert {"mmsearch.app.cli", "mmsearch.encoders.export", "mmsearch.plugin.worker",
            "mmsearch.rerank.pipeline", "mmsearch"} <= set(MODULES)
    assert "mmsearch.encoders.runtimes.base" in IMPORTS["mmsearch.app.wiring"]


@pytest.mark.parametrize(("sources", "targets"), [
    (("mmsearch.encoders", "mmsearch.plugin", "mmsearch.rerank", "mmsearch.v1"),
     "mmsearch.app"),
    ("mmsearch.encoders", ("mmsearch.plugin", "mmsearch.rerank")),
    ("mmsearch.plugin", "mmsearch.rerank"),
])
def test_layers_import_downward_only(sources: tuple[str, ...] | str,
                                     targets: tuple[str, ...] | str) -> None:
    assert _offenders(sources, targets) == []


def test_only_training_commands_import_training_code() -> None:
    assert _offenders("mmsearch", TRAINING, exempt=TRAINING_CALLERS) == []


def test_the_root_package_runs_no_application_code() -> None:
    assert IMPORTS["mmsearch"] == set()


def test_nothing_imports_the_old_top_level_names() -> None:
    old = ("encoders", "plugin", "rerank")
    assert _offenders("mmsearch", old) == []
