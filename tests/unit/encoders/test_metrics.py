from __future__ import annotations

import numpy as np

from mmsearch.encoders.metrics import retrieval_metrics


def test_metrics_on_a_hand_checked_ranking() -> None:
    gallery = np.eye(4, dtype=np.float32)
    labels = ["a", "b", "c", "a"]
    # query 0 points at item 1 (b) first, then item 3 (a), then item 0 (a)
    q = np.array([[0.1, 0.9, 0.0, 0.5]], np.float32)
    m = retrieval_metrics(q, ["a"], gallery, labels, ks=(1, 2))
    assert m["recall@1"] == 0.0 and m["recall@2"] == 1.0
    # R = 2: ranks 1..2 hold one relevant at rank 2 -> AP@R = (1/2)/2
    assert abs(m["map@r"] - 0.25) < 1e-9
    ideal = 1 + 1 / np.log2(3)
    got = 1 / np.log2(3) + 1 / np.log2(4)
    assert abs(m["ndcg@10"] - got / ideal) < 1e-9


def test_unmatched_queries_are_skipped() -> None:
    gallery = np.eye(2, dtype=np.float32)
    m = retrieval_metrics(np.eye(2, dtype=np.float32), ["x", "zzz"], gallery, ["x", "y"])
    assert m["queries"] == 1.0 and m["recall@1"] == 1.0
