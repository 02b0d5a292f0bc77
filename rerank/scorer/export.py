"""Scorer checkpoint (scorer.safetensors + scorer.json) -> scorer.onnx + scorer.json."""

from __future__ import annotations

import json
from pathlib import Path

from mmsearch.encoders.export import known_export_warnings
from mmsearch.encoders.manifest import sha256_file
from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig
from mmsearch.rerank.scorer.runtime import INPUTS, ScorerFiles

CHECKPOINT = "scorer.safetensors"
META = "scorer.json"


def save_checkpoint(model: ListwiseScorer, folder: Path, info: dict) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / CHECKPOINT))
    # the model's own config wins over a copied-in meta's (an ablation saved with the
    # shipped scorer's info must still load as the variant it is)
    meta = {**info, "config": model.config.to_json()}
    (folder / META).write_text(json.dumps(meta, indent=2))


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
    with torch.inference_mode(), known_export_warnings():
        torch.onnx.export(model, example, str(files.onnx), input_names=list(INPUTS),
                          output_names=["listwise", "calibrated"], dynamic_axes=dynamic,
                          opset_version=17, dynamo=False)
    info = {k: v for k, v in meta.items() if k != "config"}
    files.meta.write_text(json.dumps({"name": name, "config": c.to_json(),
                                      "sha256": sha256_file(files.onnx), **info}, indent=2))
    return files.folder


def build_scorer_engine(folder: Path, chunk_size: int = 16, max_chunks: int = 64) -> Path:
    """fp16 TensorRT engine for the exported scorer (profile: 1..max_chunks chunks of up
    to chunk_size candidates), recorded with its hash in scorer.json."""
    from mmsearch.encoders.runtimes.tensorrt_runtime import build_engine

    files = ScorerFiles(Path(folder))
    meta = json.loads(files.meta.read_text())
    c = meta["config"]
    opt = max(1, max_chunks // 4)

    def profile(*tail: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (1, *tail), (opt, *tail), (max_chunks, *tail)

    def per_candidate(*tail: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        return (1, 1, *tail), (opt, chunk_size, *tail), (max_chunks, chunk_size, *tail)

    shapes = {"query": profile(c["width"]), "query_local": profile(c["cells"], c["local_dim"]),
              "query_local_mask": profile(), "cands": per_candidate(c["width"]),
              "cand_local": per_candidate(c["cells"], c["local_dim"]),
              "cand_local_mask": per_candidate(), "first_stage": per_candidate(),
              "valid": per_candidate()}
    engine = files.folder / "scorer.fp16.engine"
    entry = build_engine(files.onnx, engine, shapes)
    meta["engine"] = {"file": engine.name, "sha256": entry.sha256, "chunk_size": chunk_size,
                      "max_chunks": max_chunks}
    files.meta.write_text(json.dumps(meta, indent=2))
    return engine
