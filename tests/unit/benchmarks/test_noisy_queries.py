"""The noisy-query benchmark's recipe: seeded (the same query gets the same photo every
run), it really distorts, and it keeps the emoji recognisable in size."""

from __future__ import annotations

import random

import numpy as np
from PIL import Image, ImageDraw

from benchmarks.noisy_queries import distort


def _emoji() -> Image.Image:
    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).ellipse((8, 8, 56, 56), fill=(250, 200, 0))
    return image


def test_recipe_is_seeded_and_distorts() -> None:
    first = np.asarray(distort(_emoji(), random.Random(7)))
    again = np.asarray(distort(_emoji(), random.Random(7)))
    other = np.asarray(distort(_emoji(), random.Random(8)))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first.astype(int) - other).mean() > 5
    clean = np.asarray(_emoji().resize(first.shape[:2][::-1]))
    assert np.abs(first.astype(int) - clean).mean() > 10  # not the clean picture
    # the background is no longer white: clutter was pasted behind the drawing
    assert (first[:4, :4] > 245).all(axis=-1).mean() < 0.9


def test_each_kind_alone_changes_the_picture_and_the_steps_chain() -> None:
    from benchmarks.noisy_queries import KINDS

    clean = np.asarray(_emoji().resize((128, 128), Image.Resampling.BICUBIC)).astype(int)
    for kind in KINDS:
        alone = np.asarray(distort(_emoji(), random.Random(3), (kind,))).astype(int)
        assert np.abs(alone - clean).mean() > 0.5, kind
    # the full recipe is the steps chained on one generator, in order
    chained = np.asarray(distort(_emoji(), random.Random(3), tuple(KINDS)))
    np.testing.assert_array_equal(chained, np.asarray(distort(_emoji(), random.Random(3))))
    without_stripes = tuple(k for k in KINDS if k != "stripes")
    assert (np.asarray(distort(_emoji(), random.Random(3), without_stripes))[:4, :4]
            > 200).all(axis=-1).mean() > 0.5  # no clutter asked for, a light corner stays


def test_perspective_warps_without_mirroring() -> None:
    """A mark in the top-right corner stays in the top-right quarter."""
    from benchmarks.noisy_queries import _perspective

    image = Image.new("RGB", (64, 64), (255, 255, 255))
    ImageDraw.Draw(image).rectangle((44, 4, 60, 20), fill=(0, 0, 0))
    for seed in range(5):
        dark = np.argwhere(np.asarray(_perspective(image, random.Random(seed)))[..., 0] < 100)
        rows, cols = dark.mean(axis=0)
        assert rows < 32 and cols > 32, seed
