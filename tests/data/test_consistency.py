"""Global-consistency measures: perfect on training images, worse on images broken on purpose."""

import numpy as np
import pytest
import scipy.ndimage

from sparsediff_jax.data.shapes import make_shapes
from sparsediff_jax.data.shapes import consistency

PAIRS = 2
IMAGES = make_shapes(40, 32, PAIRS, seed=5)
OTHERS = make_shapes(40, 32, PAIRS, seed=6)


def test_training_images_score_perfectly():
  for size, pairs in ((16, 1), (32, 2), (32, 3), (64, 2)):
    scores = consistency.shape_consistency(make_shapes(30, size, pairs, seed=1), pairs)
    assert scores == {'count_exact_fraction': 1.0, 'count_abs_error': 0.0,
                      'symmetry_error': 0.0, 'partnered_fraction': 1.0,
                      'pair_colour_error': 0.0, 'palette_error': 0.0,
                      'consistent_fraction': 1.0}, (size, pairs)


def test_half_from_another_image_breaks_symmetry_and_partners():
  broken = IMAGES.copy()
  broken[:, :, 16:] = OTHERS[:, :, 16:]
  scores = consistency.shape_consistency(broken, PAIRS)
  assert scores['symmetry_error'] > 0.2
  assert scores['partnered_fraction'] < 0.5
  assert scores['consistent_fraction'] < 0.1


def _free_spot(image, radius):
  """A centre in the left half whose disc of `radius` (plus margin) is all background."""
  fg = consistency.foreground(image[None])[0]
  grown = scipy.ndimage.binary_dilation(fg, iterations=2)
  for cy in range(radius + 1, 31 - radius):
    for cx in range(radius + 1, 15 - radius):
      if not grown[cy - radius:cy + radius + 1, cx - radius:cx + radius + 1].any():
        return cy, cx
  return None


def test_an_added_object_is_counted_and_has_no_partner():
  added, changed = IMAGES.copy(), 0
  yy, xx = np.mgrid[0:32, 0:32]
  for img in added:
    spot = _free_spot(img, 2)
    if spot is not None:
      img[(yy - spot[0]) ** 2 + (xx - spot[1]) ** 2 <= 4] = (230, 60, 60)
      changed += 1
  assert changed >= 20
  m = consistency.per_image(added, PAIRS)
  hit = m['count'] != 2 * PAIRS
  assert hit.sum() == changed
  assert np.all(m['count'][hit] == 2 * PAIRS + 1)
  assert np.all(m['partnered'][hit] < 1.0)
  scores = consistency.shape_consistency(added, PAIRS)
  assert scores['count_abs_error'] == pytest.approx(changed / len(added))
  assert scores['consistent_fraction'] == pytest.approx(1 - changed / len(added))


def test_a_removed_object_is_missed_and_leaves_its_partner_alone():
  removed = IMAGES.copy()
  for img in removed:
    labels, _ = consistency.label_objects(consistency.foreground(img[None])[0], 1)
    img[labels == 1] = 0
  m = consistency.per_image(removed, PAIRS)
  np.testing.assert_array_equal(m['count'], 2 * PAIRS - 1)
  assert np.all(m['partnered'] < 1.0)
  assert np.all(m['symmetry_error'] > 0.1)
  assert consistency.shape_consistency(removed, PAIRS)['consistent_fraction'] == 0.0


def test_blur_leaves_the_palette():
  blurred = scipy.ndimage.gaussian_filter(IMAGES.astype(np.float64), (0, 1, 1, 0))
  scores = consistency.shape_consistency(np.round(blurred).astype(np.uint8), PAIRS)
  assert scores['palette_error'] > 0.05


def test_mirror_pair_in_another_colour_is_seen():
  recoloured = IMAGES.copy()
  for img in recoloured:
    right = img[:, 16:]
    right[right.max(-1) > 0] = (60, 200, 70)   # every right-half object turns green
  m = consistency.per_image(recoloured, PAIRS)
  # Objects that were not green already now differ from their partner's colour.
  assert np.mean(m['pair_colour_error'] > 0) > 0.5
  assert np.all(m['partnered'] == 1.0)


def test_speckles_below_the_minimum_area_are_not_objects():
  speckled = IMAGES.copy()
  speckled[:, 0, 0] = 255   # a one-pixel dot in a corner is sampling noise
  assert consistency.shape_consistency(speckled, PAIRS)['count_exact_fraction'] == 1.0


def test_rejects_float_images():
  with pytest.raises(ValueError, match='uint8'):
    consistency.shape_consistency(IMAGES.astype(np.float32), PAIRS)
