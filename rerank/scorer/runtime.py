"""Scorer runtimes: ONNX Runtime (CPU) and the fp16 TensorRT engine that `mmsearch export
--tensorrt` builds. All chunks of a request (and of every request in a batch) run as one
batch; scores are calibrated probabilities, so merging chunks is a sort."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsearch.encoders.errors import BackendMissingError, ModelMismatchError
from mmsearch.encoders.manifest import sha256_file
from mmsearch.encoders.runtimes.onnx_runtime import session_options
from mmsearch.rerank.requests import ScoringList

log = logging.getLogger(__name__)
INPUTS = ("query", "query_local", "query_local_mask", "cands", "cand_local", "cand_local_mask",
          "first_stage", "valid")


@dataclass(frozen=True)
class ScorerFiles:
    folder: Path

    @property
    def onnx(self) -> Path:
        return self.folder / "scorer.onnx"

    @property
    def meta(self) -> Path:
        return self.folder / "scorer.json"


class ChunkedScorer:
    """What every scorer backend shares: the chunk layout, the calibrated merge, the
    per-chunk time estimate. A backend loads its model and runs one batch of chunks."""

    runtime = ""

    def __init__(self, folder: Path, chunk_size: int) -> None:
        files = ScorerFiles(Path(folder))
        if not files.meta.is_file():
            raise FileNotFoundError(f"no scorer.json in {folder}: run `mmsearch export`")
        self.files = files
        self.meta = json.loads(files.meta.read_text())
        self.name = self.meta["name"]
        self.embedder_model_id = self.meta.get("embedder_model_id", "")
        config = self.meta["config"]
        self.cells, self.local_dim, self.width = (config["cells"], config["local_dim"],
                                                  config["width"])
        self.chunk_size = chunk_size
        self._ms_per_chunk = 1.0

    def _calibrated(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's calibrated logits, (chunks, chunk_size), for one batch of chunks."""
        raise NotImplementedError

    def _warm_up(self) -> None:
        rng = np.random.default_rng(0)
        vectors = rng.standard_normal((self.chunk_size * 2, self.width)).astype(np.float32)
        query = vectors[0] / np.linalg.norm(vectors[0])
        local = np.zeros((len(vectors), self.cells, self.local_dim), np.float32)
        for _ in range(3):
            started = time.perf_counter()
            self.rerank(query, None, vectors, local, np.zeros(len(vectors), bool),
                        np.zeros(len(vectors), np.float32))
            self._ms_per_chunk = (time.perf_counter() - started) * 1000 / 2
        log.info("scorer %s on %s, chunk size %d (~%.2f ms per chunk)", self.name,
                 self.runtime, self.chunk_size, self._ms_per_chunk)

    def estimate_ms(self, candidates: int) -> float:
        return self._ms_per_chunk * max(1, -(-candidates // self.chunk_size))

    def arrays(self, query: np.ndarray, query_local: np.ndarray | None, vectors: np.ndarray,
               local: np.ndarray, has_local: np.ndarray, first_stage: np.ndarray
               ) -> dict[str, np.ndarray]:
        """Pad to whole chunks and lay them out as a batch (chunks, C, ...)."""
        count, size = len(vectors), self.chunk_size
        chunks = max(1, -(-count // size))
        padded = chunks * size

        def pad(array: np.ndarray) -> np.ndarray:
            out = np.zeros((padded, *array.shape[1:]), array.dtype)
            out[:count] = array
            return out.reshape(chunks, size, *array.shape[1:])

        q_local = (query_local if query_local is not None
                   else np.zeros((self.cells, self.local_dim), np.float32))
        return {
            "query": np.repeat(query[None].astype(np.float32), chunks, 0),
            "query_local": np.repeat(q_local[None].astype(np.float32), chunks, 0),
            "query_local_mask": np.full(chunks, float(query_local is not None), np.float32),
            "cands": pad(vectors.astype(np.float32)),
            "cand_local": pad(local.astype(np.float32)),
            "cand_local_mask": pad(has_local.astype(np.float32)),
            "first_stage": pad(first_stage.astype(np.float32)),
            "valid": pad(np.ones(count, bool)),
        }

    def rerank(self, query: np.ndarray, query_local: np.ndarray | None, vectors: np.ndarray,
               local: np.ndarray, has_local: np.ndarray, first_stage: np.ndarray
               ) -> np.ndarray:
        return self.rerank_many([ScoringList(query, query_local, vectors, local, has_local,
                                             first_stage)])[0]

    def rerank_many(self, lists: Sequence[ScoringList]) -> list[np.ndarray]:
        """Several queries' candidate lists in one session run: their chunks are stacked
        on the batch axis (a chunk never mixes queries, so each list scores as alone)."""
        started = time.perf_counter()
        per_list = [self.arrays(*item) for item in lists]
        feeds = {name: np.concatenate([f[name] for f in per_list]) for name in INPUTS}
        flat = self._calibrated(feeds).reshape(len(feeds["query"]), -1)
        out, first_chunk = [], 0
        for item, arrays in zip(lists, per_list, strict=True):
            chunks = len(arrays["query"])
            logits = flat[first_chunk:first_chunk + chunks].reshape(-1)[: len(item.vectors)]
            out.append((1.0 / (1.0 + np.exp(-logits))).astype(np.float32))
            first_chunk += chunks
        elapsed = (time.perf_counter() - started) * 1000 / max(1, first_chunk)
        self._ms_per_chunk = 0.8 * self._ms_per_chunk + 0.2 * elapsed  # moving estimate
        return out


class OnnxScorer(ChunkedScorer):
    def __init__(self, folder: Path, chunk_size: int = 16, threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise BackendMissingError("onnxruntime", "pip install 'mmsearch[cpu]'") from None
        super().__init__(folder, chunk_size)
        if sha256_file(self.files.onnx) != self.meta["sha256"]:
            raise ModelMismatchError(f"{self.files.onnx} does not match scorer.json: re-export")
        self.session = ort.InferenceSession(str(self.files.onnx), session_options(ort, threads),
                                            providers=["CPUExecutionProvider"])
        self.runtime = f"ONNX Runtime {self.session.get_providers()[0]}"
        self._warm_up()

    def _calibrated(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        _, calibrated = self.session.run(None, feeds)
        return calibrated


class TensorRTScorer(ChunkedScorer):
    """The scorer's fp16 engine (scorer.json's `engine`), written against TensorRT 10's
    public API like the encoder engines. Where `tensorrt` does not import it raises
    BackendMissingError with the pip command: nothing falls back to ONNX Runtime."""

    def __init__(self, folder: Path, chunk_size: int = 16) -> None:
        from mmsearch.encoders.runtimes.tensorrt_runtime import (
            TensorRTEngine,
            import_cuda_torch,
            import_tensorrt,
        )

        trt, torch = import_tensorrt(), import_cuda_torch()
        super().__init__(folder, chunk_size)
        engine = self.meta.get("engine")
        if not engine:
            raise FileNotFoundError(f"no TensorRT engine for the scorer in {folder}: run "
                                    "`mmsearch export --tensorrt`")
        path = self.files.folder / engine["file"]
        if sha256_file(path) != engine["sha256"]:
            raise ModelMismatchError(f"{path} does not match scorer.json: rebuild it with "
                                     "`mmsearch export --tensorrt`")
        if chunk_size > engine["chunk_size"]:
            raise ModelMismatchError(f"server.chunk_size {chunk_size} is above the engine's "
                                     f"profile ({engine['chunk_size']}): rebuild the engine "
                                     "with a larger chunk size or lower server.chunk_size")
        self.max_chunks = int(engine["max_chunks"])
        self._engine = TensorRTEngine(trt, torch, path)
        self.runtime = "TensorRT fp16"
        self._warm_up()

    def _calibrated(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        chunks = len(feeds["query"])
        parts = []
        for start in range(0, chunks, self.max_chunks):  # the engine's profile bounds a run
            outputs = self._engine.run({name: array[start:start + self.max_chunks]
                                        for name, array in feeds.items()})
            parts.append(outputs["calibrated"])
        return np.concatenate(parts)


def load_scorer_runtime(folder: Path, runtime: str, chunk_size: int) -> ChunkedScorer:
    """The scorer on the configured runtime: TensorRT's engine with models.runtime
    tensorrt, ONNX Runtime otherwise (the torch runtime has no scorer of its own)."""
    if runtime == "tensorrt":
        return TensorRTScorer(folder, chunk_size)
    return OnnxScorer(folder, chunk_size)
