"""Config: YAML + MMSEARCH_* overrides, errors naming the key, token never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmsearch.app.config import load_config
from mmsearch.encoders.errors import ConfigError


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config.milvus.uri == "./mmsearch.db"
    assert config.widths == (32, 64, 128, 256, 512)
    assert config.server.address == "127.0.0.1:50051"


def test_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("base: shoes\nmilvus:\n  uri: http://a:19530\nlimits:\n  max_top_k: 50\n")
    env = {"MMSEARCH_MILVUS__URI": "http://b:19530", "MMSEARCH_WIDTHS": "16,64",
           "MMSEARCH_MODELS": "/srv/models"}
    config = load_config(path, environ=env, overrides={"limits": {"max_top_k": 20}})
    assert config.base == "shoes" and config.milvus.uri == "http://b:19530"
    assert config.widths == (16, 64) and config.limits.max_top_k == 20
    assert config.models.dir == "/srv/models"


@pytest.mark.parametrize(("yaml_text", "env", "key"), [
    ("milvus:\n  urii: x\n", {}, "milvus.urii"),
    ("limits:\n  max_top_k: lots\n", {}, "limits.max_top_k"),
    ("limits:\n  max_top_k: -3\n", {}, "limits.max_top_k"),
    ("", {"MMSEARCH_SERVER__CHUNK_SIZE": "x"}, "server.chunk_size"),
    ("widths: [64, 32]\n", {}, "widths"),
    ("models:\n  runtime: tvm\n", {}, "models.runtime"),
    ("milvus: 3\n", {}, "milvus"),
    ("- a\n", {}, "--config"),
    ("server:\n  workers: 8\n", {}, "server.workers"),
    ("server:\n  batch_window_ms: -1\n", {}, "server.batch_window_ms"),
    ("server:\n  batch_window_ms: 500\n", {}, "server.batch_window_ms"),
    ("", {"MMSEARCH_SERVER__BATCHING": "maybe"}, "server.batching"),
    ("server:\n  batch_runners: 0\n", {}, "server.batch_runners"),
])
def test_errors_name_the_key(tmp_path: Path, yaml_text: str, env: dict, key: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(path, environ=env)
    assert err.value.key == key
    assert f"'{key}'" in str(err.value)


def test_a_removed_key_says_what_replaces_it() -> None:
    with pytest.raises(ConfigError, match="limits.max_concurrency"):
        load_config(None, environ={"MMSEARCH_SERVER__WORKERS": "8"})


def test_token_from_file_or_env_is_never_in_repr(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("root:Milvus-s3cret\n")
    config = load_config(None, environ={"MMSEARCH_MILVUS__TOKEN_FILE": str(secret)})
    assert config.milvus.token == "root:Milvus-s3cret"
    assert "s3cret" not in repr(config)
    env_config = load_config(None, environ={"MMSEARCH_MILVUS_TOKEN": "envtoken"})
    assert env_config.milvus.token == "envtoken" and "envtoken" not in repr(env_config)
    with pytest.raises(ConfigError, match="milvus.token_file"):
        load_config(None, environ={"MMSEARCH_MILVUS__TOKEN_FILE": str(tmp_path / "nope")})


def test_batching_settings_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  batch_window_ms: 2.5\n  batch_runners: 3\n")
    config = load_config(path, environ={"MMSEARCH_SERVER__BATCHING": "false"})
    assert config.server.batch_window_ms == 2.5 and config.server.batch_runners == 3
    assert config.server.batching is False
    assert load_config(environ={}).server.batching is True


def test_null_from_the_environment_turns_an_optional_setting_off() -> None:
    assert load_config(environ={}).server.vector_cache_mb == 256
    config = load_config(environ={"MMSEARCH_SERVER__VECTOR_CACHE_MB": "null"})
    assert config.server.vector_cache_mb is None
    with pytest.raises(ConfigError, match="server.chunk_size"):
        load_config(environ={"MMSEARCH_SERVER__CHUNK_SIZE": "null"})


def test_bulk_storage_is_checked_and_s3_needs_its_keys(tmp_path: Path) -> None:
    assert load_config(None, environ={}).bulk.storage == "local"
    with pytest.raises(ConfigError, match="bulk.storage"):
        load_config(None, environ={"MMSEARCH_BULK__STORAGE": "ftp"})
    with pytest.raises(ConfigError, match="bulk.endpoint"):
        load_config(None, environ={"MMSEARCH_BULK__STORAGE": "s3"})
    config = load_config(None, environ={
        "MMSEARCH_BULK__STORAGE": "s3", "MMSEARCH_BULK__ENDPOINT": "minio:9000",
        "MMSEARCH_BULK__BUCKET": "milvus-bucket", "MMSEARCH_BULK__SECURE": "false",
        "MMSEARCH_BULK__ACCESS_KEY_FILE": "/run/a", "MMSEARCH_BULK__SECRET_KEY_FILE": "/run/s"})
    assert config.bulk.secure is False and config.bulk.bucket == "milvus-bucket"
