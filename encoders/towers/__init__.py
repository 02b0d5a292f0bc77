"""Towers: torch modules that turn pixels or tokens into features.

Only the loaders below import torch/transformers, so `import encoders` stays light for a
serve-only install that runs exported ONNX models.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mmsearch.encoders.catalog import ImageTowerSpec, ModelConfig, TextTowerSpec

if TYPE_CHECKING:
    from mmsearch.encoders.towers.base import ImageTower, TextTower

TORCH_PIP = "pip install 'mmsearch[train]'  (after: pip install torch==2.13.0)"


def require_torch() -> None:
    from mmsearch.encoders.errors import BackendMissingError

    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as exc:
        raise BackendMissingError(f"torch/transformers ({exc.name})", TORCH_PIP) from None


def load_image_tower(spec: ImageTowerSpec, grid: int) -> ImageTower:
    require_torch()
    if spec.kind == "mobilenetv2":
        from mmsearch.encoders.towers.mobilenet import load_mobilenet_tower

        return load_mobilenet_tower(spec, grid)
    from mmsearch.encoders.towers.hf_vision import load_hf_vision_tower

    return load_hf_vision_tower(spec, grid)


def load_text_tower(spec: TextTowerSpec) -> TextTower:
    require_torch()
    from mmsearch.encoders.towers.hf_text import load_hf_text_tower

    return load_hf_text_tower(spec)


def load_model_image_tower(config: ModelConfig, model_dir: Path) -> ImageTower:
    """The image tower of a model folder: the published tower, then the folder's
    fine-tuned tensors (config.tower_weights) over it. Every name must exist in the tower."""
    tower = load_image_tower(config.image_tower, config.local.grid)
    if config.tower_weights:
        from safetensors.torch import load_file

        path = Path(model_dir) / config.tower_weights
        if not path.is_file():
            raise FileNotFoundError(f"{path} (model.json tower_weights) is missing")
        tuned = load_file(str(path))
        unknown = sorted(set(tuned) - set(tower.state_dict()))
        if unknown:
            raise ValueError(f"{path}: tensors not in the image tower: {unknown[:5]}")
        tower.load_state_dict(tuned, strict=False)
    return tower.eval()
