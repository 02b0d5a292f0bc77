"""Abstract tower modules: what every image or text tower returns."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class ImageTower(nn.Module):
    """forward(pixel_values (B,3,H,W)) -> (pooled (B, feature_dim),
    cells (B, grid*grid, cell_dim))."""

    feature_dim: int
    cell_dim: int
    grid: int

    @staticmethod
    def pool_cells(feature_map: torch.Tensor, grid: int) -> torch.Tensor:
        """(B, C, H, W) -> (B, grid*grid, C): mean over adaptive-pooling windows.

        Same windows as F.adaptive_avg_pool2d, written as slices because ONNX export of
        adaptive pooling fails when grid does not divide H (7x7 -> 2x2 here)."""
        height, width = int(feature_map.shape[2]), int(feature_map.shape[3])
        cells = []
        for row in range(grid):
            top, bottom = (row * height) // grid, -(-((row + 1) * height) // grid)
            for col in range(grid):
                left, right = (col * width) // grid, -(-((col + 1) * width) // grid)
                cells.append(feature_map[:, :, top:bottom, left:right].mean(dim=(2, 3)))
        return torch.stack(cells, dim=1)


class TextTower(nn.Module):
    """forward(input_ids, attention_mask) -> pooled (B, feature_dim)."""

    feature_dim: int
    max_length: int
    tokenizer_file: Path
