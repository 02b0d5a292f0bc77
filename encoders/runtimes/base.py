"""The one Encoder interface every runtime implements.

Validation, preprocessing, batching and fusion live here once; a runtime only supplies the
two forward passes. Results point back to inputs by index; a bad input becomes an
InputProblem naming the item and field and never fails the rest of its batch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mmsearch.encoders.catalog import ModelConfig
from mmsearch.encoders.errors import InputProblem, InvalidInputError
from mmsearch.encoders.mrl import at_width, fuse
from mmsearch.encoders.preprocess import (
    ImageInput,
    ImageSpec,
    TextTokenizer,
    load_array,
    validate_text,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embeddings:
    """Rows for the accepted inputs. indices[i] is the input position of row i."""

    indices: np.ndarray  # int64 (n,)
    vectors: np.ndarray  # float32 (n, width_max); full width, not normalised
    local: np.ndarray | None  # float32 (n, cells, dim), unit cells; rows without image are 0
    has_local: np.ndarray  # bool (n,)
    problems: tuple[InputProblem, ...]  # rejected inputs
    notes: tuple[InputProblem, ...] = ()  # accepted after a normalisation (e.g. truncation)

    def at_width(self, width: int) -> np.ndarray:
        return at_width(self.vectors, width)


def _ids(count: int, ids: Sequence[str] | None) -> list[str]:
    if ids is None:
        return [str(i) for i in range(count)]
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} ids for {count} inputs")
    return [str(i) for i in ids]


class Encoder(ABC):
    """Encode images, texts, or fused items at width_max; slice with Embeddings.at_width."""

    runtime: str = "abstract"
    model_id: str = ""  # identifies the model across runtimes (see encoders.manifest)

    def __init__(self, config: ModelConfig, tokenizer: TextTokenizer, batch_size: int = 32
                 ) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        tower = config.image_tower
        self.image_spec = ImageSpec(tower.input_size, tower.mean, tower.std)

    @property
    @abstractmethod
    def provider(self) -> str:
        """The execution provider / device that actually runs (asked of the runtime)."""

    @abstractmethod
    def _image_forward(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(B,3,S,S) float32 -> (embedding (B, W), local (B, cells, dim))."""

    @abstractmethod
    def _text_forward(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B,T) int64 ids + mask -> embedding (B, W)."""

    # -- images -------------------------------------------------------------------------
    def _prepare_images(self, images: Sequence[ImageInput | None], ids: list[str],
                        field: str = "image"
                        ) -> tuple[list[int], list[np.ndarray], list[InputProblem]]:
        good: list[int] = []
        arrays: list[np.ndarray] = []
        problems: list[InputProblem] = []
        for index, image in enumerate(images):
            if image is None:
                continue
            try:
                arrays.append(load_array(image, self.image_spec, ids[index]))
                good.append(index)
            except InvalidInputError as exc:
                problems.append(InputProblem(index, ids[index], field, exc.reason))
        return good, arrays, problems

    def _run_images(self, arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        cells = self.config.local.cells
        if not arrays:
            return (np.zeros((0, self.config.width_max), np.float32),
                    np.zeros((0, cells, self.config.local.dim), np.float32))
        vectors, local = [], []
        for start in range(0, len(arrays), self.batch_size):
            batch = np.stack(arrays[start : start + self.batch_size])
            emb, loc = self._image_forward(batch)
            vectors.append(np.asarray(emb, np.float32))
            local.append(np.asarray(loc, np.float32))
        return np.concatenate(vectors), np.concatenate(local)

    def encode_images(self, images: Sequence[ImageInput], ids: Sequence[str] | None = None
                      ) -> Embeddings:
        names = _ids(len(images), ids)
        missing = [InputProblem(i, names[i], "image", "no image given")
                   for i, image in enumerate(images) if image is None]
        good, arrays, problems = self._prepare_images(images, names)
        vectors, local = self._run_images(arrays)
        return Embeddings(np.asarray(good, np.int64), vectors, local,
                          np.ones(len(good), bool), tuple(sorted(missing + problems,
                                                                 key=lambda p: p.index)))

    # -- texts --------------------------------------------------------------------------
    def _prepare_texts(self, texts: Sequence[object | None], ids: list[str]
                       ) -> tuple[list[int], list[str], list[InputProblem]]:
        good: list[int] = []
        clean: list[str] = []
        problems: list[InputProblem] = []
        for index, text in enumerate(texts):
            if text is None:
                continue
            try:
                clean.append(validate_text(text, ids[index]))
                good.append(index)
            except InvalidInputError as exc:
                problems.append(InputProblem(index, ids[index], "text", exc.reason))
        return good, clean, problems

    def _run_texts(self, texts: list[str], good: list[int], ids: list[str]
                   ) -> tuple[np.ndarray, list[InputProblem]]:
        if not texts:
            return np.zeros((0, self.config.width_max), np.float32), []
        vectors: list[np.ndarray] = []
        notes: list[InputProblem] = []
        for start in range(0, len(texts), self.batch_size):
            tokens = self.tokenizer(texts[start : start + self.batch_size])
            vectors.append(np.asarray(self._text_forward(tokens.input_ids,
                                                         tokens.attention_mask), np.float32))
            for offset, cut in enumerate(tokens.truncated):
                if cut:
                    index = good[start + offset]
                    notes.append(InputProblem(index, ids[index], "text",
                                              f"truncated to {self.tokenizer.max_length} tokens"))
        if notes:
            log.warning("truncated %d text(s) to %d tokens: %s", len(notes),
                        self.tokenizer.max_length, ", ".join(p.item for p in notes[:5]))
        return np.concatenate(vectors), notes

    def encode_texts(self, texts: Sequence[object], ids: Sequence[str] | None = None
                     ) -> Embeddings:
        names = _ids(len(texts), ids)
        missing = [InputProblem(i, names[i], "text", "no text given")
                   for i, text in enumerate(texts) if text is None]
        good, clean, problems = self._prepare_texts(texts, names)
        vectors, notes = self._run_texts(clean, good, names)
        return Embeddings(np.asarray(good, np.int64), vectors, None, np.zeros(len(good), bool),
                          tuple(sorted(missing + problems, key=lambda p: p.index)), tuple(notes))

    # -- fused items --------------------------------------------------------------------
    def encode_items(self, images: Sequence[ImageInput | None], texts: Sequence[object | None],
                     ids: Sequence[str] | None = None) -> Embeddings:
        """One vector per item from whatever it has (image, text or both), fused.

        An item whose image or text is present but bad is rejected whole (never silently
        encoded from the other half); an item with neither is rejected."""
        if len(images) != len(texts):
            raise ValueError(f"{len(images)} images for {len(texts)} texts")
        names = _ids(len(images), ids)
        img_good, arrays, problems = self._prepare_images(images, names)
        txt_good, clean, txt_problems = self._prepare_texts(texts, names)
        problems += txt_problems
        problems += [InputProblem(i, names[i], "image,text", "item has neither image nor text")
                     for i in range(len(names)) if images[i] is None and texts[i] is None]
        rejected = {p.index for p in problems}
        img_rows = {idx: row for row, idx in enumerate(img_good)}
        txt_rows = {idx: row for row, idx in enumerate(txt_good)}
        accepted = [i for i in range(len(names)) if i not in rejected]
        img_idx = [i for i in accepted if i in img_rows]
        txt_idx = [i for i in accepted if i in txt_rows]
        img_vec, img_local = self._run_images([arrays[img_rows[i]] for i in img_idx])
        txt_vec, notes = self._run_texts([clean[txt_rows[i]] for i in txt_idx], txt_idx, names)
        return self._assemble(accepted, img_idx, img_vec, img_local, txt_idx, txt_vec,
                              tuple(sorted(problems, key=lambda p: p.index)), tuple(notes))

    def _assemble(self, accepted: list[int], img_idx: list[int], img_vec: np.ndarray,
                  img_local: np.ndarray, txt_idx: list[int], txt_vec: np.ndarray,
                  problems: tuple[InputProblem, ...], notes: tuple[InputProblem, ...]
                  ) -> Embeddings:
        count, width = len(accepted), self.config.width_max
        position = {idx: row for row, idx in enumerate(accepted)}
        image = np.zeros((count, width), np.float32)
        text = np.zeros((count, width), np.float32)
        local = np.zeros((count, *img_local.shape[1:]), np.float32)
        has_image = np.zeros(count, bool)
        has_text = np.zeros(count, bool)
        for row, idx in enumerate(img_idx):
            image[position[idx]], local[position[idx]] = img_vec[row], img_local[row]
            has_image[position[idx]] = True
        for row, idx in enumerate(txt_idx):
            text[position[idx]] = txt_vec[row]
            has_text[position[idx]] = True
        vectors = fuse(image, text, has_image, has_text, self.config.fusion)
        return Embeddings(np.asarray(accepted, np.int64), vectors, local, has_image,
                          problems, notes)

    def describe(self) -> str:
        return f"{self.runtime} runtime, provider {self.provider}, model {self.config.name}"
