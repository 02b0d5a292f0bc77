"""Every bad input kind gives a typed error naming the field, or a documented normalisation."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mmsearch.encoders.errors import ImageDecodeError, ImageSizeError, TextInputError
from mmsearch.encoders.preprocess import ImageSpec, image_to_array, load_rgb, validate_text
from support.data import png_bytes

SPEC = ImageSpec(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_corrupt_bytes_is_a_decode_error_naming_item_and_field() -> None:
    with pytest.raises(ImageDecodeError) as err:
        load_rgb(b"definitely not an image", item="sku-1")
    assert err.value.field == "image" and err.value.item == "sku-1"
    assert "sku-1" in str(err.value)


def test_truncated_png_is_a_decode_error() -> None:
    data = png_bytes(Image.new("RGB", (40, 40), (10, 200, 30)))
    noisy = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3),
                                                                         dtype=np.uint8)))
    for blob in (data[: len(data) // 2], noisy[: len(noisy) // 2]):
        with pytest.raises(ImageDecodeError):
            load_rgb(blob, item="cut")


def test_empty_bytes_rejected() -> None:
    with pytest.raises(ImageDecodeError, match="empty"):
        load_rgb(b"", item="x")


def test_zero_size_image_rejected() -> None:
    # a GIF header that declares a 0x0 logical screen
    gif = b"GIF89a" + (0).to_bytes(2, "little") * 2 + b"\x00\x00\x00" + b";"
    with pytest.raises((ImageSizeError, ImageDecodeError)) as err:
        load_rgb(gif, item="z")
    assert err.value.field == "image"


def test_decompression_bomb_rejected_before_decoding() -> None:
    big = png_bytes(Image.new("1", (7000, 6000)))  # 42 MP, a few KB compressed
    with pytest.raises(ImageSizeError, match="exceeds"):
        load_rgb(big, item="bomb")
    assert load_rgb(big, item="ok", max_pixels=50_000_000).size == (7000, 6000)


@pytest.mark.parametrize("mode", ["P", "CMYK", "I;16", "LA", "RGBA", "L", "1", "F"])
def test_unusual_modes_become_rgb(mode: str) -> None:
    image = Image.new("RGB", (20, 10), (200, 100, 50)).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "F" else "PNG")
    rgb = load_rgb(png_bytes(image, fmt), item=mode)
    assert rgb.mode == "RGB" and rgb.size == (20, 10)
    assert image_to_array(rgb, SPEC).shape == (3, 32, 32)


def test_alpha_composited_on_white() -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    assert load_rgb(png_bytes(transparent)).getpixel((3, 3)) == (255, 255, 255)
    palette = Image.new("P", (8, 8), 0)
    palette.info["transparency"] = 0
    assert load_rgb(png_bytes(palette)).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_uses_full_range() -> None:
    values = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    buffer = io.BytesIO()
    Image.fromarray(values).save(buffer, format="PNG")
    rgb = np.asarray(load_rgb(buffer.getvalue()))
    assert rgb.max() == 255 and rgb.min() == 0


@pytest.mark.parametrize(("text", "reason"), [
    ("", "empty"), ("   \n", "empty"), (b"\xff\xfe bad", "UTF-8"), ("\ud800", "surrogates"),
    (42, "expected a string"),
])
def test_bad_text(text: object, reason: str) -> None:
    with pytest.raises(TextInputError, match=reason) as err:
        validate_text(text, item="t1")
    assert err.value.field == "text"


def test_utf8_bytes_accepted() -> None:
    assert validate_text("café ☕".encode()) == "café ☕"


def test_decode_budget_bounds_pixels_in_flight_and_lets_a_big_image_through() -> None:
    import threading
    import time

    from mmsearch.encoders.preprocess import DecodeBudget

    budget = DecodeBudget(100)
    inside, peak, lock = [0], [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                inside[0] += pixels
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= pixels

    threads = [threading.Thread(target=decode, args=(40,)) for _ in range(8)]
    threads.append(threading.Thread(target=decode, args=(500,)))  # alone over the limit
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert peak[0] == 500 or peak[0] <= 100  # the big one ran alone, the rest in pairs
    assert budget._used == 0


def test_only_the_decoders_users_need_are_tried() -> None:
    from mmsearch.encoders.errors import ImageDecodeError
    from mmsearch.encoders.preprocess import load_rgb

    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageDecodeError, match="not a decodable image"):
        load_rgb(eps)
    for fmt in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"):
        assert load_rgb(png_bytes(Image.new("RGB", (8, 8), "red"), fmt)).size == (8, 8)


def test_a_large_jpeg_decodes_at_a_reduced_scale() -> None:
    from mmsearch.encoders.preprocess import ImageSpec, load_array

    spec = ImageSpec(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    big = png_bytes(Image.new("RGB", (2048, 2048), "blue"), "JPEG")
    array = load_array(big, spec)
    assert array.shape == (3, 32, 32)
    assert abs(float(array[2].mean()) - 1.0) < 0.05  # still blue after the reduced decode
