"""The classifier mechanism on a second labelled dataset (Fashion-MNIST-like IDX files the
test writes), its cache (reuse, reproducibility, an unwritable cache), the registered
Fashion-MNIST metrics and the mirror-symmetry consistency measure."""

import errno
import hashlib
import json
import math
import warnings

import ml_collections
import numpy as np
import pytest

from tests.helpers.idx_fakes import write_idx_folder
from sparsediff_jax import registry
from sparsediff_jax.data.fashion_mnist import source as fashion_mnist
from sparsediff_jax.metrics import classifier
from sparsediff_jax.data.fashion_mnist import classifier as fashion_classifier
from sparsediff_jax.data.fashion_mnist import metrics as fashion_metrics

SYMMETRIC = fashion_metrics.SYMMETRIC_CLASSES['fashion_mnist']


def _tiny_spec(data_config) -> classifier.Spec:
  """The registered Fashion-MNIST spec, shortened to seconds (the fake classes are easy)."""
  spec = fashion_classifier.make_spec('fashion_mnist', data_config)
  recipe = {**spec.recipe, 'steps': 120, 'batch_size': 16}
  return classifier.Spec(**{**spec.__dict__, 'recipe': recipe, 'feature_dim': 16})


@pytest.fixture(scope='module')
def fake(tmp_path_factory):
  """(data config, spec, cache root, classifier trained and cached there)."""
  folder = tmp_path_factory.mktemp('fmnist')
  write_idx_folder(folder, n_train=200, n_test=100)
  data_config = ml_collections.ConfigDict({'name': 'fashion_mnist', 'data_dir': str(folder),
                                           'source': 'files', 'download': False})
  spec = _tiny_spec(data_config)
  root = tmp_path_factory.mktemp('cache')
  return data_config, spec, root, classifier.load_or_train('fashion_mnist', root, spec=spec)


def test_trained_on_train_cached_with_sha_recipe_and_accuracy(fake):
  data_config, spec, root, model = fake
  assert model.heldout_accuracy >= spec.min_accuracy
  meta = json.loads((root / 'fashion_mnist_classifier' / 'classifier.json').read_text())
  assert meta['recipe'] == spec.recipe and meta['heldout_examples'] == 100
  assert meta['sha256'] == model.sha256 == classifier.sha256_file(model.path)
  # The recipe names the training data by content: other files, another recipe.
  images, labels = fashion_mnist.native_split(data_config, 'train')
  assert spec.recipe['data_sha256'] == hashlib.sha256(
      images.tobytes() + labels.tobytes()).hexdigest()
  test_images, test_labels = fashion_mnist.load_split(data_config, 'test', 16)
  assert model.accuracy(test_images, test_labels) > 0.9   # any input size


def test_second_load_uses_the_cache(fake, monkeypatch):
  _, spec, root, model = fake

  def no_training(*args, **kwargs):
    raise AssertionError('the cached classifier was retrained')
  monkeypatch.setattr(classifier, 'train_params', no_training)
  again = classifier.load_or_train('fashion_mnist', root, spec=spec)
  assert again.sha256 == model.sha256


def test_unwritable_cache_is_used_from_memory_with_one_warning(fake, tmp_path, monkeypatch):
  _, spec, _, model = fake
  root = tmp_path / 'readonly'

  def refuse(*args, **kwargs):   # what a read-only home or cache folder answers
    raise PermissionError(errno.EACCES, 'Permission denied', str(root))
  monkeypatch.setattr(classifier.pathlib.Path, 'mkdir', refuse)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    again = classifier.load_or_train('fashion_mnist', root, spec=spec)
  assert len(caught) == 1, [str(w.message) for w in caught]
  assert 'cannot be cached' in str(caught[0].message)
  assert 'Permission denied' in str(caught[0].message)
  assert again.path is None and not root.exists()
  # Reproducible from the seed: the same parameters (their .npz hash) as the cached one.
  assert again.sha256 == model.sha256
  images, _ = fashion_mnist.load_split(fake[0], 'test', 28)
  np.testing.assert_allclose(again.features(images), model.features(images), atol=1e-5)


