"""The listwise scorer: torch model (training, reference) and ONNX Runtime scorer (serving)."""

from mmsearch.rerank.scorer.runtime import OnnxScorer, ScorerFiles

__all__ = ["OnnxScorer", "ScorerFiles"]
