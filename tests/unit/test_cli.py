"""Every subcommand has a real --help; the console script runs; config errors are clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mmsearch.app.cli import build_parser, main

SUBCOMMANDS = [["data"], ["train", "baseline"], ["train", "encoder"], ["train", "colour"],
               ["train", "reranker"],
               ["export"], ["ingest"], ["delete"], ["collections"], ["lite-server"], ["serve"],
               ["search"],
               ["index"], *(["index", a] for a in ("show", "bench", "recommend", "rebuild",
                                                    "rollback", "funnel")), ["bench"]]


@pytest.mark.parametrize("words", SUBCOMMANDS, ids=" ".join)
def test_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*words, "--help"])
    assert exit_.value.code == 0
    assert "usage: mmsearch " + " ".join(words) in capsys.readouterr().out


def test_help_defaults_come_from_the_config(capsys: pytest.CaptureFixture[str]) -> None:
    from mmsearch.app.config import MilvusConfig, ModelsConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["ingest", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default {ModelsConfig.model})" in text and "baseline)" not in text
    assert f"(default {MilvusConfig.uri}," in text


def test_console_script_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "mmsearch.app.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    assert "ingest" in out and "serve" in out


def test_bad_config_is_a_clean_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("limits:\n  max_top_k: nope\n")
    assert main(["export", "--config", str(config)]) == 1
    assert "limits.max_top_k" in capsys.readouterr().err


def test_train_colour_names_the_bad_flag(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert main(["train", "colour", "--manifest", str(missing)]) == 2
    assert "--manifest" in capsys.readouterr().err
    manifest = tmp_path / "items.jsonl"
    manifest.write_text("")
    assert main(["train", "colour", "--manifest", str(manifest),
                 "--model-dir", str(tmp_path / "empty")]) == 2
    assert "--model-dir: no model.json" in capsys.readouterr().err
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "model.json").write_text("{}")
    assert main(["train", "colour", "--manifest", str(manifest),
                 "--model-dir", str(model_dir)]) == 2
    assert "no train-split items" in capsys.readouterr().err
