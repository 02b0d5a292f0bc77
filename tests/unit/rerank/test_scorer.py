"""The listwise scorer: training signal, export parity, masking, chunk layout."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mmsearch.rerank.scorer import OnnxScorer
from mmsearch.rerank.scorer.export import export_scorer, save_checkpoint
from mmsearch.rerank.scorer.model import ListwiseScorer, ScorerConfig
from mmsearch.rerank.train.lists import Side, mine
from mmsearch.rerank.train.loop import TrainSettings, ndcg_at_10, train

CONFIG = ScorerConfig(width=32, cells=4, local_dim=8, d_model=32, heads=4, layers=2)


def unit(array: np.ndarray) -> np.ndarray:
    return (array / np.linalg.norm(array, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_sides(seed: int = 0) -> tuple[Side, Side]:
    rng = np.random.default_rng(seed)
    labels = np.arange(32) % 16
    prototypes = rng.standard_normal((16, 32))
    cells = rng.standard_normal((16, 4, 8))

    def side() -> Side:
        vectors = unit(prototypes[labels] + 0.9 * rng.standard_normal((32, 32)))
        local = unit(cells[labels] + 0.5 * rng.standard_normal((32, 4, 8)))
        return Side(vectors, local, labels)

    return side(), side()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ListwiseScorer, Path]:
    torch.manual_seed(0)
    model = ListwiseScorer(CONFIG).eval()
    root = tmp_path_factory.mktemp("scorer")
    save_checkpoint(model, root / "ckpt", {"embedder_model_id": "tiny"})
    return model, export_scorer(root / "ckpt", root / "export")


def test_training_loss_falls_in_both_stages() -> None:
    queries, gallery = synthetic_sides()
    lists = mine(queries, gallery, depth=16, force_positive=True)
    assert lists.relevant.any(axis=1).all()
    _, losses = train(CONFIG, queries, gallery, lists,
                      TrainSettings(chunk_size=8, epochs=8, pg_epochs=2, batch_lists=8))
    # the logit starts from the calibrated cosine, so the first epoch is already decent
    assert losses[7] < 0.85 * losses[0]
    assert all(np.isfinite(losses))


def test_an_untrained_scorer_keeps_the_cosine_order() -> None:
    """The correction starts at zero: before training, reranking never reorders refine."""
    torch.manual_seed(0)
    model = ListwiseScorer(CONFIG).eval()
    queries, gallery = synthetic_sides(seed=3)
    cands = torch.from_numpy(gallery.vectors[None, :16])
    query = torch.from_numpy(queries.vectors[:1])
    with torch.no_grad():
        listwise, calibrated = model(query, torch.from_numpy(queries.local[:1]), torch.ones(1),
                                     cands, torch.from_numpy(gallery.local[None, :16]),
                                     torch.ones(1, 16), torch.zeros(1, 16),
                                     torch.ones(1, 16, dtype=torch.bool))
    cosine = (cands[0] @ query[0]).numpy()
    assert (np.argsort(-calibrated[0].numpy()) == np.argsort(-cosine)).all()
    assert torch.equal(listwise, calibrated)


def feeds(scorer: OnnxScorer, count: int, seed: int = 1) -> tuple[dict, tuple]:
    rng = np.random.default_rng(seed)
    vectors = unit(rng.standard_normal((count, 32)))
    local = unit(rng.standard_normal((count, 4, 8)))
    has = rng.random(count) > 0.3
    first = rng.random(count).astype(np.float32)
    args = (vectors[0], local[0], vectors, local, has, first)
    return scorer.arrays(*args), args


@pytest.mark.parametrize("count", [1, 7, 16, 40])
def test_onnx_matches_torch_for_any_number_of_chunks(exported, count: int) -> None:  # noqa: ANN001
    model, folder = exported
    scorer = OnnxScorer(folder, chunk_size=16)
    arrays, args = feeds(scorer, count)
    with torch.inference_mode():
        _, calibrated = model(*(torch.from_numpy(arrays[k]) for k in (
            "query", "query_local", "query_local_mask", "cands", "cand_local",
            "cand_local_mask", "first_stage", "valid")))
    reference = torch.sigmoid(calibrated).reshape(-1)[:count].numpy()
    np.testing.assert_allclose(scorer.rerank(*args), reference, atol=1e-4)
    assert scorer.estimate_ms(count) > 0


def test_padding_and_masked_local_features_do_not_change_scores(exported) -> None:  # noqa: ANN001
    _, folder = exported
    scorer = OnnxScorer(folder, chunk_size=16)
    _, (query, query_local, vectors, local, has, first) = feeds(scorer, 5)
    alone = scorer.rerank(query, query_local, vectors, local, has, first)
    wide = OnnxScorer(folder, chunk_size=32).rerank(query, query_local, vectors, local, has,
                                                     first)
    np.testing.assert_allclose(alone, wide, atol=1e-5)  # more padding, same scores
    scrambled = local.copy()
    scrambled[~has] = unit(np.random.default_rng(9).standard_normal(scrambled[~has].shape))
    np.testing.assert_allclose(scorer.rerank(query, query_local, vectors, scrambled, has,
                                             first), alone, atol=1e-6)


def test_without_cross_attention_candidates_are_scored_independently() -> None:
    torch.manual_seed(0)
    model = ListwiseScorer(ScorerConfig(**{**CONFIG.to_json(), "cross_attention": False}))
    model.eval()
    rng = np.random.default_rng(3)
    q = torch.from_numpy(unit(rng.standard_normal((1, 32))))
    c = torch.from_numpy(unit(rng.standard_normal((1, 6, 32))))
    ql, cl = torch.zeros(1, 4, 8), torch.zeros(1, 6, 4, 8)
    args = (q, ql, torch.zeros(1), c, cl, torch.zeros(1, 6), torch.zeros(1, 6),
            torch.ones(1, 6, dtype=torch.bool))
    with torch.inference_mode():
        _, full = model(*args)
        changed = c.clone()
        changed[0, 5] = -changed[0, 5]
        _, other = model(*args[:3], changed, *args[4:])
    torch.testing.assert_close(full[0, :5], other[0, :5])


def test_ndcg_reward() -> None:
    ranked = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 0]])
    expected = torch.tensor([1.0, 1 / np.log2(3), 0.0], dtype=torch.float32)
    torch.testing.assert_close(ndcg_at_10(ranked), expected)


def test_scorer_engine_needs_tensorrt_and_says_how(exported) -> None:  # noqa: ANN001
    import importlib.util

    from mmsearch.encoders.errors import BackendMissingError
    from mmsearch.rerank.scorer.export import build_scorer_engine

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt imports here; the missing-backend path cannot be shown")
    with pytest.raises(BackendMissingError, match=r"pip install 'mmsearch\[tensorrt\]'"):
        build_scorer_engine(exported[1])


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="tensorrt does not import on this machine (NVIDIA's index is "
                    "unreachable here); the engine path runs on a GPU box")
def test_scorer_engine_builds(exported) -> None:  # noqa: ANN001
    from mmsearch.rerank.scorer.export import build_scorer_engine

    engine = build_scorer_engine(exported[1], chunk_size=16, max_chunks=4)
    assert engine.is_file() and engine.stat().st_size > 0


def test_rerank_many_scores_each_list_as_alone(exported) -> None:  # noqa: ANN001
    from mmsearch.rerank.requests import ScoringList

    scorer = OnnxScorer(exported[1], chunk_size=8)
    rng = np.random.default_rng(9)
    lists = []
    for count in (5, 19, 8):  # partial, several and exactly one chunk
        vectors = rng.standard_normal((count, scorer.width)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        local = rng.standard_normal((count, scorer.cells, scorer.local_dim)).astype(np.float32)
        lists.append(ScoringList(vectors[-1], local[0] if count == 19 else None, vectors,
                                 local, rng.random(count) > 0.3,
                                 rng.random(count).astype(np.float32)))
    together = scorer.rerank_many(lists)
    for item, scores in zip(lists, together, strict=True):
        assert scores.shape == (len(item.vectors),)
        np.testing.assert_allclose(scores, scorer.rerank(*item), atol=1e-5)


def test_tensorrt_scorer_needs_tensorrt_and_says_how(exported) -> None:  # noqa: ANN001
    from mmsearch.encoders.errors import BackendMissingError
    from mmsearch.rerank.scorer import load_scorer_runtime

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt imports here; the missing-backend path cannot be shown")
    with pytest.raises(BackendMissingError, match=r"pip install 'mmsearch\[tensorrt\]'"):
        load_scorer_runtime(exported[1], "tensorrt", chunk_size=8)  # never ONNX instead


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                    reason="tensorrt does not import on this machine (NVIDIA's index is "
                    "unreachable here); the engine path runs on a GPU box")
def test_tensorrt_scorer_scores_as_onnx_within_fp16(exported) -> None:  # noqa: ANN001
    from mmsearch.rerank.scorer import TensorRTScorer
    from mmsearch.rerank.scorer.export import build_scorer_engine

    build_scorer_engine(exported[1], chunk_size=8, max_chunks=2)
    rng = np.random.default_rng(5)
    onnx = OnnxScorer(exported[1], chunk_size=8)
    engine = TensorRTScorer(exported[1], chunk_size=8)
    vectors = rng.standard_normal((40, onnx.width)).astype(np.float32)  # 5 chunks > 2
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    local = rng.standard_normal((40, onnx.cells, onnx.local_dim)).astype(np.float32)
    args = (vectors[0], None, vectors, local, np.ones(40, bool), np.zeros(40, np.float32))
    np.testing.assert_allclose(engine.rerank(*args), onnx.rerank(*args), atol=1e-2)


def test_lists_by_stored_id_never_list_the_query_itself() -> None:
    """Fused items queried by stored id: the item is its own nearest neighbour, so mining
    without exclusion would make every list's top candidate the query."""
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat(np.arange(20), 2).astype(str)  # two items per identity
    side = Side(vectors, np.zeros((40, 4, 8), np.float32), labels)
    lists = mine(side, side, depth=8, force_positive=True, exclude_self=True)
    assert len(lists.query) == 40
    for query, candidates, relevant in zip(lists.query, lists.candidates, lists.relevant,
                                           strict=True):
        assert query not in candidates
        assert relevant.sum() == 1  # the other item of the identity, forced in if needed


