"""One YAML file + MMSEARCH_* environment overrides, validated at start.

Override any key with MMSEARCH_<SECTION>__<KEY> (upper case, `__` between levels), e.g.
MMSEARCH_MILVUS__URI=http://127.0.0.1:19530. Errors name the key. The Milvus token is
read from MMSEARCH_MILVUS_TOKEN or milvus.token_file and is never printed (repr hides it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from mmsearch.encoders.catalog import DEFAULT_WIDTHS, validate_widths
from mmsearch.encoders.errors import ConfigError
from mmsearch.plugin.index_spec import IndexSpec, specs_for
from mmsearch.plugin.schema import parse_declared_attrs
from mmsearch.rerank.fullwidth import REFINE_IN

ENV_PREFIX = "MMSEARCH_"
TOKEN_ENV = "MMSEARCH_MILVUS_TOKEN"
# the source checkout in an editable install (where the shipped models and data live)
PROJECT_ROOT = Path(__file__).resolve().parents[1]
MODELS_SEARCH_ORDER = ("--models-dir, MMSEARCH_MODELS, models.dir in the config, then "
                       "./models, then the project's own models/ folder")


def project_path(relative: str) -> Path:
    """`relative` under the working directory when it is there, else under the project's
    checkout, so the shipped defaults work from any folder."""
    here = Path(relative)
    return here if here.exists() or not (PROJECT_ROOT / relative).exists() else (
        PROJECT_ROOT / relative)


@dataclass(frozen=True)
class MilvusConfig:
    uri: str = "./mmsearch.db"
    token_file: str | None = None
    db_name: str = "default"
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    call_timeout_s: int = 60  # per call of the worker and index tools (the sidecar: deadline)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ModelsConfig:
    dir: str | None = None  # None: ./models, then the project's own models/ (see resolve)
    model: str = "emoji-v1"  # the trained embedder (models/emoji-v1, committed)
    runtime: str = "onnx"
    device: str = "cpu"
    precision: str = "fp32"  # fp32 | int8 (onnx runtime; `mmsearch export` writes both)
    batch_size: int = 32
    scorer: str = "scorer"  # <dir>/<scorer> checkpoint, <dir>/export/<scorer>; "" = none

    @property
    def model_dir(self) -> Path:
        return Path(self.dir) / self.model

    @property
    def export_dir(self) -> Path:
        return Path(self.dir) / "export" / self.model


@dataclass(frozen=True)
class LimitsConfig:
    max_message_bytes: int = 16 * 1024 * 1024
    max_candidates: int = 1000
    max_top_k: int = 200
    default_candidates: int = 200
    rerank_depth: int = 64
    max_concurrency: int = 32
    deadline_ms: int = 2000
    max_batch: int = 64  # requests per SearchBatch call
    # pixels the sidecar decodes at once over all requests (4 bytes each while decoding):
    # bounds memory under many large images (benchmarks/results/decode_memory.md)
    decode_pixels_in_flight: int = 64_000_000


@dataclass(frozen=True)
class ServerConfig:
    address: str = "127.0.0.1:50051"
    # candidates per scorer chunk at serving time; the scorer trains on chunks of 16 and
    # ranks best on 32 (benchmarks/results/rerank_quality.md)
    chunk_size: int = 32
    # width of the ANN stage; null = the second-narrowest configured width (64 by default)
    coarse_width: int | None = None
    # where refine scores candidates: sidecar (fetch the vectors; measured faster on Lite
    # and on Milvus 2.3.5) or milvus (only scores travel; benchmarks/results/refine_paths_*)
    refine_in: str = "sidecar"
    # full-width rows kept in the sidecar's memory (MB; null = off): refine and rerank read
    # cached candidates instead of fetching them, valid while their content_hash holds
    vector_cache_mb: int | None = 256
    # concurrent Search calls gathered into shared batches (one encoder batch, one ANN
    # call per compatible group, one fetch, one scorer run): a request waits up to
    # batch_window_ms for company; batch_runners batches run at once, and while all are
    # busy the next one fills up to limits.max_batch (benchmarks/results/sidecar_load.md)
    batching: bool = True
    batch_window_ms: float = 1.0
    batch_runners: int = 2
    token_file: str | None = None  # bearer token clients must send (authorization metadata)
    tls_cert: str | None = None
    tls_key: str | None = None
    metrics_port: int = 0  # Prometheus /metrics; 0 = off
    metrics_address: str = "127.0.0.1"  # 0.0.0.0 inside a container that Prometheus scrapes


@dataclass(frozen=True)
class BulkConfig:
    """Where `mmsearch backfill --import` leaves the files for the server to read."""

    # local: the server reads this machine's paths (the embedded server, or a server whose
    # volume is mounted at the same path); s3: upload to the bucket Milvus keeps its own
    # data in (MinIO/S3: minio.bucketName in milvus.yaml), which is what a server reads
    storage: str = "local"
    endpoint: str | None = None  # s3: host:port of MinIO/S3
    bucket: str | None = None
    prefix: str = "mmsearch-bulk"  # key prefix inside the bucket
    secure: bool = True  # https to the endpoint
    access_key_file: str | None = None
    secret_key_file: str | None = None


@dataclass(frozen=True)
class Config:
    base: str = "items"
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    state_dir: str = ".mmsearch/state"
    milvus: MilvusConfig = field(default_factory=MilvusConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    bulk: BulkConfig = field(default_factory=BulkConfig)
    # `index: {64: {"index_type": "HNSW", ...}}` over the defaults, parsed once by
    # load_config into a spec for every width (plugin.index_spec)
    index: Mapping[int, IndexSpec] = field(default_factory=dict)
    # declared attr types (`attrs: {category: varchar}`), parsed once; None = inferred
    # from the first records
    attrs: Mapping[str, str] | None = None


# keys that once existed: a clear error instead of "unknown key"
_REMOVED = {"server.workers": "removed: the sidecar sizes its thread pool from "
                              "limits.max_concurrency (requests past it get RESOURCE_EXHAUSTED); "
                              "set that instead"}
MAX_BATCH_WINDOW_MS = 100.0
_SECTIONS = {"milvus": MilvusConfig, "models": ModelsConfig, "server": ServerConfig,
             "limits": LimitsConfig, "bulk": BulkConfig}


def _coerce(key: str, value: Any, annotation: str) -> Any:
    """Turn YAML/env values into the declared type; errors name the key."""
    try:
        if isinstance(value, str) and value.lower() == "null" and "None" in annotation:
            value = None  # the environment's way to say null (YAML's word)
        if value is None:
            if "None" in annotation:
                return None
            raise ConfigError(key, "must not be null")
        if annotation.startswith("int"):
            if isinstance(value, bool):
                raise ValueError
            number = int(value)
            if number <= 0:
                raise ConfigError(key, f"must be a positive integer, got {value!r}")
            return number
        if annotation == "bool":  # YAML gives a bool, the environment a word
            words = {"true": True, "1": True, "false": False, "0": False}
            if isinstance(value, bool):
                return value
            if not isinstance(value, str) or value.lower() not in words:
                raise ValueError
            return words[value.lower()]
        if annotation == "float":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not 0 <= number < float("inf"):
                raise ConfigError(key, f"must be a number >= 0, got {value!r}")
            return number
        if annotation.startswith("tuple"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(int(v) for v in items)
        if annotation.startswith("str"):
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise ValueError
            return str(value)
        if annotation.startswith("Mapping"):
            if not isinstance(value, Mapping):
                raise ValueError
            return dict(value)
    except (TypeError, ValueError):
        raise ConfigError(key, f"expected {annotation}, got {value!r}") from None
    return value


def _build(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    for name in data:
        if f"{prefix}{name}" in _REMOVED:
            raise ConfigError(f"{prefix}{name}", _REMOVED[f"{prefix}{name}"])
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown key (known: {sorted(known)})")
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        if name in _SECTIONS and prefix == "":
            if not isinstance(value, Mapping):
                raise ConfigError(key, "must be a mapping")
            values[name] = _build(_SECTIONS[name], value, f"{key}.")
        else:
            values[name] = _coerce(key, value, str(known[name].type))
    return cls(**values)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == TOKEN_ENV or name == "MMSEARCH_MODELS":
            continue
        path = name[len(ENV_PREFIX):].lower().split("__")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    if "MMSEARCH_MODELS" in environ:  # DESIGN's short name for the models folder
        tree.setdefault("models", {}).setdefault("dir", environ["MMSEARCH_MODELS"])
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _read_token(milvus: MilvusConfig, environ: Mapping[str, str]) -> str | None:
    if environ.get(TOKEN_ENV):
        return environ[TOKEN_ENV]
    if milvus.token_file:
        try:
            return Path(milvus.token_file).read_text().strip() or None
        except OSError as exc:
            raise ConfigError("milvus.token_file", f"cannot read: {exc.strerror}") from None
    return None


def _check_bulk(bulk: BulkConfig) -> None:
    if bulk.storage not in ("local", "s3"):
        raise ConfigError("bulk.storage", f"one of local, s3, got {bulk.storage!r}")
    if bulk.storage == "s3":
        for name in ("endpoint", "bucket", "access_key_file", "secret_key_file"):
            if getattr(bulk, name) is None:
                raise ConfigError(f"bulk.{name}", "needed when bulk.storage is s3")


def _find_models_dir(models: ModelsConfig) -> Path:
    """No folder given: the first of ./models and the project's models/ that holds the
    configured model (its folder or its export), else ./models."""
    candidates = (Path("models"), PROJECT_ROOT / "models")
    for folder in candidates:
        if (folder / models.model).is_dir() or (folder / "export" / models.model).is_dir():
            return folder
    return candidates[0]


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """File < environment < explicit overrides (command-line flags)."""
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError("--config", f"cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError("--config", f"{path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, Mapping):
            raise ConfigError("--config", f"{path} must hold a mapping at the top level")
        data = dict(loaded)
    data = _merge(data, _env_overrides(environ))
    data = _merge(data, overrides or {})
    config = _build(Config, data, "")
    validate_widths(config.widths, config.widths[-1], "widths")
    if config.models.runtime not in ("onnx", "torch", "tensorrt"):
        raise ConfigError("models.runtime", "one of onnx, torch, tensorrt")
    if config.models.precision not in ("fp32", "int8"):
        raise ConfigError("models.precision", "one of fp32, int8")
    if config.models.precision == "int8" and config.models.runtime != "onnx":
        raise ConfigError("models.precision", "int8 runs on the onnx runtime only, and "
                          f"models.runtime (or --runtime) is {config.models.runtime}: use "
                          "--runtime onnx or set models.precision to fp32")
    if config.server.batch_window_ms > MAX_BATCH_WINDOW_MS:
        raise ConfigError("server.batch_window_ms", f"at most {MAX_BATCH_WINDOW_MS} ms (every "
                          f"request may wait that long), got {config.server.batch_window_ms}")
    _check_bulk(config.bulk)
    if config.server.refine_in not in REFINE_IN:
        raise ConfigError("server.refine_in", f"one of {', '.join(REFINE_IN)}")
    coarse = config.server.coarse_width
    if coarse is None:
        coarse = config.widths[min(1, len(config.widths) - 1)]
    elif coarse not in config.widths:
        raise ConfigError("server.coarse_width", f"{coarse} is not one of the configured "
                          f"widths {list(config.widths)}")
    milvus = replace(config.milvus, token=_read_token(config.milvus, environ))
    models = replace(config.models,
                     dir=config.models.dir or str(_find_models_dir(config.models)))
    return replace(config, milvus=milvus, models=models,
                   server=replace(config.server, coarse_width=coarse),
                   index=specs_for(config.widths, config.index),  # errors name the key
                   attrs=parse_declared_attrs(config.attrs) if config.attrs else None)
