"""`mmsearch export`: a model folder (model.json + heads) -> ONNX files + manifest.json.

Outputs in out_dir: image.onnx (pixel_values -> embedding, local_features), text.onnx
(input_ids, attention_mask -> embedding; dynamic batch and sequence), tokenizer.json, and
manifest.json. Optional fp16 TensorRT engines where `tensorrt` imports.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from mmsearch.encoders.catalog import (
    ImageTowerSpec,
    ModelConfig,
    TextTowerSpec,
    mobilenet_weights_file,
    resolve_text_path,
)
from mmsearch.encoders.heads import HEAD_FILE, HeadSet
from mmsearch.encoders.manifest import FileEntry, ModelManifest, model_id, sha256_file
from mmsearch.encoders.preprocess import ImageInput, ImageSpec
from mmsearch.encoders.quantize import (
    IMAGE_INT8,
    TEXT_INT8,
    quantize_image_model,
    quantize_text_model,
)
from mmsearch.encoders.towers import load_model_image_tower, load_text_tower, require_torch

log = logging.getLogger(__name__)
OPSET = 17
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def _weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in WEIGHT_SUFFIXES)


@contextmanager
def known_export_warnings() -> Iterator[None]:
    """Silence the export warnings shown harmless, and only those:
    - the legacy TorchScript exporter is chosen on purpose (dynamo=False: the graphs
      TensorRT and int8 quantisation are tested on);
    - transformers' mask code branches on `padding_length > 0`, which is 0 for every
      input (the mask always has the ids' length): tests/unit/encoders/test_runtimes.py
      test_onnx_matches_torch runs other batch sizes and lengths than the trace's;
    - aten::index "incorrect with negative indices": the indices are positions (arange,
      argmax), never negative; the same test and the CLIP-folder test compare outputs."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python boolean",
                                module="transformers.masking_utils")
        warnings.filterwarnings("ignore", message="Exporting aten::index operator of "
                                "advanced indexing", category=UserWarning)
        # the legacy exporter's own logging helper (same choice as above)
        warnings.filterwarnings("ignore", message="The feature will be removed",
                                category=DeprecationWarning,
                                module="torch.onnx._internal.torchscript_exporter")
        # the image input's side is fixed per model (model.json input_size), so the cell
        # windows traced as constants are right for every input
        warnings.filterwarnings("ignore", message="Converting a tensor to a Python integer",
                                module="mmsearch.encoders.towers.base")
        yield


def tower_hashes(image: ImageTowerSpec, text: TextTowerSpec) -> dict[str, str]:
    """Content hashes of the tower weights a model uses: part of its model_id."""
    hashes: dict[str, str] = {}
    if image.kind == "mobilenetv2":
        hashes["image_tower"] = sha256_file(Path(image.path or mobilenet_weights_file()))
    else:
        for path in _weight_files(Path(str(image.path))):
            hashes[f"image_tower/{path.name}"] = sha256_file(path)
    for path in _weight_files(resolve_text_path(text)):
        hashes[f"text_tower/{path.name}"] = sha256_file(path)
    return hashes


def compute_model_id(model_dir: Path, config: ModelConfig) -> str:
    hashes = tower_hashes(config.image_tower, config.text_tower)
    hashes["heads"] = sha256_file(Path(model_dir) / HEAD_FILE)
    if config.tower_weights:
        hashes["tower_weights"] = sha256_file(Path(model_dir) / config.tower_weights)
    return model_id(config, hashes)


def export_onnx(model_dir: Path, out_dir: Path,
                int8_calibration: Sequence[ImageInput] | None = None) -> ModelManifest:
    """Export both towers with their heads and write the manifest. Needs the train extra.

    With int8_calibration (train images), also write image.int8.onnx (static, calibrated
    on them) and text.int8.onnx (dynamic); see encoders.quantize."""
    require_torch()
    import torch

    from mmsearch.encoders.modules import TextEmbedder, image_embedder

    config = ModelConfig.load(model_dir)
    heads = HeadSet.load(model_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    image_tower = load_model_image_tower(config, model_dir)
    text_tower = load_text_tower(config.text_tower)
    image_model = image_embedder(image_tower, heads, config).eval()
    text_model = TextEmbedder(text_tower, heads.text).eval()
    size = config.image_tower.input_size
    with torch.inference_mode(), known_export_warnings():
        torch.onnx.export(
            image_model, (torch.zeros(2, 3, size, size),), str(out_dir / "image.onnx"),
            input_names=["pixel_values"], output_names=["embedding", "local_features"],
            dynamic_axes={"pixel_values": {0: "batch"}, "embedding": {0: "batch"},
                          "local_features": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
        ids = torch.ones(2, 8, dtype=torch.int64)
        torch.onnx.export(
            text_model, (ids, torch.ones_like(ids)), str(out_dir / "text.onnx"),
            input_names=["input_ids", "attention_mask"], output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                          "attention_mask": {0: "batch", 1: "sequence"},
                          "embedding": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )
    shutil.copyfile(text_tower.tokenizer_file, out_dir / "tokenizer.json")
    names = ["image.onnx", "text.onnx", "tokenizer.json"]
    int8_cosine = 0.0
    for stale in (IMAGE_INT8, TEXT_INT8):
        (out_dir / stale).unlink(missing_ok=True)
    if int8_calibration:
        spec = ImageSpec(size, config.image_tower.mean, config.image_tower.std)
        int8_cosine = quantize_image_model(out_dir / "image.onnx", out_dir / IMAGE_INT8,
                                           int8_calibration, spec, config.image_tower.kind)
        quantize_text_model(out_dir / "text.onnx", out_dir / TEXT_INT8)
        names += [IMAGE_INT8, TEXT_INT8]
    files = {name: FileEntry(sha256_file(out_dir / name), (out_dir / name).stat().st_size)
             for name in names}
    cells, local_dim = config.local.cells, config.local.dim
    int8_note = ({"image_cosine_min_on_calibration": round(int8_cosine, 5),
                  "calibration_images": len(int8_calibration or [])}
                 if int8_calibration else None)
    io = {
        "image.onnx": {"inputs": {"pixel_values": ["batch", 3, size, size]},
                       "outputs": {"embedding": ["batch", config.width_max],
                                   "local_features": ["batch", cells, local_dim]}},
        "text.onnx": {"inputs": {"input_ids": ["batch", "sequence"],
                                 "attention_mask": ["batch", "sequence"]},
                      "outputs": {"embedding": ["batch", config.width_max]}},
    }
    if int8_note:
        io["int8"] = int8_note
    manifest = ModelManifest(compute_model_id(model_dir, config), config,
                             text_tower.max_length, files, io)
    manifest.save(out_dir)
    log.info("exported model %s (%s) to %s", config.name, manifest.model_id, out_dir)
    return manifest
