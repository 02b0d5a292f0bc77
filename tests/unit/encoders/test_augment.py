"""Training augmentations: seeded, size-preserving; the query-noise preset really adds
rotation, clutter, occlusion and JPEG, and the default spec stays without them."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw

from mmsearch.encoders.train.augment import PRESETS, QUERY_NOISE, AugmentSpec, augment, query_noise


def _emoji() -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((12, 12, 52, 52), fill=(240, 190, 40))
    ImageDraw.Draw(image).rectangle((28, 20, 36, 44), fill=(40, 20, 10))
    return image


def test_views_are_seeded_and_keep_the_size() -> None:
    for spec in PRESETS.values():
        first = augment(_emoji(), spec, random.Random(3))
        assert first.size == (64, 64) and first.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(first),
                                      np.asarray(augment(_emoji(), spec, random.Random(3))))


def test_default_spec_applies_no_query_noise() -> None:
    spec = AugmentSpec()
    assert (spec.p_rotate, spec.p_clutter, spec.p_occlude, spec.p_jpeg) == (0, 0, 0, 0)
    clean = _emoji()
    np.testing.assert_array_equal(np.asarray(query_noise(clean.copy(), spec, random.Random(0))),
                                  np.asarray(clean))
    assert QUERY_NOISE.p_rotate > 0 and PRESETS["drawing"] == spec


def test_each_query_noise_changes_the_picture() -> None:
    clean = np.asarray(_emoji()).astype(int)
    off = replace(AugmentSpec(), p_rotate=0, p_clutter=0, p_occlude=0, p_jpeg=0)
    for field in ("p_rotate", "p_clutter", "p_occlude", "p_jpeg"):
        noisy = query_noise(_emoji(), replace(off, **{field: 1.0}), random.Random(1))
        assert np.abs(np.asarray(noisy).astype(int) - clean).mean() > 0.5, field
    cluttered = np.asarray(query_noise(_emoji(), replace(off, p_clutter=1.0), random.Random(1)))
    assert not (cluttered[:4, :4] > 245).all()  # the white background is replaced
