"""`mmsearch data`, `mmsearch train ...` and `mmsearch export`: the model-building commands.

Training modules import torch, so each handler imports its module inside: the CLI (and a
serve-only install) starts without the `train` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mmsearch.app.config import Config
from mmsearch.app.wiring import require_model_files
from mmsearch.encoders.errors import MmsearchError, UsageError, check_at_least


def cmd_data(args: argparse.Namespace, config: Config) -> int:
    if args.dataset == "emoji":
        from mmsearch.encoders.data.emoji import prepare_emoji

        for vendor, path in prepare_emoji(args.out, args.cache).items():
            print(f"{vendor}: {path}")
    elif args.dataset == "styles":
        from mmsearch.encoders.data.npm import fetch_npm_package
        from mmsearch.encoders.data.styles import STYLES, prepare_styles

        known = {s.name for s in STYLES}
        unknown = sorted(set(args.style or ()) - known)
        if unknown:
            raise UsageError("--style", f"{unknown[0]} is not one of {sorted(known)}")
        manifests = prepare_styles(args.out, lambda name, version: fetch_npm_package(
            name, version, args.cache), tuple(args.style) if args.style else None)
        for style, path in manifests.items():
            print(f"{style}: {path}")
    elif args.dataset == "openmoji":
        from mmsearch.encoders.data.openmoji import prepare_openmoji

        print(f"openmoji: {prepare_openmoji(args.out, args.cache)}")
    else:
        from mmsearch.encoders.data.fashion_mnist import prepare_fashion_mnist

        print(f"fashion-mnist: {prepare_fashion_mnist(args.out, args.limit)}")
    return 0


def cmd_train_baseline(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.encoders.baseline import fit_baseline
    from mmsearch.encoders.catalog import LocalSpec, ModelConfig
    from mmsearch.encoders.data.records import read_manifest

    check_at_least({"--local-dim": (args.local_dim, 1)})
    towers = _towers(args.image_tower, args.text_tower)

    images, captions = [], []
    for manifest in args.manifest:
        for record in read_manifest(manifest):
            if record.split == "train" and record.image:
                images.append(str(Path(manifest).parent / record.image))
                captions.append(record.text or "")
    if not images:
        raise MmsearchError("--manifest: no train-split images in the given manifests")
    out = args.out or config.models.model_dir
    model = ModelConfig(name=config.models.model, widths=config.widths,
                        width_max=config.widths[-1], local=LocalSpec(dim=args.local_dim))
    fit_baseline(model.with_towers(**towers), images, sorted(set(captions)), out,
                 progress=True)
    print(f"baseline PCA heads written to {out}")
    return 0


def _towers(image_folder: Path | None, text_folder: Path | None) -> dict[str, Any]:
    """ModelConfig.with_towers arguments for a user's local folders (none: the defaults)."""
    from mmsearch.encoders.catalog import ImageTowerSpec, TextTowerSpec
    from mmsearch.encoders.towers.hf_vision import image_spec_from_folder

    towers: dict[str, Any] = {}
    for flag, folder in (("--image-tower", image_folder), ("--text-tower", text_folder)):
        if folder is not None and not (folder / "config.json").is_file():
            raise UsageError(flag, f"{folder} is not a Hugging Face model folder (no "
                             "config.json)")
    if image_folder is not None:
        towers["image"] = image_spec_from_folder(image_folder, ImageTowerSpec())
    text_folder = text_folder or (image_folder if image_folder and _is_clip(image_folder)
                                  else None)
    if text_folder is not None:
        kind = "hf_clip_text" if _is_clip(text_folder) else "hf_text"
        towers["text"] = TextTowerSpec(kind, str(text_folder),
                                       min(TextTowerSpec.max_length, _positions(text_folder)))
    return towers


def _folder_config(folder: Path) -> dict[str, Any]:
    import json

    return dict(json.loads((folder / "config.json").read_text()))


def _is_clip(folder: Path) -> bool:
    return _folder_config(folder).get("model_type", "") in ("clip", "siglip", "siglip2",
                                                            "chinese_clip")


def _positions(folder: Path) -> int:
    """The text model's position limit (a CLIP folder keeps it in text_config)."""
    from mmsearch.encoders.catalog import TextTowerSpec

    data = _folder_config(folder)
    text = data.get("text_config") or data
    return int(text.get("max_position_embeddings", TextTowerSpec.max_length))


def cmd_train_encoder(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.encoders.train.command import cmd_train_encoder as train_encoder

    return train_encoder(args, config.widths, Path(config.models.dir))


def cmd_train_colour(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.encoders.train.command import cmd_train_colour as train_colour

    return train_colour(args, config.models.model_dir)


def cmd_train_reranker(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.rerank.train.command import cmd_train_reranker as train_reranker

    return train_reranker(args, config.models.export_dir, Path(config.models.dir))


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    from mmsearch.encoders.export import export_onnx

    if args.model_dir is None:
        require_model_files(config, exported=False)
    model_dir = args.model_dir or config.models.model_dir
    out = args.out or config.models.export_dir
    check_at_least({"--calibration-images": (args.calibration_images, 1)})
    calibration = [] if args.no_int8 else _calibration_images(args.int8_calibration,
                                                              args.calibration_images)
    if not calibration and not args.no_int8:
        print("int8 models NOT written: no train-split images in "
              f"{[str(m) for m in args.int8_calibration]} to calibrate on "
              "(run `mmsearch data emoji` or pass --int8-calibration)", file=sys.stderr)
    manifest = export_onnx(model_dir, out, calibration)
    print(f"exported {manifest.config.name} (model_id {manifest.model_id}) to {out}"
          + (f" (+ int8, calibrated on {len(calibration)} train images)" if calibration else ""))
    scorer = Path(config.models.dir) / config.models.scorer if config.models.scorer else None
    if scorer is not None and (scorer / "scorer.json").is_file():
        from mmsearch.rerank.scorer.export import export_scorer

        target = Path(config.models.dir) / "export" / config.models.scorer
        print(f"exported scorer to {export_scorer(scorer, target, config.models.scorer)}")
        if args.tensorrt:
            from mmsearch.rerank.scorer.export import build_scorer_engine

            engine = build_scorer_engine(target, config.server.chunk_size)
            print(f"TensorRT fp16 scorer engine written to {engine}")
    if args.tensorrt:
        from mmsearch.encoders.runtimes.tensorrt_runtime import build_engines

        build_engines(out, args.max_batch)
        print(f"TensorRT fp16 engines (batch 1..{args.max_batch}) written to {out}")
    return 0


def _calibration_images(manifests: list[Path], count: int) -> list[str]:
    """`count` train-split images spread evenly over the given manifests (those that exist)."""
    from mmsearch.encoders.data.records import read_manifest

    paths = [str(m.parent / r.image) for m in manifests if m.is_file()
             for r in read_manifest(m) if r.split == "train" and r.image]
    step = max(1, len(paths) // max(count, 1))
    return paths[::step][:count]
