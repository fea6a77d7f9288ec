"""Blocked nearest neighbours with a running top-2, and the memorization criterion."""

import os

import numpy as np
import pytest

from sparsediff_jax.data.shapes import make_shapes
from sparsediff_jax.metrics import memorization

TRAIN = make_shapes(200, 32, 2, seed=0)


def _brute_force(q, r):
  q = q.reshape(len(q), -1).astype(np.float64)
  r = r.reshape(len(r), -1).astype(np.float64)
  d = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1))
  order = np.argsort(d, axis=1)
  rows = np.arange(len(q))
  return d[rows, order[:, 0]], d[rows, order[:, 1]], order[:, 0]


def test_blocks_give_the_brute_force_answer():
  rng = np.random.default_rng(0)
  queries = rng.normal(size=(37, 20)).astype(np.float32)
  refs = rng.normal(size=(53, 20)).astype(np.float32)
  # Blocks that divide neither count: padded rows must never win.
  d1, d2, nearest = memorization.nearest_two(queries, refs, query_block=8, reference_block=16)
  b1, b2, bn = _brute_force(queries, refs)
  np.testing.assert_allclose(d1, b1, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(d2, b2, rtol=1e-4, atol=1e-4)
  np.testing.assert_array_equal(nearest, bn)


def test_uint8_images_are_measured_in_unit_pixels():
  queries = make_shapes(5, 32, 2, seed=9)
  d1, d2, nearest = memorization.nearest_two(queries, TRAIN[:30], reference_block=7)
  b1, b2, bn = _brute_force(queries / 255.0, TRAIN[:30] / 255.0)
  np.testing.assert_allclose(d1, b1, rtol=1e-4, atol=1e-3)
  np.testing.assert_allclose(d2, b2, rtol=1e-4, atol=1e-3)
  np.testing.assert_array_equal(nearest, bn)


def test_planted_duplicates_are_flagged_and_fresh_images_are_not(tmp_path):
  planted = [3, 50, 199]
  fresh = make_shapes(40, 32, 2, seed=123)    # another draw of the same generator
  samples = np.concatenate([TRAIN[planted], fresh])
  metrics, nb = memorization.memorization_report(samples, TRAIN, query_block=16,
                                                 reference_block=64)
  ratio = nb['d1'] / nb['d2']
  np.testing.assert_array_equal(nb['nearest'][:3], planted)
  assert np.all(nb['d1'][:3] < 1e-2)
  assert np.all(ratio[:3] < memorization.MEMORIZED_RATIO)
  assert np.all(ratio[3:] >= memorization.MEMORIZED_RATIO)
  assert metrics['pixel_memorized_fraction'] == pytest.approx(3 / len(samples))
  np.testing.assert_array_equal(
      np.sort(memorization.most_memorized(nb['d1'], nb['d2'], 3)), [0, 1, 2])

  path = memorization.save_memorization_grid(str(tmp_path / 'm' / 'grid.png'), samples,
                                             TRAIN, nb, k=4)
  assert os.path.getsize(path) > 1000


def test_feature_space_neighbours():
  rng = np.random.default_rng(1)
  train_features = rng.normal(size=(100, 32))
  sample_features = np.concatenate([train_features[:5] + 1e-3, rng.normal(size=(15, 32))])
  metrics, _ = memorization.memorization_report(
      make_shapes(20, 32, 2, seed=4), TRAIN[:100], sample_features=sample_features,
      train_features=train_features)
  assert metrics['feature_memorized_fraction'] == pytest.approx(5 / 20)
  assert metrics['pixel_memorized_fraction'] == 0.0
  with pytest.raises(ValueError, match='both'):
    memorization.memorization_report(TRAIN[:4], TRAIN, sample_features=sample_features)


def test_needs_two_references_of_the_same_kind():
  with pytest.raises(ValueError, match='at least 2'):
    memorization.nearest_two(TRAIN[:3], TRAIN[:1])
  with pytest.raises(ValueError, match='same shape'):
    memorization.nearest_two(TRAIN[:3], make_shapes(3, 16, 2))