@pytest.mark.parametrize(("flags", "named"), [
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--pg-epochs", "-1"], "--pg-epochs: must be >= 0"),
    (["--chunk-size", "0"], "--chunk-size: must be >= 1"),
    (["--query-views", "-1"], "--query-views: must be >= 0"),
    (["--candidates", "40", "--chunk-size", "16"], "multiple of --chunk-size"),
    (["--held-out", "missing.jsonl"], "--held-out: missing.jsonl not found"),
    (["--cross-fit", "x=y.jsonl"], "--cross-fit: needs --held-out"),
])
def test_bad_reranker_flags_are_named(flags: list[str], named: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    from mmsearch.app.cli import main

    assert main(["train", "reranker", *flags, "--out", str(tmp_path / "out")]) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_colour_cell_is_compared_whole_and_moves_the_score() -> None:
    """With colour on, the last local row is the colour descriptor: a candidate whose
    colour matches the query's outranks its twin that differs only there."""
    config = ScorerConfig(width=32, cells=5, local_dim=8, d_model=32, colour=True)
    torch.manual_seed(0)
    model = ListwiseScorer(config).eval()
    with torch.no_grad():
        model.colour_scale.fill_(5.0)
    rng = np.random.default_rng(0)
    query = torch.from_numpy(unit(rng.standard_normal((1, 32))))
    local = torch.from_numpy(unit(rng.standard_normal((1, 5, 8))))
    twin = torch.from_numpy(unit(query.numpy() + 0.3 * rng.standard_normal((1, 32))))
    cands = twin.repeat(1, 2, 1).reshape(1, 2, 32)
    cand_local = local.repeat(1, 2, 1, 1).reshape(1, 2, 5, 8).clone()
    cand_local[0, 1, -1] = -local[0, -1]  # the second twin's colour is the opposite
    _, calibrated = model(query, local, torch.ones(1), cands, cand_local, torch.ones(1, 2),
                          torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))
    assert calibrated[0, 0] > calibrated[0, 1] + 5.0  # 5 * (cos 1 - cos -1), less the rest
    no_local = model(query, local, torch.zeros(1), cands, cand_local, torch.ones(1, 2),
                     torch.zeros(1, 2), torch.ones(1, 2, dtype=torch.bool))[1]
    assert torch.allclose(no_local[0, 0], no_local[0, 1])  # masked: no colour evidence


