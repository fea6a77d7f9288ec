"""TFDS datasets, subsets, per-process parts and the registry, through tfds.testing.mock_data
(real TFDS builders, metadata, split slicing and record decoding; no download)."""

import hashlib
import json

from tests.helpers.data_fakes import (decode_index, index_image, make_config, mock_tfds, write_cifar10,
                        write_metadata)

import numpy as np
import pytest
import tensorflow_datasets as tfds

from sparsediff_jax import data

SPLIT_SIZE = 1000   # train examples the fake metadata declares.


@pytest.fixture(scope='module')
def meta_dir(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('tfds'))
  for name in ('celeb_a', 'cifar10', 'imagenet_resized/32x32', 'imagenet_resized/64x64',
               'lsun/bedroom'):
    write_metadata(root, name, SPLIT_SIZE)
  return root


@pytest.mark.parametrize('name,size', [('celeba', 64), ('cifar10', 32), ('imagenet32', 32),
                                       ('imagenet64', 64), ('lsun_bedroom', 32)])
def test_tfds_batches_are_uint8_images_of_the_configured_size(meta_dir, name, size):
  config = make_config(name, image_size=size, num_train_examples=12, random_flip=True)
  with mock_tfds(meta_dir, num_examples=12):
    batch = next(data.make_train_iterator(config))
  assert batch.shape == (8, size, size, 3) and batch.dtype == np.uint8
  # TFDS's fake records are uniform noise; crop/resize keeps them spread over [0, 255]
  # (a constant, clipped or [-1, 1]-scaled output would fail).
  assert batch.min() < 60 and batch.max() > 195 and batch.std() > 8


def tent_weights(n_in: int, n_out: int) -> np.ndarray:
  """float64 [n_out, n_in]: the documented antialiased bilinear resize, written out.

  Output pixel i sits at (i + 0.5) * n_in / n_out in input coordinates; input pixel j (at
  j + 0.5) gets the tent weight 1 - |distance| / width, width = max(n_in / n_out, 1);
  each row is normalised to sum 1.
  """
  scale = n_in / n_out
  width = max(scale, 1.0)
  centres = (np.arange(n_out) + 0.5) * scale
  w = np.maximum(0.0, 1.0 - np.abs(np.arange(n_in) + 0.5 - centres[:, None]) / width)
  return w / w.sum(axis=1, keepdims=True)


