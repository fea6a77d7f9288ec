"""The digits dataset (scikit-learn's copy): split, preprocessing, the registered opener and
configs/digits.py."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

from sparsediff_jax import errors, registry
from sparsediff_jax.data import digits

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _digits_config():
  spec = importlib.util.spec_from_file_location('digits_config', ROOT / 'configs' / 'digits.py')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def test_split_sizes_dtypes_and_range():
  train, train_labels = digits.load_split('train', 16)
  heldout, heldout_labels = digits.load_split('heldout', 16)
  assert train.shape == (1500, 16, 16, 3) and heldout.shape == (297, 16, 16, 3)
  assert train.dtype == heldout.dtype == np.uint8
  assert train_labels.shape == (1500,) and heldout_labels.shape == (297,)
  for labels in (train_labels, heldout_labels):
    assert set(np.unique(labels)) == set(range(10))
  # Ink is white on black and uses the whole range.
  assert train.min() == 0 and train.max() == 255
  # Gray: the three channels are one.
  assert np.array_equal(train[..., 0], train[..., 2])
  assert np.array_equal(heldout[..., 1], heldout[..., 2])


def test_native_size_is_the_scaled_sklearn_data_and_split_is_fixed():
  from sklearn.datasets import load_digits
  bunch = load_digits()
  expected = np.round(bunch.images * 255.0 / 16.0).astype(np.uint8)
  train, labels = digits.load_split('train', 8)
  heldout, heldout_labels = digits.load_split('heldout', 8)
  np.testing.assert_array_equal(train[..., 0], expected[:1500])
  np.testing.assert_array_equal(heldout[..., 0], expected[1500:])
  np.testing.assert_array_equal(labels, bunch.target[:1500])
  np.testing.assert_array_equal(heldout_labels, bunch.target[1500:])


@pytest.mark.parametrize('size', [8, 16, 32])
def test_resize_sizes_keep_the_digit(size):
  images, _ = digits.load_split('heldout', size)
  native, _ = digits.load_split('heldout', 8)
  assert images.shape == (297, size, size, 3)
  # Bilinear enlargement keeps the ink: mean brightness within a few levels of the 8x8's.
  np.testing.assert_allclose(images.mean(axis=(1, 2, 3)), native.mean(axis=(1, 2, 3)), atol=8)


def test_loading_is_deterministic_and_cached_arrays_are_read_only():
  from sparsediff_jax.data.digits.source import resize, _native
  images, _ = digits.load_split('train', 16)
  fresh = resize(_native()[0][:1500], 16)   # recomputed, bypassing the split cache
  np.testing.assert_array_equal(images, fresh)
  with pytest.raises(ValueError):
    images[0, 0, 0, 0] = 1
  assert digits.load_split('train', 16)[0] is images


def test_bad_split_and_size_raise():
  with pytest.raises(ValueError, match='heldout'):
    digits.load_split('test', 16)
  with pytest.raises(errors.ConfigError, match=r'config.data.image_size=4 is invalid'):
    digits.load_split('train', 4)


def test_registered_opener(tiny_config):
  config = tiny_config()
  config.data.name = 'digits'
  config.data.image_size = 16
  source = registry.DATASETS.get('digits').source(config)
  assert source.available == 1500 and source.order == 'sklearn row order'
  assert source.ids(3) == ['sklearn-digits/train/0', 'sklearn-digits/train/1',
                           'sklearn-digits/train/2']
  batch = source.load(10, 14)
  np.testing.assert_array_equal(batch, digits.load_split('train', 16)[0][10:14])
  assert batch.flags.writeable   # the caller's own copy
  batch[:] = 0
  assert digits.load_split('train', 16)[0][10:14].any()
  assert {'source', 'split', 'preprocessing'} <= set(source.facts)
  assert '16x16' in source.facts['preprocessing']


def test_config_check_rejects_small_images(tiny_config):
  config = tiny_config()
  config.data.name = 'digits'
  config.data.image_size = 4
  with pytest.raises(errors.ConfigError, match=r'^config.data.image_size=4 is invalid: .*>= 8'):
    registry.DATASETS.check('digits', config)
  config.data.image_size = 8
  registry.DATASETS.check('digits', config)


def test_digits_config():
  from flax import nnx
  from sparsediff_jax import models
  config = _digits_config()
  assert config.data.name == 'digits' and config.data.image_size == 16
  assert config.data.num_train_examples == 1500
  registry.DATASETS.check('digits', config)
  model = nnx.eval_shape(lambda: models.build_model(config, 0))
  count = models.count_params(nnx.state(model, nnx.Param))
  assert 0.6e6 < count < 0.8e6, count


@pytest.mark.slow   # a CLI subprocess
def test_the_cli_trains_on_digits_with_configs_digits(tmp_path):
  """`python -m sparsediff_jax.main --config=configs/digits.py` trains on the real digits
  (shrunk to 2 steps of a small model here) and records them in dataset.json."""
  from tests.helpers.cli_runs import env, run
  workdir = tmp_path / 'run'
  result = run(f'--config={ROOT / "configs" / "digits.py"}', f'--workdir={workdir}',
               '--config.data.image_size=8', '--config.data.num_train_examples=32',
               '--config.model.channels=8', '--config.training.num_steps=2',
               '--config.training.checkpoint_every=2', '--config.training.sample_every=0',
               '--config.sampling.num_steps=1', '--config.sampling.grid_size=2',
               env=env(str(tmp_path)))
  assert result.returncode == 0, result.stderr[-3000:]
  record = json.loads((workdir / 'dataset.json').read_text())
  assert record['name'] == 'digits' and record['num_examples'] == 32
  assert record['image_shape'] == [8, 8, 3]
  assert (workdir / 'checkpoints' / '2').is_dir()
