"""Any local transformers vision model as an image tower: CLIP, SigLIP, or a ConvNet.

CLIP/SigLIP folders give their projected image embedding as the pooled feature; ViT patch
tokens (or a ConvNet's last map) give the local cells. Loaded from disk only.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from mmsearch.encoders.catalog import ImageTowerSpec
from mmsearch.encoders.towers.base import ImageTower


class HfVisionTower(ImageTower):
    def __init__(self, vision: nn.Module, projection: nn.Module | None, prefix_tokens: int,
                 feature_dim: int, cell_dim: int, grid: int) -> None:
        super().__init__()
        self.vision = vision
        self.projection = projection
        self.prefix_tokens = prefix_tokens
        self.feature_dim = feature_dim
        self.cell_dim = cell_dim
        self.grid = grid

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.vision(pixel_values=pixel_values)
        hidden = out.last_hidden_state
        pooled = getattr(out, "pooler_output", None)
        if hidden.dim() == 4:  # ConvNet: (B, C, H, W)
            feature_map = hidden
            pooled = hidden.mean(dim=(2, 3)) if pooled is None else pooled.flatten(1)
        else:  # ViT: (B, prefix + N, H)
            tokens = hidden[:, self.prefix_tokens:, :]
            side = math.isqrt(tokens.shape[1])
            feature_map = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)
            pooled = tokens.mean(dim=1) if pooled is None else pooled
        if self.projection is not None:
            pooled = self.projection(pooled)
        return pooled, self.pool_cells(feature_map, self.grid)


def load_hf_vision_tower(spec: ImageTowerSpec, grid: int) -> HfVisionTower:
    from transformers import AutoConfig, AutoModel

    if not spec.path:
        raise ValueError("image_tower.kind 'hf_vision' needs image_tower.path (a local folder)")
    folder = Path(spec.path)
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(
        folder, local_files_only=True, attn_implementation="eager"  # traceable, batch-stable
    ).eval()
    vision = getattr(model, "vision_model", model)
    projection = getattr(model, "visual_projection", None)
    vision_config = getattr(config, "vision_config", config)
    hidden = int(getattr(vision_config, "hidden_size", 0) or vision_config.hidden_sizes[-1])
    feature_dim = int(getattr(config, "projection_dim", 0) or hidden) if projection else hidden
    prefix = 1 if config.model_type in ("clip", "clip_vision_model", "vit") else 0
    return HfVisionTower(vision, projection, prefix, feature_dim, hidden, grid)


def _model_image_size(folder: Path, base: ImageTowerSpec) -> int:
    path = folder / "config.json"
    data = json.loads(path.read_text()) if path.is_file() else {}
    vision = data.get("vision_config") or data
    return int(vision.get("image_size") or base.input_size)


def image_spec_from_folder(folder: Path, base: ImageTowerSpec) -> ImageTowerSpec:
    """Read size/mean/std from a folder's preprocessor_config.json so a user's CLIP/SigLIP
    checkpoint is fed the pixels it was trained on."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():  # no preprocessor saved: the model's own input size at least
        return ImageTowerSpec("hf_vision", str(folder), _model_image_size(folder, base),
                              base.mean, base.std)
    data = json.loads(path.read_text())
    size = data.get("crop_size") or data.get("size") or base.input_size
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or base.input_size
    mean = tuple(data.get("image_mean", base.mean))
    std = tuple(data.get("image_std", base.std))
    return ImageTowerSpec("hf_vision", str(folder), int(size), mean, std)  # type: ignore[arg-type]
