"""The digits classifier (training, accuracy, cache) and the digits metrics, validated on real
images and on deliberately bad ones (noise, blur, chimeras, one repeated digit)."""

import json
import math
import shutil
import time
import warnings

import numpy as np
import pytest
import scipy.ndimage

from sparsediff_jax import registry
from sparsediff_jax.data import digits
from sparsediff_jax.metrics import classifier as classifier_module
from sparsediff_jax.data.digits import classifier as digits_classifier
from sparsediff_jax.data.digits import metrics as digits_metrics


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """(cache root, classifier, training seconds): one classifier for the whole module."""
  root = tmp_path_factory.mktemp('sparsediff_cache')
  start = time.perf_counter()
  classifier = digits_classifier.load_or_train(root)
  return root, classifier, time.perf_counter() - start


@pytest.fixture(scope='module')
def heldout():
  return digits.load_split('heldout', 16)


@pytest.fixture(scope='module')
def train():
  return digits.load_split('train', 16)


def _metrics(classifier, samples, reference):
  return digits_metrics.classifier_metrics(classifier, samples, reference)


def test_classifier_reaches_the_required_heldout_accuracy(trained, heldout):
  root, classifier, _ = trained
  assert classifier.heldout_accuracy >= digits_classifier.MIN_ACCURACY
  images, labels = heldout
  assert classifier.accuracy(images, labels) == pytest.approx(classifier.heldout_accuracy)
  meta = json.loads((root / 'digits_classifier' / 'classifier.json').read_text())
  assert meta['recipe'] == digits_classifier.RECIPE
  assert meta['heldout_accuracy'] == pytest.approx(classifier.heldout_accuracy)
  assert meta['sha256'] == classifier.sha256 == digits_classifier.sha256_file(classifier.path)
  assert {'jax', 'flax', 'optax', 'numpy', 'scikit-learn'} <= set(meta['versions'])


def test_outputs_have_documented_shapes_at_any_size(trained):
  _, classifier, _ = trained
  for size in (8, 16, 32):
    images, labels = digits.load_split('heldout', size)
    features = classifier.features(images[:300])
    probs = classifier.probabilities(images)
    assert features.shape == (297, digits_classifier.FEATURE_DIM)
    assert features.dtype == probs.dtype == np.float32
    assert probs.shape == (297, 10)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    # Resized inside, digits at other sizes are still recognised.
    assert np.mean(probs.argmax(-1) == labels) > 0.9, size
  with pytest.raises(ValueError, match='uint8'):
    classifier.features(np.zeros((2, 16, 16, 3), np.float32))


