"""Input validation and preprocessing shared by every runtime (torch, ONNX Runtime, TensorRT).

Everything here is numpy + Pillow + tokenizers, so a serve-only install needs no torch, and
every runtime sees byte-identical tensors for the same input.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmsearch.encoders.errors import ImageDecodeError, ImageSizeError, TextInputError

MAX_PIXELS = 40_000_000
"""Images above this many pixels are refused before decoding (decompression bombs)."""
# the decoders users need; EPS/PS (Ghostscript) and the rest are never tried on bytes a
# client sent
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")


class DecodeBudget:
    """Pixels being decoded at once, across threads: a small PNG can hold 40 MP (160 MB
    once decoded), so 32 concurrent requests could take gigabytes. A decode waits until
    its pixels fit; one image always fits alone, so nothing waits forever."""

    def __init__(self, pixels: int | None = None) -> None:
        self.limit = pixels
        self._used = 0
        self._free = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        if self.limit is None:
            yield
            return
        with self._free:
            while self._used and self._used + pixels > self.limit:
                self._free.wait()
            self._used += pixels
        try:
            yield
        finally:
            with self._free:
                self._used -= pixels
                self._free.notify_all()


DECODE_BUDGET = DecodeBudget()


def set_decode_budget(pixels: int | None) -> None:
    """Bound the pixels decoded at once in this process (None: unbounded); the sidecar sets
    it from limits.decode_pixels_in_flight."""
    DECODE_BUDGET.limit = pixels

ImageInput = bytes | bytearray | memoryview | str | Path | Image.Image


@dataclass(frozen=True)
class ImageSpec:
    """How a tower wants its pixels: square side, per-channel mean and std (0..1 scale)."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def _open(data: ImageInput, item: str) -> Image.Image:
    if isinstance(data, Image.Image):
        return data
    if isinstance(data, str | Path):
        try:
            data = Path(data).read_bytes()
        except OSError as exc:
            raise ImageDecodeError("image", f"cannot read file: {exc.strerror or exc}",
                                   item) from None
    if not isinstance(data, bytes | bytearray | memoryview):
        kind = type(data).__name__
        raise ImageDecodeError("image", f"expected bytes or a path, got {kind}", item)
    if len(data) == 0:
        raise ImageDecodeError("image", "empty image bytes", item)
    try:
        with warnings.catch_warnings():
            # Pillow warns (not raises) between MAX_IMAGE_PIXELS and 2x; we check ourselves.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageSizeError("image", f"too many pixels: {exc}", item) from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad bytes; all mean "not an image"
        raise ImageDecodeError("image", f"not a decodable image ({type(exc).__name__})",
                               item) from None
    return image


def load_array(data: ImageInput, spec: ImageSpec, item: str = "?") -> np.ndarray:
    """One image as the tower's input array, decoded inside the process's pixel budget and
    (JPEG) at the smallest scale still at least twice the input size."""
    image = _open(data, item)
    _check_size(image, item, MAX_PIXELS)
    if image.format == "JPEG":
        image.draft("RGB", (2 * spec.size, 2 * spec.size))
    with DECODE_BUDGET.hold(image.size[0] * image.size[1]):
        return image_to_array(load_rgb(image, item), spec)


def _check_size(image: Image.Image, item: str, max_pixels: int) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageSizeError("image", f"zero-size image ({width}x{height})", item)
    if width * height > max_pixels:
        raise ImageSizeError(
            "image", f"{width}x{height} = {width * height} pixels exceeds {max_pixels}", item
        )


def load_rgb(data: ImageInput, item: str = "?", max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode and validate one image, return it as RGB composited on white.

    Normalisations (documented, not errors): palette, CMYK, 16-bit, grayscale and LA/RGBA
    images are converted to 8-bit RGB; transparency is composited on white, the way the
    emoji are shown. Errors: undecodable/truncated bytes, zero-size, > max_pixels.
    """
    image = _open(data, item)
    _check_size(image, item, max_pixels)
    try:
        image.load()  # header parsed lazily: truncation shows up only here
        return _to_rgb_on_white(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageDecodeError("image", f"truncated or corrupt image data ({exc})",
                               item) from None


def _to_rgb_on_white(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale the used range to 8 bits instead of clipping at 255.
        values = np.asarray(image, dtype=np.float64)
        top = values.max() if values.size and values.max() > 0 else 1.0
        image = Image.fromarray((values / top * 255.0).astype(np.uint8))
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        image = Image.fromarray(((values - values.min()) / span * 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    return on_white(image) if has_alpha else image.convert("RGB")


def on_white(image: Image.Image) -> Image.Image:
    """RGB with transparency composited on white: what every stored and queried image is
    (transparent PNGs, rendered SVGs, product shots), so the models see one background."""
    rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    canvas.alpha_composite(rgba)
    return canvas.convert("RGB")


def image_to_array(image: Image.Image, spec: ImageSpec) -> np.ndarray:
    """RGB image -> float32 CHW array resized to spec.size and normalised."""
    resized = image.resize((spec.size, spec.size), Image.Resampling.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1))


def validate_text(text: object, item: str = "?") -> str:
    """Return text as str; raise TextInputError for empty, non-UTF-8 or non-string input."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TextInputError("text", f"not valid UTF-8 (byte {exc.start})", item) from None
    if not isinstance(text, str):
        raise TextInputError("text", f"expected a string, got {type(text).__name__}", item)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise TextInputError("text", "contains lone surrogates (not valid UTF-8)", item) from None
    if not text.strip():
        raise TextInputError("text", "empty text", item)
    return text


@dataclass(frozen=True)
class TokenBatch:
    """Padded token ids for a batch plus which rows were truncated to the tower's limit."""

    input_ids: np.ndarray  # int64 (B, T)
    attention_mask: np.ndarray  # int64 (B, T)
    truncated: tuple[bool, ...]


class TextTokenizer:
    """Wraps a `tokenizers` tokenizer.json; pads to the longest row, truncates at max_length."""

    def __init__(self, tokenizer_file: Path, max_length: int, pad_id: int | None = None) -> None:
        from tokenizers import Tokenizer

        self.max_length = max_length
        self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.pad_id = pad_id if pad_id is not None else self._find_pad_id()

    def _find_pad_id(self) -> int:
        for token in ("[PAD]", "<pad>", "<|endoftext|>"):
            token_id = self._tokenizer.token_to_id(token)
            if token_id is not None:
                return token_id
        return 0

    def __call__(self, texts: Sequence[str]) -> TokenBatch:
        encodings = self._tokenizer.encode_batch(list(texts))
        rows: list[list[int]] = []
        truncated: list[bool] = []
        for encoding in encodings:
            ids = list(encoding.ids)
            too_long = len(ids) > self.max_length
            if too_long:
                # keep the closing special token (e.g. [SEP] / EOS) that the tower pools on
                ids = ids[: self.max_length - 1] + ids[-1:]
            rows.append(ids)
            truncated.append(too_long)
        length = max(len(r) for r in rows)
        input_ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), length), dtype=np.int64)
        for row, ids in enumerate(rows):
            input_ids[row, : len(ids)] = ids
            attention_mask[row, : len(ids)] = 1
        return TokenBatch(input_ids, attention_mask, tuple(truncated))
