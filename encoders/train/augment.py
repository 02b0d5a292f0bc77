"""Drawing-style augmentations for emoji-like items (PIL, seeded per view).

Users' items come from sellers and artists the model never saw, so each view changes what
differs between vendors: colour (hue, saturation, brightness), line weight (dark strokes
thickened or thinned), flat versus shaded fills, outlines, scale and position, blur.

`QUERY_NOISE` adds what a real query suffers (Pailitao's environmental noise): rotation,
background clutter (generated noise textures), partial occlusion, JPEG artefacts. The
default spec leaves them off, so emoji-v1 (trained without them) stays reproducible. The
noisy-query benchmark uses other parameters and kinds training never applies
(perspective, pixel noise, stripe clutter): it measures robustness, not memory.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps


@dataclass(frozen=True)
class AugmentSpec:
    """Probabilities and ranges of each change (configs as data, recorded in checkpoints)."""

    scale: tuple[float, float] = (0.7, 1.0)
    hue_shift: float = 0.06  # fraction of the colour wheel, either way
    saturation: tuple[float, float] = (0.5, 1.4)
    brightness: tuple[float, float] = (0.8, 1.15)
    p_line_weight: float = 0.4
    p_flatten: float = 0.3
    p_outline: float = 0.3
    p_blur: float = 0.4
    blur_radius: tuple[float, float] = (0.3, 1.5)
    p_grayscale: float = 0.05
    p_rotate: float = 0.0
    rotate_degrees: float = 12.0  # either way
    p_clutter: float = 0.0  # the drawing pasted on a generated noise texture
    p_occlude: float = 0.0
    occlude_area: tuple[float, float] = (0.03, 0.08)  # fraction of the picture
    p_jpeg: float = 0.0
    jpeg_quality: tuple[int, int] = (50, 90)


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hue, sat, val = image.convert("HSV").split()
    offset = int(round(shift * 255))
    hue = hue.point(lambda h: (h + offset) % 256)
    return Image.merge("HSV", (hue, sat, val)).convert("RGB")


def _rescale(image: Image.Image, factor: float, rng: random.Random) -> Image.Image:
    width, height = image.size
    small = image.resize((max(1, int(width * factor)), max(1, int(height * factor))),
                         Image.Resampling.BICUBIC)
    canvas = Image.new("RGB", image.size, (255, 255, 255))
    left = rng.randint(0, width - small.size[0])
    top = rng.randint(0, height - small.size[1])
    canvas.paste(small, (left, top))
    return canvas


def _outline(image: Image.Image) -> Image.Image:
    """Dark contours where colour changes, as in flat-shaded sticker styles."""
    edges = image.convert("L").filter(ImageFilter.FIND_EDGES)
    mask = edges.point(lambda v: 255 if v > 40 else 0).filter(ImageFilter.MaxFilter(3))
    # FIND_EDGES also fires on the image border: never frame the picture
    width, height = image.size
    frame = Image.new("L", image.size, 0)
    frame.paste(255, (2, 2, width - 2, height - 2))
    mask = ImageChops.multiply(mask, frame)
    return Image.composite(Image.new("RGB", image.size, (20, 20, 20)), image, mask)


def _noise_texture(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """Smooth random colour blobs: a stand-in for a photo or fabric behind a sticker."""
    noise = np.random.default_rng(rng.randrange(2**31)).integers(
        90, 230, (max(2, size[1] // 8), max(2, size[0] // 8), 3), dtype=np.uint8)
    return Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC)


def _occlude(image: Image.Image, spec: AugmentSpec, rng: random.Random) -> Image.Image:
    side = int((rng.uniform(*spec.occlude_area) * image.size[0] * image.size[1]) ** 0.5)
    left = rng.randint(0, image.size[0] - side)
    top = rng.randint(0, image.size[1] - side)
    shade = tuple(rng.randint(0, 255) for _ in range(3))
    ImageDraw.Draw(image).rectangle((left, top, left + side, top + side), fill=shade)
    return image


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    with Image.open(io.BytesIO(buffer.getvalue())) as decoded:
        return decoded.convert("RGB")


def query_noise(out: Image.Image, spec: AugmentSpec, rng: random.Random) -> Image.Image:
    """Rotation, clutter, occlusion and JPEG, each with its probability (all 0 by default)."""
    if rng.random() < spec.p_rotate:
        out = out.rotate(rng.uniform(-spec.rotate_degrees, spec.rotate_degrees),
                         Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))
    if rng.random() < spec.p_clutter:
        foreground = out.convert("L").point(lambda v: 255 if v < 245 else 0)
        out = Image.composite(out, _noise_texture(out.size, rng), foreground)
    if rng.random() < spec.p_occlude:
        out = _occlude(out, spec, rng)
    if rng.random() < spec.p_jpeg:
        out = _jpeg(out, rng.randint(*spec.jpeg_quality))
    return out


def augment(image: Image.Image, spec: AugmentSpec, rng: random.Random) -> Image.Image:
    """One random view of an RGB image (white background), same size as the input."""
    out = image.convert("RGB")
    background = out.convert("L").point(lambda v: 255 if v >= 250 else 0)
    if rng.random() < spec.p_flatten:
        out = out.quantize(colors=rng.choice((6, 10, 16)), dither=Image.Dither.NONE)
        out = out.convert("RGB")
    if rng.random() < spec.p_line_weight:
        # on a white background MinFilter grows dark strokes, MaxFilter thins them
        out = out.filter(ImageFilter.MinFilter(3) if rng.random() < 0.6
                         else ImageFilter.MaxFilter(3))
    if rng.random() < spec.p_outline:
        out = _outline(out)
    out = _shift_hue(out, rng.uniform(-spec.hue_shift, spec.hue_shift))
    out = ImageEnhance.Color(out).enhance(rng.uniform(*spec.saturation))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(*spec.brightness))
    if rng.random() < spec.p_grayscale:
        out = ImageOps.grayscale(out).convert("RGB")
    # colour changes must not grey the white background every vendor draws on
    out.paste((255, 255, 255), mask=background)
    out = _rescale(out, rng.uniform(*spec.scale), rng)
    if rng.random() < spec.p_blur:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(*spec.blur_radius)))
    return query_noise(out, spec, rng)


# the drawing changes plus query noise, for many-style training (issue 15); hue shifts stay
# small so skin-tone siblings keep their order (the colour cell's evidence)
QUERY_NOISE = replace(AugmentSpec(), p_rotate=0.5, p_clutter=0.3, p_occlude=0.3, p_jpeg=0.4)
PRESETS = {"drawing": AugmentSpec(), "query-noise": QUERY_NOISE}