def test_second_load_reuses_the_cache(trained, monkeypatch):
  root, classifier, _ = trained
  params = root / 'digits_classifier' / 'params.npz'
  mtime = params.stat().st_mtime_ns

  def no_training(*args, **kwargs):
    raise AssertionError('the cached classifier was retrained')
  monkeypatch.setattr(classifier_module, 'train_params', no_training)
  start = time.perf_counter()
  again = digits_classifier.load_or_train(root)
  assert time.perf_counter() - start < 20
  assert params.stat().st_mtime_ns == mtime
  assert again.sha256 == classifier.sha256
  assert again.heldout_accuracy == pytest.approx(classifier.heldout_accuracy)
  images, _ = digits.load_split('heldout', 16)
  np.testing.assert_allclose(again.features(images[:64]), classifier.features(images[:64]),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('tamper', ['flip_byte', 'other_recipe', 'bad_json'])
def test_a_tampered_cache_is_detected_not_used(trained, tmp_path, tamper):
  root, _, _ = trained
  folder = tmp_path / 'digits_classifier'
  shutil.copytree(root / 'digits_classifier', folder)
  if tamper == 'flip_byte':
    data = bytearray((folder / 'params.npz').read_bytes())
    data[-200] ^= 0x01
    (folder / 'params.npz').write_bytes(bytes(data))
  elif tamper == 'other_recipe':
    meta = json.loads((folder / 'classifier.json').read_text())
    meta['recipe']['steps'] += 1
    (folder / 'classifier.json').write_text(json.dumps(meta))
  else:
    (folder / 'classifier.json').write_text('{not json')
  with pytest.warns(UserWarning, match='training it again'):
    assert digits_classifier._load_cached(folder) is None


@pytest.mark.slow
def test_a_tampered_file_is_retrained_to_the_same_bytes(trained, tmp_path):
  root, classifier, _ = trained
  shutil.copytree(root / 'digits_classifier', tmp_path / 'digits_classifier')
  params = tmp_path / 'digits_classifier' / 'params.npz'
  data = bytearray(params.read_bytes())
  data[-200] ^= 0x01
  params.write_bytes(bytes(data))
  with pytest.warns(UserWarning, match='does not match the SHA-256'):
    again = digits_classifier.load_or_train(tmp_path)
  # Training is deterministic and the .npz is written reproducibly: the same file again.
  assert again.sha256 == classifier.sha256 == digits_classifier.sha256_file(params)


def test_real_images_score_near_the_floor(trained, train, heldout):
  _, classifier, _ = trained
  real = _metrics(classifier, train[0][:297], heldout[0])
  # Two disjoint halves of the training split agree as closely.
  halves = _metrics(classifier, train[0][:750], train[0][750:])
  assert real['digits_confidence'] > 0.85
  assert abs(real['digits_class_entropy'] - math.log(10)) < 0.05
  assert real['digits_num_classes_present'] == 10
  assert halves['digits_fd'] < 2 * real['digits_fd']


def _blur(images, size=5):
  return scipy.ndimage.uniform_filter(images, size=(1, size, size, 1), mode='constant')


def _composites(images, labels):
  """Left half of image i joined to the right half of the next image with another label."""
  out, n = [], len(images)
  for i in range(n):
    j = next(k % n for k in range(i + 1, i + n) if labels[k % n] != labels[i])
    half = images.shape[2] // 2
    out.append(np.concatenate([images[i, :, :half], images[j, :, half:]], axis=1))
  return np.stack(out)


def test_bad_images_score_measurably_worse(trained, train, heldout):
  _, classifier, _ = trained
  images, labels = heldout
  real = _metrics(classifier, train[0][:297], images)
  noise = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
  bad = {'noise': _metrics(classifier, noise, images),
         'blur': _metrics(classifier, _blur(images), images),
         'composite': _metrics(classifier, _composites(images, labels), images)}
  # Measured (docs): real fd 4.3, confidence 0.90; noise 88.7, 0.80; blur 19.2, 0.56;
  # composites 9.2, 0.54.
  for name, m in bad.items():
    assert m['digits_fd'] > 1.5 * real['digits_fd'] + 1.0, (name, m, real)
  for name in ('blur', 'composite'):
    assert bad[name]['digits_confidence'] < real['digits_confidence'] - 0.2, (name, bad, real)
  # A confident classifier still puts noise in one class: fd and entropy expose it.
  assert bad['noise']['digits_fd'] > 10 * real['digits_fd']
  assert bad['noise']['digits_class_entropy'] < 0.5 < real['digits_class_entropy']


def test_class_entropy_detects_a_single_repeated_digit(trained, heldout):
  _, classifier, _ = trained
  images, _ = heldout
  copies = np.repeat(images[:1], 297, axis=0)
  same = _metrics(classifier, copies, images)
  full = _metrics(classifier, images, images)
  assert same['digits_class_entropy'] < 0.01
  assert same['digits_num_classes_present'] == 1
  assert abs(full['digits_class_entropy'] - math.log(10)) < 0.05
  assert same['digits_fd'] > 5 * full['digits_fd'] + 1.0


def test_pure_metric_functions():
  probs = np.array([[0.7, 0.3] + [0] * 8, [0.2, 0.8] + [0] * 8, [0.1, 0.9] + [0] * 8])
  assert digits_metrics.mean_confidence(probs) == pytest.approx((0.7 + 0.8 + 0.9) / 3)
  counts = digits_metrics.class_histogram(probs)
  assert counts.tolist() == [1, 2] + [0] * 8
  assert digits_metrics.histogram_entropy(counts) == pytest.approx(
      -(1 / 3 * math.log(1 / 3) + 2 / 3 * math.log(2 / 3)))
  assert digits_metrics.histogram_entropy(np.full(10, 7)) == pytest.approx(math.log(10))
  rng = np.random.default_rng(0)
  a = rng.normal(size=(4000, 3))
  assert digits_metrics.frechet_feature_distance(a, a) == pytest.approx(0.0, abs=1e-6)
  # Shifting the mean by 2 in every dimension adds 3 * 2**2.
  assert digits_metrics.frechet_feature_distance(a, a + 2.0) == pytest.approx(12.0, rel=1e-6)


def test_registered_metric(trained, train, monkeypatch, tiny_config):
  root, _, _ = trained
  monkeypatch.setenv('SPARSEDIFF_CACHE', str(root))
  config = tiny_config()
  config.data.name = 'digits'
  config.data.image_size = 16
  metric = registry.DATASETS.get('digits').metrics
  assert metric.target == ('sparsediff_jax.data.digits.metrics', 'digits_sample_metrics')
  samples = digits.load_split('train', 8)[0][:128]   # any size works
  with warnings.catch_warnings():
    warnings.simplefilter('error')   # the cached classifier is used, no retraining warning
    out = metric(config, samples, digits.load_split('train', 8)[0])
  assert set(out) == {'digits_fd', 'digits_fd_floor', 'digits_confidence',
                      'digits_class_entropy', 'digits_num_classes_present'}
  assert all(isinstance(v, float) and math.isfinite(v) for v in out.values())
  # The samples ARE the first training images: exactly the floor.
  assert out['digits_fd'] == pytest.approx(out['digits_fd_floor'])
