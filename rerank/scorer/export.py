"""Scorer checkpoint (scorer.safetensors + scorer.json) -> scorer.onnx + scorer.json."""

from __future__ import annotations

import json
from pathlib import Path

from encoders.manifest import sha256_file
from rerank.scorer.model import ListwiseScorer, ScorerConfig
from rerank.scorer.runtime import INPUTS, ScorerFiles

CHECKPOINT = "scorer.safetensors"
META = "scorer.json"


def save_checkpoint(model: ListwiseScorer, folder: Path, info: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / CHECKPOINT))
    (folder / META).write_text(json.dumps({"config": model.config.to_json(), **info}, indent=2))


def load_checkpoint(folder: Path) -> tuple[ListwiseScorer, dict]:
    from safetensors.torch import load_file

    meta = json.loads((Path(folder) / META).read_text())
    model = ListwiseScorer(ScorerConfig(**meta["config"]))
    model.load_state_dict(load_file(str(Path(folder) / CHECKPOINT)))
    return model.eval(), meta


def export_scorer(checkpoint: Path, out_dir: Path, name: str = "scorer") -> Path:
    import torch

    model, meta = load_checkpoint(checkpoint)
    c = model.config
    files = ScorerFiles(Path(out_dir))
    files.folder.mkdir(parents=True, exist_ok=True)
    b, n = 2, 4
    example = (torch.zeros(b, c.width), torch.zeros(b, c.cells, c.local_dim), torch.ones(b),
               torch.zeros(b, n, c.width), torch.zeros(b, n, c.cells, c.local_dim),
               torch.ones(b, n), torch.zeros(b, n), torch.ones(b, n, dtype=torch.bool))
    dynamic = {"query": {0: "chunks"}, "query_local": {0: "chunks"},
               "query_local_mask": {0: "chunks"}, "listwise": {0: "chunks", 1: "candidates"},
               "calibrated": {0: "chunks", 1: "candidates"}}
    for key in ("cands", "cand_local", "cand_local_mask", "first_stage", "valid"):
        dynamic[key] = {0: "chunks", 1: "candidates"}
    with torch.inference_mode():
        torch.onnx.export(model, example, str(files.onnx), input_names=list(INPUTS),
                          output_names=["listwise", "calibrated"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    info = {k: v for k, v in meta.items() if k != "config"}
    files.meta.write_text(json.dumps({"name": name, "config": c.to_json(),
                                      "sha256": sha256_file(files.onnx), **info}, indent=2))
    return files.folder
