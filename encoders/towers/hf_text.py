"""Text towers from local transformers folders: a mean-pooled encoder (MiniLM) or the text
half of a CLIP/SigLIP model. The folder must hold a fast tokenizer's tokenizer.json."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from mmsearch.encoders.catalog import TextTowerSpec, resolve_text_path
from mmsearch.encoders.towers.base import TextTower


class MeanPooledTextTower(TextTower):
    """Mean over non-padding tokens, L2-normalised (as sentence-transformers' MiniLM does)."""

    def __init__(self, encoder: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.feature_dim = feature_dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1)


class ClipTextTower(TextTower):
    """CLIP/SigLIP text model: its own pooling, then its projection when it has one."""

    def __init__(self, text_model: nn.Module, projection: nn.Module | None, dim: int) -> None:
        super().__init__()
        self.text_model = text_model
        self.projection = projection
        self.feature_dim = dim

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        pooled = self.text_model(input_ids=input_ids, attention_mask=attention_mask).pooler_output
        return self.projection(pooled) if self.projection is not None else pooled


def load_hf_text_tower(spec: TextTowerSpec) -> TextTower:
    from transformers import AutoConfig, AutoModel

    folder = resolve_text_path(spec)
    tokenizer_file = Path(folder) / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise FileNotFoundError(
            f"{tokenizer_file} is missing: save the folder with a fast tokenizer "
            "(tokenizer.save_pretrained) so serving can tokenize without transformers"
        )
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(
        folder, local_files_only=True, attn_implementation="eager"  # traceable, batch-stable
    ).eval()
    tower: TextTower
    if spec.kind == "hf_clip_text":
        text_config = getattr(config, "text_config", config)
        projection = getattr(model, "text_projection", None)
        dim = int(getattr(config, "projection_dim", 0) or text_config.hidden_size)
        dim = dim if projection is not None else int(text_config.hidden_size)
        tower = ClipTextTower(getattr(model, "text_model", model), projection, dim)
        limit = int(text_config.max_position_embeddings)
    else:
        tower = MeanPooledTextTower(model, int(config.hidden_size))
        limit = int(config.max_position_embeddings)
    tower.max_length = min(spec.max_length, limit)
    tower.tokenizer_file = tokenizer_file
    return tower
