"""The listwise scorer: torch model (training, reference) and its serving runtimes (ONNX
Runtime, TensorRT)."""

from mmsearch.rerank.scorer.runtime import (
    OnnxScorer,
    ScorerFiles,
    TensorRTScorer,
    load_scorer_runtime,
)

__all__ = ["OnnxScorer", "ScorerFiles", "TensorRTScorer", "load_scorer_runtime"]
