"""The sidecar test stack: 40 items in Milvus Lite and four servers on 127.0.0.1
(open, token-protected, with a scorer, with a scorer that never fits a deadline)."""


from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch

from mmsearch.encoders import load_encoder
from mmsearch.plugin.connection import MilvusTarget, Retrying
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import Limits
from mmsearch.rerank.scorer import OnnxScorer
from mmsearch.rerank.scorer.export import export_scorer, save_checkpoint
from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig
from mmsearch.rerank.server import ServerSettings, Sidecar, build_server
from mmsearch.v1 import search_pb2_grpc
from support.data import write_items

WIDTHS = (8, 16, 32)


def server_settings_for_tests(**changes: object) -> ServerSettings:
    """The settings `mmsearch serve` gets from a default config, on a free port."""
    from dataclasses import replace

    from mmsearch.app.config import load_config
    from mmsearch.app.wiring import server_settings

    return replace(server_settings(load_config(environ={}), "127.0.0.1:0"), **changes)


@pytest.fixture(scope="module")
def stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    root = tmp_path_factory.mktemp("sidecar")
    manifest = write_items(root / "data", 40)
    encoder = load_encoder("onnx", export_dir=models_dir / "export" / "tiny")
    milvus = Retrying(MilvusTarget(str(root / "milvus.db")))
    options = IngestOptions(Layout("items", WIDTHS), specs_for(WIDTHS, {}), root / "state",
                            batch_size=16, progress=False)
    IngestWorker(encoder, milvus, options).run(open_source(manifest))
    pipeline = SearchPipeline(encoder, milvus, WIDTHS, specs_for(WIDTHS, {}),
                              Limits(max_top_k=20, max_candidates=50, default_candidates=30,
                                     rerank_depth=64),
                              coarse_width=16)
    scorer = tiny_scorer(root)
    with_scorer = replace_scorer(pipeline, scorer)
    servers = {}
    for name, token, served in (("open", None, pipeline), ("auth", "s3cret-token", pipeline),
                                ("rerank", None, with_scorer),
                                ("slow", None, replace_scorer(pipeline, NeverInTime(scorer)))):
        settings = server_settings_for_tests(max_message_bytes=2 * 1024 * 1024, token=token)
        server, port, health = build_server(Sidecar(served, settings),
                                            probe=lambda: milvus.client is not None)
        server.start()
        health.start()
        servers[name] = (server, port, health)
    channel = grpc.insecure_channel(f"127.0.0.1:{servers['open'][1]}")
    yield {"channel": channel, "root": root, "manifest": manifest, "servers": servers,
           "search": search_pb2_grpc.SearchServiceStub(channel), "pipeline": pipeline,
           "scorer": scorer}
    channel.close()
    for server, _, health in servers.values():
        health.stop()
        server.stop(0)


def tiny_scorer(root: Path) -> OnnxScorer:
    torch.manual_seed(0)
    model = ListwiseScorer(ScorerConfig(width=32, cells=5, local_dim=8, d_model=32,
                                         colour=True)).eval()
    save_checkpoint(model, root / "scorer", {"embedder_model_id": "tiny"})
    return OnnxScorer(export_scorer(root / "scorer", root / "export" / "scorer"), chunk_size=8)


class NeverInTime:
    """A scorer that says it would take forever: the pipeline must skip it (degraded)."""

    def __init__(self, scorer: OnnxScorer) -> None:
        self.inner, self.name = scorer, "slow"

    def estimate_ms(self, candidates: int) -> float:
        return 1e9

    def rerank(self, *args: object) -> np.ndarray:
        return self.inner.rerank(*args)


def replace_scorer(pipeline: SearchPipeline, scorer: object,
                   refine_in: str = "sidecar") -> SearchPipeline:
    return SearchPipeline(pipeline.encoder, pipeline.milvus, pipeline.widths, pipeline.specs,
                          Limits(20, 50, 30, rerank_depth=16), pipeline.coarse_width, scorer,
                          refine_in)


def image_of(stack: dict, index: int) -> bytes:
    return (stack["root"] / "data" / "img" / f"item-{index}.png").read_bytes()


def call_code(fn, request, **kwargs: float) -> tuple[grpc.StatusCode, str]:  # noqa: ANN001
    kwargs.setdefault("timeout", 30)
    with pytest.raises(grpc.RpcError) as err:
        fn(request, **kwargs)
    return err.value.code(), err.value.details()




def stub_for(stack: dict, server: str, kind: str = "search"):  # noqa: ANN201
    channel = grpc.insecure_channel(f"127.0.0.1:{stack['servers'][server][1]}")
    stack.setdefault("extra_channels", []).append(channel)
    if kind == "search":
        return search_pb2_grpc.SearchServiceStub(channel)
    return search_pb2_grpc.RerankServiceStub(channel)


