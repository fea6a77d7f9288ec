"""ArrayIterator: flips, exact resume, and both process layouts."""

import json

import numpy as np
import pytest

from sparsediff_jax.data.iterators import ArrayIterator

# 10 distinct images that are not mirror-symmetric: each one is told apart from the others
# and from its own mirror image.
IMAGES = np.random.default_rng(0).integers(0, 256, (10, 4, 5, 3), dtype=np.uint8)


def test_flips_are_mirror_images_half_of_the_time():
  stream = ArrayIterator(IMAGES, 32, seed=3, random_flip=True)
  flipped = []
  for position in range(50):
    originals = IMAGES[stream.local_indices(position)]
    batch = next(stream)
    mirrored = np.all(batch == originals[:, :, ::-1], axis=(1, 2, 3))
    assert np.all(mirrored | np.all(batch == originals, axis=(1, 2, 3)))
    flipped.append(mirrored)
  fraction = np.concatenate(flipped).mean()
  # 1600 fair coin flips: 4 standard deviations is 0.05.
  assert abs(fraction - 0.5) < 4 * np.sqrt(0.25 / 1600)


def test_no_flips_unless_asked():
  stream = ArrayIterator(IMAGES, 8, seed=3)
  for position in range(5):
    np.testing.assert_array_equal(IMAGES[stream.local_indices(position)], next(stream))


def test_each_epoch_visits_every_image_once():
  stream = ArrayIterator(IMAGES, 5, seed=1)
  epochs = np.concatenate([stream.global_indices(p) for p in range(6)]).reshape(3, 10)
  for epoch in epochs:
    assert sorted(epoch) == list(range(10))
  assert not np.array_equal(epochs[0], epochs[1])   # reshuffled every epoch


@pytest.mark.parametrize('local_shard', [False, True])
def test_restored_state_continues_the_same_batches(local_shard):
  def stream():
    return ArrayIterator(IMAGES, 4, seed=7, process_index=1, process_count=2,
                         random_flip=True, local_shard=local_shard)
  uninterrupted = stream()
  for _ in range(7):   # 7 x 2 local examples: past the first epoch of 10 (or a part of it)
    next(uninterrupted)
  state = json.loads(json.dumps(uninterrupted.get_state()))
  resumed = stream()
  resumed.set_state(state)
  for _ in range(6):
    np.testing.assert_array_equal(next(resumed), next(uninterrupted))


def test_shared_layout_gives_the_same_global_batches_on_any_process_count():
  single = ArrayIterator(IMAGES, 6, seed=5, random_flip=True)
  triple = [ArrayIterator(IMAGES, 6, seed=5, random_flip=True, process_index=i,
                          process_count=3) for i in range(3)]
  for _ in range(4):
    np.testing.assert_array_equal(next(single), np.concatenate([next(t) for t in triple]))


def test_local_shards_draw_their_own_order():
  a, b = (ArrayIterator(IMAGES, 4, seed=5, process_index=i, process_count=2,
                        local_shard=True) for i in range(2))
  orders = [np.concatenate([s.local_indices(p) for p in range(5)]) for s in (a, b)]
  assert sorted(orders[0]) == sorted(orders[1]) == list(range(10))
  assert not np.array_equal(orders[0], orders[1])
  with pytest.raises(ValueError, match='only its own part'):
    a.global_indices(0)
