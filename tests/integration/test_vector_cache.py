"""The vector cache over a real Milvus Lite base: replies equal the uncached path within
fp16 rounding, and an item whose content changed is never refined with its old vector."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmsearch.encoders import load_encoder
from mmsearch.plugin.index_spec import specs_for
from mmsearch.plugin.schema import Layout
from mmsearch.plugin.sources import open_source
from mmsearch.plugin.worker import IngestOptions, IngestWorker
from mmsearch.rerank.pipeline import SearchPipeline
from mmsearch.rerank.requests import Limits, SearchParams, SearchQuery
from mmsearch.rerank.vector_cache import VectorCache
from support.data import write_items
from support.sidecar_stack import WIDTHS


def ingest(stack: dict, models_dir: Path, manifest: Path, state: Path) -> None:
    encoder = load_encoder("onnx", export_dir=models_dir / "export" / "tiny")
    options = IngestOptions(Layout("cached", WIDTHS), specs_for(WIDTHS, {}), state,
                            batch_size=16, progress=False)
    IngestWorker(encoder, stack["pipeline"].milvus, options).run(open_source(manifest))


def pipelines(stack: dict) -> tuple[SearchPipeline, SearchPipeline, list]:
    base = stack["pipeline"]
    lookups: list[tuple[int, int]] = []
    cache = VectorCache(1 << 20)
    cache.observe = lambda hits, misses, used: lookups.append((hits, misses))

    def build(with_cache: VectorCache | None) -> SearchPipeline:
        return SearchPipeline(base.encoder, base.milvus, WIDTHS, base.specs,
                              Limits(20, 50, 30, rerank_depth=16), 16, stack["scorer"],
                              "sidecar", with_cache)
    return build(cache), build(None), lookups


def assert_same(cached: SearchPipeline, exact: SearchPipeline, query: SearchQuery) -> None:
    """Every item of the base is a hit (top_k 16 of 16), so each item's refine score is
    compared, the changed one included."""
    params = SearchParams(base="cached", top_k=16)
    a, b = cached.search(query, params), exact.search(query, params)
    assert len(a.hits) == 16 - (query.id is not None)  # a query by id is not its own hit
    assert [h.id for h in a.hits] == [h.id for h in b.hits]
    for x, y in zip(a.hits, b.hits, strict=True):
        assert x.refine == pytest.approx(y.refine, abs=2e-3)  # fp16 rounding
        assert x.score == pytest.approx(y.score, abs=2e-3)


def test_cached_rows_answer_as_fetched_ones_until_the_item_changes(
        stack: dict, models_dir: Path, tmp_path: Path) -> None:
    manifest = write_items(tmp_path / "data", 16, seed=3, prefix="c")
    ingest(stack, models_dir, manifest, tmp_path / "state")
    cached, exact, lookups = pipelines(stack)
    queries = [SearchQuery(text="green cat"), SearchQuery(id="c-4"),
               SearchQuery(image=(tmp_path / "data" / "img" / "c-9.png").read_bytes())]
    for query in queries:
        assert_same(cached, exact, query)
    first_hits = sum(h for h, _ in lookups)
    for query in queries:  # the second time the candidates come from the cache
        assert_same(cached, exact, query)
    assert sum(h for h, _ in lookups) - first_hits >= 16
    # c-3 now shows c-9's image: a new content_hash, so its cached row must not be used
    lines = [json.loads(line) for line in manifest.read_text().splitlines()]
    lines[3]["image"] = "img/c-9.png"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    ingest(stack, models_dir, manifest, tmp_path / "state")
    for query in queries:
        assert_same(cached, exact, query)