def test_celeba_recipe_matches_hand_computed_crop_and_resize(meta_dir):
  # A known 218x178 image: 255 outside the 140x140 central crop (rows 39..178, columns
  # 19..158), a gradient with sharp squares inside. A crop off by one pixel lets the 255
  # border into the edge pixels (tent weight 0.73 of a row), far beyond the tolerance.
  y, x = np.mgrid[0:140, 0:140]
  inside = (y + 0.8 * x + 60 * ((y // 9 + x // 13) % 2)).astype(np.uint8)
  known = np.full((218, 178, 3), 255, np.uint8)
  known[39:179, 19:159] = inside[..., None] // np.array([1, 2, 3], np.uint8)
  config = make_config('celeba', image_size=64, num_train_examples=1)
  with mock_tfds(meta_dir, image_fn=lambda i: known):
    (got,) = data.load_train_images(config)
    described = data.describe_dataset(config)
  w = tent_weights(140, 64)
  want = np.einsum('ij,jkc,lk->ilc', w, known[39:179, 19:159].astype(np.float64), w)
  diff = np.abs(got.astype(np.float64) - np.round(want))
  # TF's float32 filter may land on the other side of a .5 now and then.
  assert diff.max() <= 1 and (diff == 0).mean() > 0.99
  assert described['preprocessing'].startswith('central 140 px')


def test_subset_is_the_first_examples_whatever_the_seed(meta_dir):
  configs = [make_config('celeba', image_size=16, num_train_examples=20) for _ in range(2)]
  configs[1].training.seed = 123
  with mock_tfds(meta_dir, image_fn=index_image):
    loaded = [data.load_train_images(c) for c in configs]
    described = [data.describe_dataset(c) for c in configs]
  np.testing.assert_array_equal(decode_index(loaded[0]), np.arange(20))
  np.testing.assert_array_equal(loaded[0], loaded[1])
  ids = '\n'.join(f'celeb_a/2.1.0/train/{i}' for i in range(20))
  for d in described:
    assert d['selection_sha256'] == hashlib.sha256(ids.encode()).hexdigest()
    assert (d['num_examples'], d['split_size'], d['split']) == (20, SPLIT_SIZE, 'train')
    assert d['subset_rule'] == (f'the first 20 of the {SPLIT_SIZE} examples in TFDS '
                                'canonical (stored) order')
  assert described[0] == described[1]
  json.dumps(described[0])   # what the training loop writes to WORKDIR/dataset.json


def test_subset_size_is_checked_against_the_split(meta_dir):
  with mock_tfds(meta_dir):
    everything = data.describe_dataset(make_config('cifar10', num_train_examples=0))
    assert everything['num_examples'] == SPLIT_SIZE
    with pytest.raises(ValueError, match=f'only {SPLIT_SIZE} training examples'):
      data.describe_dataset(make_config('cifar10', num_train_examples=SPLIT_SIZE + 1))


def test_per_process_parts_are_disjoint_and_cover_the_subset(meta_dir):
  n, processes = 10, 3
  config = make_config('celeba', image_size=8, num_train_examples=n, per_process_read=True,
                       batch_size=6)
  with mock_tfds(meta_dir, image_fn=index_image):
    parts = [decode_index(data.load_train_images(config, process_index=i,
                                                 process_count=processes))
             for i in range(processes)]
    streams = [data.make_train_iterator(config, process_index=i, process_count=processes)
               for i in range(processes)]
  assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
  for part, stream in zip(parts, streams):
    # Two local batches of 2 cover a part of 3 or 4 examples at least once, and nothing
    # from another process's part ever appears.
    seen = np.concatenate([decode_index(next(stream)) for _ in range(2)])
    assert set(seen) == set(part)


def test_prepared_records_are_read_from_data_dir_in_canonical_order(tmp_path):
  # No mock: TFDS's own reader over 3 TFRecord shards of 7, written in data_dir.
  write_cifar10(str(tmp_path), np.stack([index_image(i, 32, 32) for i in range(21)]), 7)
  config = make_config('cifar10', data_dir=str(tmp_path), num_train_examples=0)
  np.testing.assert_array_equal(decode_index(data.load_train_images(config)), np.arange(21))
  # Parts straddle the shard boundaries at 7 and 14.
  parts = [decode_index(data.load_train_images(config, process_index=i, process_count=2))
           for i in range(2)]
  assert [p.tolist() for p in parts] == [list(range(10)), list(range(10, 21))]
  assert data.describe_dataset(config)['split_size'] == 21


def test_missing_dataset_raises_without_trying_to_download(tmp_path, monkeypatch):
  def no_download(*args, **kwargs):
    raise AssertionError('download_and_prepare must not be called with download=False')
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', no_download)
  empty = str(tmp_path / 'empty')
  config = make_config('celeba', data_dir=empty)
  with pytest.raises(data.DatasetUnavailableError) as err:
    data.make_train_iterator(config)
  message = str(err.value)
  assert '\n' not in message
  assert f'`tfds build celeb_a --data_dir={empty}`' in message
  assert 'img_align_celeba.zip' in message and 'config.data.download=True' in message


def test_failed_download_becomes_dataset_unavailable(tmp_path, monkeypatch):
  def quota(*args, **kwargs):
    raise OSError('Google Drive quota exceeded\nTry again in 24 hours')
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare', quota)
  config = make_config('cifar10', data_dir=str(tmp_path), download=True)
  with pytest.raises(data.DatasetUnavailableError,
                     match='quota exceeded Try again in 24 hours') as err:
    data.load_train_images(config)
  assert '\n' not in str(err.value) and isinstance(err.value.__cause__, OSError)


def test_shapes_through_the_registry():
  config = make_config('shapes', num_train_examples=24, batch_size=8)
  images = data.load_train_images(config)
  stream = data.make_train_iterator(config, process_index=1, process_count=2)
  batch = next(stream)
  assert images.shape == (24, 32, 32, 3) and batch.shape == (4, 32, 32, 3)
  assert batch.dtype == np.uint8
  np.testing.assert_array_equal(batch, images[stream.local_indices(0)])
  np.testing.assert_array_equal(images, images[:, :, ::-1])   # mirror-symmetric by design
  assert data.describe_dataset(config)['num_examples'] == 24


def test_unknown_names_and_fields_are_refused():
  with pytest.raises(ValueError, match='choose one of'):
    data.load_train_images(make_config('svhn'))
