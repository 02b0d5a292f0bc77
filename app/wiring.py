"""Wiring: config -> Milvus target, encoder, scorer -> SearchPipeline, sidecar settings."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from mmsearch.app.config import MODELS_SEARCH_ORDER, Config
from mmsearch.encoders import load_encoder
from mmsearch.encoders.errors import MmsearchError
from mmsearch.encoders.manifest import require_same_model
from mmsearch.encoders.preprocess import set_decode_budget
from mmsearch.encoders.runtimes.base import Encoder
from mmsearch.plugin.connection import MilvusTarget, Retrying
from mmsearch.plugin.schema import Layout
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import Limits
from mmsearch.rerank.server import ServerSettings
from mmsearch.rerank.vector_cache import VectorCache

log = logging.getLogger(__name__)


def milvus_target(config: Config) -> MilvusTarget:
    m = config.milvus
    return MilvusTarget(m.uri, m.token, m.db_name, m.tls_ca, m.tls_cert, m.tls_key,
                        m.call_timeout_s)


def require_model_files(config: Config, exported: bool) -> None:
    """The configured model's folder (and its export, for the onnx / tensorrt runtimes)
    exist, or an error saying where it looked and the one command that fixes it."""
    models = config.models
    where = f"models folder {Path(str(models.dir)).resolve()} (searched {MODELS_SEARCH_ORDER})"
    if not (models.model_dir / "model.json").is_file() and not (
            exported and (models.export_dir / "manifest.json").is_file()):
        raise MmsearchError(f"no model {models.model!r} in the {where}: pass --models-dir "
                            "or --model")
    if exported and not (models.export_dir / "manifest.json").is_file():
        raise MmsearchError(f"model {models.model!r} is not exported in the {where}: run "
                            f"`mmsearch export --models-dir {Path(str(models.dir)).resolve()} "
                            f"--model {models.model}`")


def load_configured_encoder(config: Config) -> Encoder:
    models = config.models
    require_model_files(config, exported=models.runtime != "torch")
    encoder = load_encoder(models.runtime, model_dir=models.model_dir,
                           export_dir=models.export_dir, batch_size=models.batch_size,
                           device=models.device, precision=models.precision)
    log.info("encoder: %s (model_id %s)", encoder.describe(), encoder.model_id)
    return encoder


def layout_of(config: Config, base: str | None) -> Layout:
    return Layout(base or config.base, config.widths)


def build_pipeline(config: Config) -> SearchPipeline:
    set_decode_budget(config.limits.decode_pixels_in_flight)
    encoder = load_configured_encoder(config)
    if config.widths[-1] != encoder.config.width_max:
        from mmsearch.encoders.errors import ConfigError

        raise ConfigError("widths", f"must end at the model's width {encoder.config.width_max}")
    scorer = load_scorer(config)
    if scorer is not None:
        require_same_model(scorer.embedder_model_id, encoder.model_id,
                           f"scorer {scorer.name}", "retrain it (`mmsearch train reranker`) "
                           "or set models.scorer to ''")
    limits = Limits(config.limits.max_top_k, config.limits.max_candidates,
                    min(config.limits.default_candidates, config.limits.max_candidates),
                    config.limits.rerank_depth)
    cache_mb = config.server.vector_cache_mb
    return SearchPipeline(encoder, Retrying(milvus_target(config)), config.widths,
                          config.index, limits,
                          config.server.coarse_width, scorer, config.server.refine_in,
                          VectorCache(cache_mb << 20) if cache_mb else None)


def load_scorer(config: Config):  # noqa: ANN201 - Scorer | None
    if not config.models.scorer:
        log.warning("no scorer configured (models.scorer): rerank is off; Search replies use "
                    "the refine order and Rerank answers FAILED_PRECONDITION")
        return None
    from mmsearch.rerank.scorer import load_scorer_runtime

    folder = Path(config.models.dir) / "export" / config.models.scorer
    return load_scorer_runtime(folder, config.models.runtime, config.server.chunk_size)


def milvus_health_probe(milvus: Retrying, timeout_s: float = 2.0) -> Callable[[], bool]:
    """One call, no retries, bounded: a refused connection or a hung server both read as
    not serving within timeout_s (a probe without a timeout would hang with the server)."""
    return lambda: milvus.probe(lambda client: client.list_collections(timeout=timeout_s))


def server_settings(config: Config, address: str | None = None) -> ServerSettings:
    server = config.server
    token = Path(server.token_file).read_text().strip() if server.token_file else None
    cert = Path(server.tls_cert).read_bytes() if server.tls_cert else None
    key = Path(server.tls_key).read_bytes() if server.tls_key else None
    return ServerSettings(address or server.address,
                          max_message_bytes=config.limits.max_message_bytes,
                          max_concurrency=config.limits.max_concurrency,
                          chunk_size=server.chunk_size,
                          default_deadline_ms=config.limits.deadline_ms,
                          max_batch=config.limits.max_batch,
                          batch_window_ms=server.batch_window_ms if server.batching else None,
                          batch_runners=server.batch_runners,
                          token=token, tls_cert=cert, tls_key=key)
