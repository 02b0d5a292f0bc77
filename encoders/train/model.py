"""What training changes: the tower's last stages (optional), the MRL heads, the local
projection and the identity prototypes; `to_heads` turns it back into a HeadSet so the
export path stays the same as the PCA baseline's."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mmsearch.encoders.heads import HeadSet, LinearHead
from mmsearch.encoders.towers.base import ImageTower


def tail_outputs(tail: nn.Module | None, grid: int, trunk: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Cached trunk output -> (pooled, cells); without a tail the cache holds them."""
    if tail is None:
        return trunk[:, 0], trunk[:, 1:]
    feature_map = tail(trunk)
    return feature_map.mean(dim=(2, 3)), ImageTower.pool_cells(feature_map, grid)


def pretrained_tail(tower: ImageTower, tune_blocks: int) -> nn.Module | None:
    if tune_blocks == 0:
        return None
    features = tower.features  # type: ignore[attr-defined]
    return features[len(features) - tune_blocks :]


class TrainableLinear(nn.Module):
    """y = (x - mean) @ weight, mean fixed from the init, weight trained from the init."""

    def __init__(self, init: LinearHead) -> None:
        super().__init__()
        self.register_buffer("mean", torch.from_numpy(init.mean.copy()))
        self.weight = nn.Parameter(torch.from_numpy(init.weight.copy()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) @ self.weight

    def to_head(self) -> LinearHead:
        return LinearHead(self.mean.detach().numpy().copy(),
                          self.weight.detach().numpy().copy())


class TrainableEmbedder(nn.Module):
    """Cached trunk output -> (image embedding, unit local cells); text features -> text
    embedding. With tune_blocks = 0 the cached input is [pooled, cells...] per item."""

    def __init__(self, tower: ImageTower, tune_blocks: int, image: LinearHead,
                 text: LinearHead, local: LinearHead, num_ids: int) -> None:
        super().__init__()
        self.grid = tower.grid
        self.tail: nn.Module | None = None
        if tune_blocks > 0:
            self.tail = copy.deepcopy(pretrained_tail(tower, tune_blocks))
        self.image_head = TrainableLinear(image)
        self.text_head = TrainableLinear(text)
        self.local_head = TrainableLinear(local)
        self.prototypes = nn.Parameter(torch.zeros(num_ids, image.out_dim))

    def train(self, mode: bool = True) -> TrainableEmbedder:
        super().train(mode)
        if self.tail is not None:
            # batch-norm statistics stay the pretrained ones: batches of one identity pair
            # per row are not the population the running stats describe
            self.tail.eval()
        return self

    def pooled_and_cells(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return tail_outputs(self.tail, self.grid, trunk)

    def image_forward(self, trunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, cells = self.pooled_and_cells(trunk)
        return self.image_head(pooled), F.normalize(self.local_head(cells), dim=-1)

    @torch.no_grad()
    def embed_trunk(self, trunk: np.ndarray, batch_size: int = 256) -> torch.Tensor:
        """Image embeddings of cached (fp16) trunk outputs, in batches, without gradients."""
        return torch.cat([self.image_forward(torch.from_numpy(
            trunk[start : start + batch_size].astype(np.float32)))[0]
            for start in range(0, len(trunk), batch_size)])

    def text_forward(self, text_features: torch.Tensor) -> torch.Tensor:
        return self.text_head(text_features)

    @torch.no_grad()
    def init_prototypes(self, embeddings: torch.Tensor, ids: torch.Tensor) -> None:
        """Each prototype starts at the mean of its identity's normalised embeddings."""
        sums = torch.zeros_like(self.prototypes)
        sums.index_add_(0, ids, F.normalize(embeddings, dim=-1))
        self.prototypes.copy_(F.normalize(sums, dim=-1))

    def to_heads(self) -> HeadSet:
        return HeadSet(self.image_head.to_head(), self.text_head.to_head(),
                       self.local_head.to_head())

    def tower_state(self) -> dict[str, torch.Tensor]:
        """Fine-tuned tensors under the tower's own state-dict names (empty if frozen)."""
        if self.tail is None:
            return {}
        # a slice of nn.Sequential keeps the stages' original indices as names
        return {f"features.{name}": tensor.detach().clone().contiguous()
                for name, tensor in self.tail.state_dict().items()}
