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
