"""Wiring: config -> encoder, Milvus, scorer -> SearchPipeline -> running sidecar."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from mmsearch.config import Config
from plugin.commands import load_configured_encoder, milvus_target
from plugin.connection import Retrying
from plugin.index_spec import specs_for
from rerank.pipeline import Limits, SearchPipeline
from rerank.server import ServerSettings

log = logging.getLogger(__name__)


def build_pipeline(config: Config) -> SearchPipeline:
    encoder = load_configured_encoder(config)
    if config.widths[-1] != encoder.config.width_max:
        from encoders.errors import ConfigError

        raise ConfigError("widths", f"must end at the model's width {encoder.config.width_max}")
    coarse = config.server.coarse_width if config.server.coarse_width in config.widths \
        else config.widths[min(1, len(config.widths) - 1)]
    scorer = load_scorer(config)
    if scorer is not None and scorer.embedder_model_id != encoder.model_id:
        from encoders.errors import ModelMismatchError

        raise ModelMismatchError(
            f"scorer {scorer.name} was trained on embeddings of model "
            f"{scorer.embedder_model_id}, the loaded embedder is {encoder.model_id}: retrain "
            "it (`mmsearch train reranker`) or set models.scorer to ''")
    limits = Limits(config.limits.max_top_k, config.limits.max_candidates,
                    min(config.limits.default_candidates, config.limits.max_candidates),
                    config.limits.rerank_depth)
    return SearchPipeline(encoder, Retrying(milvus_target(config)), config.widths,
                          specs_for(config.widths, config.index), limits, coarse, scorer)


def load_scorer(config: Config):  # noqa: ANN201 - Scorer | None
    if not config.models.scorer:
        log.warning("no scorer configured (models.scorer): rerank is off; Search replies use "
                    "the refine order and Rerank answers FAILED_PRECONDITION")
        return None
    from rerank.scorer import OnnxScorer

    folder = Path(config.models.dir) / "export" / config.models.scorer
    return OnnxScorer(folder, chunk_size=config.server.chunk_size)


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
                          token=token, tls_cert=cert, tls_key=key)
