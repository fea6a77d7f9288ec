"""The shapes dataset draws each object by its definition: a pixel belongs to a disc when
its centre lies within r of the disc's centre, to a square when it lies within r along
both axes (the drawing broadcasts pixel centres instead of building a full grid)."""

import numpy as np
import pytest

from sparsediff_jax.data.shapes import source


def _by_definition(size, kind, cy, cx, r):
  inside = np.zeros((size, size), bool)
  for y in range(size):
    for x in range(size):
      dy, dx = y + 0.5 - cy, x + 0.5 - cx
      inside[y, x] = (dy * dy + dx * dx <= r * r) if kind == 0 else (
          abs(dy) <= r and abs(dx) <= r)
  return inside


@pytest.mark.parametrize('kind', [0, 1])
def test_objects_cover_exactly_the_pixels_whose_centres_they_contain(kind):
  rng = np.random.default_rng(0)
  for _ in range(20):
    size = int(rng.choice([16, 32, 48]))
    cy, cx, r = rng.uniform(0, size), rng.uniform(0, size), rng.uniform(1.0, 6.0)
    canvas = np.zeros((size, size, 3), np.uint8)
    source._draw(canvas, kind, cy, cx, r, source.PALETTE[2])
    want = _by_definition(size, kind, cy, cx, r)
    assert want.any()
    np.testing.assert_array_equal(canvas[want], np.broadcast_to(source.PALETTE[2],
                                                                (want.sum(), 3)))
    assert not canvas[~want].any()
