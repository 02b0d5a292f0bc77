"""Shared fixtures: tiny random models built on disk once per session (no download)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.data import CAPTIONS, VOCAB, random_images, write_tokenizer


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop in-process Milvus Lite servers while output streams are open: milvus-lite's
    own atexit hook logs after pytest closed them ('--- Logging error ---' blocks)."""
    from milvus_lite.server_manager import server_manager_instance

    server_manager_instance.release_all()


@pytest.fixture(scope="session")
def tiny_text_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny_bert")
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=24)
    BertModel(config).save_pretrained(folder)
    write_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_clip")
    config = CLIPConfig(
        text_config={"vocab_size": len(VOCAB), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2,
                     "max_position_embeddings": 16, "eos_token_id": 4, "pad_token_id": 0,
                     "bos_token_id": 2},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
        projection_dim=24,
    )
    CLIPModel(config).save_pretrained(folder)
    write_tokenizer(folder, eos=True)
    return folder


def _fit_and_export(config, root: Path) -> tuple[Path, Path]:  # noqa: ANN001
    from mmsearch.encoders.baseline import fit_baseline
    from mmsearch.encoders.export import export_onnx

    model_dir = root / "model"
    fit_baseline(config, random_images(24, seed=1), CAPTIONS, model_dir)
    export_dir = root / "export"
    export_onnx(model_dir, export_dir)
    return model_dir, export_dir


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory, tiny_text_folder: Path
               ) -> tuple[Path, Path]:
    """(model_dir, export_dir): random MobileNetV2 at 32 px + tiny BERT, PCA heads to 32."""
    import torch

    from mmsearch.encoders.catalog import ImageTowerSpec, LocalSpec, ModelConfig, TextTowerSpec
    from mmsearch.encoders.towers.mobilenet import MobileNetV2Tower

    torch.manual_seed(0)
    # untrained MobileNetV2 weights saved as a file, so fit and export load the same module
    weights = tmp_path_factory.mktemp("mnv2") / "random_mobilenetv2.pt"
    torch.save(MobileNetV2Tower(grid=2).state_dict(), weights)
    config = ModelConfig(
        name="tiny", image_tower=ImageTowerSpec("mobilenetv2", str(weights), 32),
        text_tower=TextTowerSpec("hf_text", str(tiny_text_folder), max_length=24),
        width_max=32, widths=(8, 16, 32), local=LocalSpec(grid=2, dim=8, colour=True))
    return _fit_and_export(config, tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def tiny_clip_model(tmp_path_factory: pytest.TempPathFactory, tiny_clip_folder: Path
                    ) -> tuple[Path, Path]:
    """A user's local CLIP folder through the same interface (hf_vision + hf_clip_text)."""
    from mmsearch.encoders.catalog import ImageTowerSpec, LocalSpec, ModelConfig, TextTowerSpec
    from mmsearch.encoders.towers.hf_vision import image_spec_from_folder

    image = image_spec_from_folder(tiny_clip_folder, ImageTowerSpec(input_size=32))
    config = ModelConfig(
        name="tiny-clip", image_tower=image,
        text_tower=TextTowerSpec("hf_clip_text", str(tiny_clip_folder), max_length=16),
        width_max=16, widths=(4, 8, 16), local=LocalSpec(grid=2, dim=8))
    return _fit_and_export(config, tmp_path_factory.mktemp("tiny_clip_model"))