def test_an_ablation_saved_with_the_shipped_meta_loads_as_itself(tmp_path: Path) -> None:
    """The benchmark saves ablations with the shipped scorer's info; the variant's own
    switches must survive the save, and its graph (no cross-attention) must run on ORT."""
    from mmsearch.rerank.scorer.export import load_checkpoint

    ablation = replace(CONFIG, cross_attention=False, use_local=False)
    save_checkpoint(ListwiseScorer(ablation).eval(), tmp_path / "ckpt",
                    {"config": CONFIG.to_json(), "embedder_model_id": "tiny"})
    loaded, meta = load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == ablation and meta["embedder_model_id"] == "tiny"
    scorer = OnnxScorer(export_scorer(tmp_path / "ckpt", tmp_path / "onnx"), chunk_size=8)
    queries, gallery = synthetic_sides()
    probs = scorer.rerank(queries.vectors[0], None, gallery.vectors[:12], gallery.local[:12],
                          np.zeros(12, bool), np.zeros(12, np.float32))
    assert probs.shape == (12,) and np.isfinite(probs).all()


def test_without_vector_tokens_the_scores_ignore_the_embedders_coordinates() -> None:
    """Rotating query and candidates together keeps every cosine: a scorer fed only the
    scalar and local evidence scores the same, one fed the elementwise products does not."""
    rng = np.random.default_rng(0)
    rotation = torch.from_numpy(np.linalg.qr(rng.standard_normal((32, 32)))[0]).float()
    query = torch.from_numpy(unit(rng.standard_normal((1, 32))))
    cands = torch.from_numpy(unit(rng.standard_normal((1, 8, 32))))
    local = torch.from_numpy(unit(rng.standard_normal((1, 8, 4, 8))))
    rest = (torch.ones(1, 8), torch.zeros(1, 8), torch.ones(1, 8, dtype=torch.bool))

    def scores(model: ListwiseScorer, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return model(q, local[:, 0], torch.ones(1), c, local, *rest)[1]

    for use_vectors, invariant in ((False, True), (True, False)):
        torch.manual_seed(0)
        model = ListwiseScorer(replace(CONFIG, use_vectors=use_vectors)).eval()
        with torch.no_grad():
            model.correction_head.weight.normal_(0, 1.0)
        same = torch.allclose(scores(model, query, cands),
                              scores(model, query @ rotation, cands @ rotation), atol=1e-4)
        assert same is invariant
