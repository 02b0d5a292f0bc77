"""Torch composites exported to ONNX: tower + head (+ local projection) in one graph.

The torch runtime runs these modules directly, export traces the same modules, so
"ONNX vs torch" compares one graph in two runtimes.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from encoders.heads import LinearHead
from encoders.towers.base import ImageTower, TextTower


class TorchLinearHead(nn.Module):
    def __init__(self, head: LinearHead) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(head.mean.copy()))
        self.register_buffer("weight", torch.from_numpy(head.weight.copy()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.weight


class ImageEmbedder(nn.Module):
    """pixel_values -> (embedding (B, width_max) not normalised, local (B, cells, dim) unit)."""

    def __init__(self, tower: ImageTower, head: LinearHead, local_head: LinearHead) -> None:
        super().__init__()
        self.tower = tower
        self.head = TorchLinearHead(head)
        self.local_head = TorchLinearHead(local_head)

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, cells = self.tower(pixel_values)
        return self.head(pooled), F.normalize(self.local_head(cells), dim=-1)


class TextEmbedder(nn.Module):
    """(input_ids, attention_mask) -> embedding (B, width_max), not normalised."""

    def __init__(self, tower: TextTower, head: LinearHead) -> None:
        super().__init__()
        self.tower = tower
        self.head = TorchLinearHead(head)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.tower(input_ids, attention_mask))
