"""Torch composites exported to ONNX: tower + head (+ local projection) in one graph.

The torch runtime runs these modules directly, export traces the same modules, so
"ONNX vs torch" compares one graph in two runtimes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.colour import ColourHistogram
from mmsearch.encoders.heads import HeadSet, LinearHead
from mmsearch.encoders.towers.base import ImageTower, TextTower


class TorchLinearHead(nn.Module):
    def __init__(self, head: LinearHead) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(head.mean.copy()))
        self.register_buffer("weight", torch.from_numpy(head.weight.copy()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.weight


class ImageEmbedder(nn.Module):
    """pixel_values -> (embedding (B, width_max) not normalised, local (B, cells, dim) unit);
    with a colour cell, it is the last local row."""

    def __init__(self, tower: ImageTower, head: LinearHead, local_head: LinearHead,
                 colour: tuple[ColourHistogram, LinearHead] | None = None) -> None:
        super().__init__()
        self.tower = tower
        self.head = TorchLinearHead(head)
        self.local_head = TorchLinearHead(local_head)
        self.colour_histogram = colour[0] if colour else None
        self.colour_head = TorchLinearHead(colour[1]) if colour else None

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, cells = self.tower(pixel_values)
        local = self.local_head(cells)
        if self.colour_histogram is not None and self.colour_head is not None:
            colour = self.colour_head(self.colour_histogram(pixel_values))
            local = torch.cat([local, colour[:, None]], 1)
        return self.head(pooled), F.normalize(local, dim=-1)


def image_embedder(tower: ImageTower, heads: HeadSet, config: ModelConfig) -> ImageEmbedder:
    """The image model a model folder describes; a colour cell needs its fitted head."""
    colour = None
    if config.local.colour:
        if heads.colour is None:
            raise ValueError(f"model {config.name}: local.colour is on but heads.safetensors "
                             "has no colour head (run `mmsearch train colour`)")
        colour = (ColourHistogram(config.image_tower.mean, config.image_tower.std),
                  heads.colour)
    return ImageEmbedder(tower, heads.image, heads.local, colour)


class TextEmbedder(nn.Module):
    """(input_ids, attention_mask) -> embedding (B, width_max), not normalised."""

    def __init__(self, tower: TextTower, head: LinearHead) -> None:
        super().__init__()
        self.tower = tower
        self.head = TorchLinearHead(head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(input_ids, attention_mask))
