"""The torch runtime: the reference (and what training uses). Needs the `train` extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.heads import HeadSet
from mmsearch.encoders.preprocess import TextTokenizer
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.encoders.towers import load_model_image_tower, load_text_tower, require_torch


class TorchEncoder(Encoder):
    runtime = "torch"

    def __init__(self, model_dir: Path, batch_size: int = 32, device: str = "cpu",
                 threads: int | None = None) -> None:
        require_torch()
        import torch

        from mmsearch.encoders.modules import TextEmbedder, image_embedder

        if threads:
            torch.set_num_threads(threads)
        config = ModelConfig.load(model_dir)
        heads = HeadSet.load(model_dir)
        image_tower = load_model_image_tower(config, model_dir)
        text_tower = load_text_tower(config.text_tower)
        self.image_model = image_embedder(image_tower, heads, config).eval().to(device)
        self.text_model = TextEmbedder(text_tower, heads.text).eval().to(device)
        self._device = torch.device(device)
        self._torch = torch
        tokenizer = TextTokenizer(text_tower.tokenizer_file, text_tower.max_length)
        super().__init__(config, tokenizer, batch_size)
        from mmsearch.encoders.export import compute_model_id

        self.model_id = compute_model_id(model_dir, config)

    @property
    def provider(self) -> str:
        return f"torch:{self._device}"

    def _image_forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._torch.inference_mode():
            emb, local = self.image_model(self._torch.from_numpy(pixels).to(self._device))
        return emb.cpu().numpy(), local.cpu().numpy()

    def _text_forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            emb = self.text_model(torch.from_numpy(input_ids).to(self._device),
                                  torch.from_numpy(mask).to(self._device))
        return emb.cpu().numpy()
