"""Fashion-MNIST / MNIST reader (sparsediff_jax/data/fashion_mnist/source.py) on small IDX files
the tests write, the CLI's refusals, and (slow, when installed) the real files."""

import gzip
import json
import os

import numpy as np
import pytest

from tests.helpers import cli_runs
from tests.helpers.idx_fakes import idx_bytes, write_idx_folder
from sparsediff_jax import data, errors, registry
from sparsediff_jax.data.fashion_mnist import source as fashion_mnist

REAL_DIR = '/usr/share/datasets/fashion-mnist'


@pytest.fixture
def idx_config(tmp_path, tiny_config):
  folder = tmp_path / 'fmnist'
  arrays = write_idx_folder(folder)

  def make(**overrides):
    config = tiny_config()
    config.data.name = 'fashion_mnist'
    config.data.data_dir = str(folder)
    config.data.num_train_examples = 0
    for key, value in overrides.items():
      setattr(config.data, key, value)
    return config
  make.folder, make.arrays = folder, arrays
  return make


@pytest.mark.parametrize('size', [16, 28, 32])
def test_sizes_rgb_and_native_pixels(idx_config, size):
  config = idx_config(image_size=size)
  images = data.load_train_images(config)
  assert images.shape == (60, size, size, 3) and images.dtype == np.uint8
  assert np.array_equal(images[..., 0], images[..., 2])
  native, labels = idx_config.arrays['train']
  if size == 28:
    np.testing.assert_array_equal(images[..., 0], native)
  # The band of each label survives resizing: the brightest row is at 2c + 1 (scaled,
  # half-pixel centres).
  profile = images[..., 0].astype(float).mean(axis=2)
  bright = profile > 0.5 * profile.max(axis=1, keepdims=True)
  centre = (bright * np.arange(size)).sum(axis=1) / bright.sum(axis=1)
  np.testing.assert_allclose(centre, (2 * labels + 1.5) * size / 28 - 0.5, atol=0.6)


def test_uncompressed_files_read_the_same(tmp_path, idx_config):
  write_idx_folder(tmp_path / 'plain', gz=False)
  plain = data.load_train_images(idx_config(image_size=28, data_dir=str(tmp_path / 'plain')))
  np.testing.assert_array_equal(plain, data.load_train_images(idx_config(image_size=28)))


def test_subset_is_the_first_n_and_balanced_takes_n_over_10_per_class(idx_config):
  _, labels = idx_config.arrays['train']
  first = data.load_train_images(idx_config(image_size=28, num_train_examples=23))
  np.testing.assert_array_equal(first[..., 0], idx_config.arrays['train'][0][:23])
  balanced = fashion_mnist.selection(labels.astype(np.int64), 23, True)
  counts = np.bincount(labels[balanced], minlength=10)
  assert counts.tolist() == [3, 3, 3] + [2] * 7
  assert np.all(np.diff(balanced) > 0)
  # Each class contributes its first images in stored order.
  for c in range(10):
    np.testing.assert_array_equal(balanced[labels[balanced] == c],
                                  np.flatnonzero(labels == c)[:counts[c]])
  images = data.load_train_images(idx_config(image_size=28, num_train_examples=23,
                                             class_balanced=True))
  np.testing.assert_array_equal(images[..., 0], idx_config.arrays['train'][0][balanced])
  with pytest.raises(ValueError, match='2 examples of class 1 .* has 0'):
    fashion_mnist.selection(np.zeros(60, np.int64), 20, True)


def test_describe_dataset_and_content_fingerprint(idx_config):
  config = idx_config(image_size=16, num_train_examples=30)
  record = data.describe_dataset(config)
  assert record['name'] == 'fashion_mnist' and record['num_examples'] == 30
  assert record['split_size'] == 60 and record['image_shape'] == [16, 16, 3]
  assert str(idx_config.folder) in record['source']
  json.dumps(record)
  balanced = data.describe_dataset(idx_config(image_size=16, num_train_examples=30,
                                              class_balanced=True))
  assert balanced['selection_sha256'] != record['selection_sha256']
  # Replacing one training image under the same names changes the content fingerprint.
  images, labels = idx_config.arrays['train']
  images = images.copy()
  images[5, 0, 0] ^= 0xFF
  with gzip.open(idx_config.folder / 'train-images-idx3-ubyte.gz', 'wb') as f:
    f.write(idx_bytes(images, 2051))
  again = data.describe_dataset(config)
  assert again['selection_sha256'] == record['selection_sha256']
  assert again['content_sha256'] != record['content_sha256']