def test_registered_metrics_and_their_floor(fake, monkeypatch, tiny_config):
  data_config, _, _, model = fake
  monkeypatch.setattr(fashion_metrics, '_classifier', lambda *args: model)
  config = tiny_config()
  config.data.update(name='fashion_mnist', data_dir=data_config.data_dir, image_size=16)
  metric = registry.DATASETS.get('fashion_mnist').metrics
  assert metric.target == (fashion_metrics.__name__, 'sample_metrics')
  train, _ = fashion_mnist.load_split(data_config, 'train', 16)
  out = metric(config, train[:60], train)
  assert {'fashion_mnist_fd', 'fashion_mnist_fd_floor', 'fashion_mnist_confidence',
          'fashion_mnist_class_entropy', 'fashion_mnist_num_classes_present',
          'fashion_mnist_asymmetry', 'fashion_mnist_asymmetry_floor',
          'fashion_mnist_asymmetric_rate', 'fashion_mnist_split_class_rate',
          'fashion_mnist_split_class_rate_floor',
          'fashion_mnist_symmetric_fraction', 'fashion_mnist_classifier_accuracy'} == set(out)
  assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
  assert out['fashion_mnist_fd'] == pytest.approx(out['fashion_mnist_fd_floor'])
  assert out['fashion_mnist_num_classes_present'] == 10


def _other_half(images, labels, same_class: bool):
  """Right half replaced by the mirrored left half of another image of the same class
  (same_class) or of another class."""
  out, half = images.copy(), images.shape[2] // 2
  for i in range(len(images)):
    j = next(k % len(images) for k in range(i + 1, i + len(images))
             if (labels[k % len(images)] == labels[i]) == same_class)
    out[i, :, half:] = images[j, :, :half][:, ::-1]
  return out


def test_symmetry_measure_discriminates(fake):
  data_config, _, _, model = fake
  images, labels = fashion_mnist.load_split(data_config, 'test', 28)
  reference, _ = fashion_mnist.load_split(data_config, 'train', 28)
  real = fashion_metrics.symmetry_consistency(model, images, reference, SYMMETRIC, 'f')
  other = fashion_metrics.symmetry_consistency(
      model, _other_half(images, labels, False), reference, SYMMETRIC, 'f')
  noised = images.copy()
  rng = np.random.default_rng(0)
  noised[:, :, 14:] = np.clip(noised[:, :, 14:] + rng.normal(0, 60, noised[:, :, 14:].shape),
                              0, 255).astype(np.uint8)
  noisy = fashion_metrics.symmetry_consistency(model, noised, reference, SYMMETRIC, 'f')
  assert real['f_asymmetry'] == pytest.approx(real['f_asymmetry_floor'], rel=0.2)
  assert real['f_asymmetric_rate'] < 0.2 and real['f_split_class_rate'] < 0.1
  assert other['f_asymmetry'] > 2 * other['f_asymmetry_floor']
  assert other['f_asymmetric_rate'] > 0.8 and other['f_split_class_rate'] > 0.8
  assert noisy['f_asymmetry'] > 1.5 * noisy['f_asymmetry_floor']
  assert noisy['f_asymmetric_rate'] > 0.8


def test_pure_symmetry_functions():
  rng = np.random.default_rng(0)
  half = rng.integers(0, 256, (3, 8, 4, 3), dtype=np.uint8)
  symmetric = np.concatenate([half, half[:, :, ::-1]], axis=2)
  assert fashion_metrics.asymmetry(symmetric).tolist() == [0.0] * 3
  flipped = symmetric.copy()
  flipped[:, :, :4] = 255 - flipped[:, :, :4]
  assert (fashion_metrics.asymmetry(flipped) > 0.1).all()
  left, right = fashion_metrics.mirrored_halves(symmetric)
  np.testing.assert_array_equal(left, symmetric)
  np.testing.assert_array_equal(right, symmetric)