def test_per_host_parts_tile_the_subset(idx_config):
  config = idx_config(image_size=16, num_train_examples=25)
  whole = data.load_train_images(config)
  parts = [data.load_train_images(config, process_index=i, process_count=3) for i in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_fresh_images_are_the_test_split(idx_config):
  config = idx_config(image_size=28)
  fresh = registry.DATASET_FRESH.get('fashion_mnist')(config, 8, 60)
  np.testing.assert_array_equal(fresh[..., 1], idx_config.arrays['test'][0][:8])
  images, labels = fashion_mnist.load_split(config.data, 'test', 16)
  assert images.shape == (20, 16, 16, 3) and labels.tolist() == \
      idx_config.arrays['test'][1].tolist()


def test_mnist_uses_the_same_reader(idx_config):
  config = idx_config(image_size=28, name='mnist')
  np.testing.assert_array_equal(data.load_train_images(config)[..., 0],
                                idx_config.arrays['train'][0])


def test_missing_files_name_the_folder_the_package_and_tfds(tmp_path, idx_config):
  config = idx_config(data_dir=str(tmp_path / 'nowhere'))
  with pytest.raises(errors.DatasetUnavailableError) as info:
    data.describe_dataset(config)
  message = str(info.value)
  assert str(tmp_path / 'nowhere') in message and '\n' not in message
  assert 'apt-get install dataset-fashion-mnist' in message
  assert "config.data.source='tfds'" in message and 'train-images-idx3-ubyte' in message


def test_a_file_or_a_link_loop_is_named_as_such_not_as_missing(tmp_path, idx_config):
  a_file = tmp_path / 'train-images-idx3-ubyte.gz'
  a_file.write_bytes(b'x')
  loop = tmp_path / 'loop'
  loop.symlink_to(loop)
  for data_dir, words in ((a_file, 'is a file, not the folder of the four IDX files'),
                          (loop, 'cannot be opened (Too many levels of symbolic links')):
    with pytest.raises(errors.DatasetUnavailableError) as info:
      data.describe_dataset(idx_config(data_dir=str(data_dir)))
    assert str(info.value).startswith(f'config.data.data_dir={str(data_dir)!r} '
                                      f'{words}'), str(info.value)
  # One of the four names, a link loop inside the folder: that file, and why.
  target = idx_config.folder / 'train-labels-idx1-ubyte.gz'
  target.unlink()
  target.symlink_to(target)
  with pytest.raises(fashion_mnist.IdxFormatError,
                     match=rf'^{target}: not a readable file \(Too many levels of symbolic'):
    data.describe_dataset(idx_config())


def _damage(folder, how):
  path = folder / 'train-images-idx3-ubyte.gz'
  content = gzip.decompress(path.read_bytes())
  if how == 'magic':
    content = (2049).to_bytes(4, 'big') + content[4:]
  elif how == 'short':
    content = content[:-100]
  elif how == 'header':
    content = content[:10]
  if how == 'truncated_gzip':
    path.write_bytes(path.read_bytes()[:-30])
  else:
    path.write_bytes(gzip.compress(content))
  return path


@pytest.mark.parametrize('how,pattern', [
    ('magic', 'magic number 2049, expected 2051'),
    ('short', r'header says 60x28x28 values .*truncated'),
    ('header', 'too short for its 16-byte header'),
    ('truncated_gzip', 'not a complete gzip file')])
def test_malformed_files_name_the_file_and_the_fault(idx_config, how, pattern):
  path = _damage(idx_config.folder, how)
  with pytest.raises(fashion_mnist.IdxFormatError, match=pattern) as info:
    data.describe_dataset(idx_config())
  assert str(path) in str(info.value) and isinstance(info.value, errors.UserError)


def test_labels_that_do_not_match_the_images_are_refused(idx_config):
  labels = idx_config.arrays['train'][1][:50]
  with gzip.open(idx_config.folder / 'train-labels-idx1-ubyte.gz', 'wb') as f:
    f.write(idx_bytes(labels, 2049))
  with pytest.raises(fashion_mnist.IdxFormatError, match='60 images but .* 50 labels'):
    data.describe_dataset(idx_config())


def test_config_checks(idx_config):
  from sparsediff_jax import validation
  with pytest.raises(errors.ConfigError, match='image_size=4'):
    registry.DATASETS.check('fashion_mnist', idx_config(image_size=4))
  with pytest.raises(errors.ConfigError, match='data.source'):
    validation.validate_fields(idx_config(source='web'))


def test_tfds_source_reads_tfds_mock_data(tmp_path, idx_config, monkeypatch):
  tfds = pytest.importorskip('tensorflow_datasets')
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  fashion_mnist._tfds_split.cache_clear()
  from tests.helpers.data_fakes import write_metadata
  write_metadata(str(tmp_path / 'tfds'), 'fashion_mnist', 12)
  with tfds.testing.mock_data(num_examples=12, data_dir=str(tmp_path / 'tfds'),
                              policy=tfds.testing.MockPolicy.USE_FILES):
    config = idx_config(image_size=16, source='tfds', data_dir=str(tmp_path / 'tfds'))
    images = data.load_train_images(config)
    record = data.describe_dataset(config)
  fashion_mnist._tfds_split.cache_clear()
  assert images.shape == (12, 16, 16, 3) and images.dtype == np.uint8
  assert 'tfds fashion_mnist' in record['source']


@pytest.mark.slow
def test_cli_refuses_missing_and_broken_files_writing_nothing(tmp_path, idx_config):
  env = cli_runs.env(str(tmp_path))
  for case, data_dir in (('missing', tmp_path / 'nowhere'), ('broken', idx_config.folder)):
    if case == 'broken':
      _damage(idx_config.folder, 'short')
    workdir = tmp_path / f'run_{case}'
    result = cli_runs.run(*cli_runs.TINY, '--config.data.name=fashion_mnist',
                          f'--config.data.data_dir={data_dir}',
                          '--config.data.num_train_examples=32', f'--workdir={workdir}',
                          env=env, timeout=300)
    line = cli_runs.assert_one_line_error(result, 2)
    assert ('not found in' if case == 'missing' else 'truncated') in line
    assert not workdir.exists()


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(REAL_DIR),
                    reason=f'{REAL_DIR} absent: `apt-get install dataset-fashion-mnist` '
                           'installs the real files this test reads')
def test_real_files(tiny_config):
  config = tiny_config()
  config.data.name = 'fashion_mnist'
  config.data.num_train_examples = 0
  config.data.image_size = 28
  record = data.describe_dataset(config)
  assert record['split_size'] == 60000 and record['num_examples'] == 60000
  train, train_labels = fashion_mnist.native_split(config.data, 'train')
  test, test_labels = fashion_mnist.native_split(config.data, 'test')
  assert train.shape == (60000, 28, 28) and test.shape == (10000, 28, 28)
  assert np.bincount(train_labels).tolist() == [6000] * 10
  assert np.bincount(test_labels).tolist() == [1000] * 10
