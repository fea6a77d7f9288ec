"""Sample quality on the digits dataset, measured by its domain classifier (classifier.py).

The mechanism is label_metrics.py (shared by every labelled dataset); the names are these.

Reported for data.name='digits' by --mode=research and --mode=eval (the `metrics` of the
digits' registry.Dataset record, data/digits/__init__.py), as flat floats:

* `digits_fd`: Frechet distance between the classifier's penultimate features
  (FEATURE_DIM = 64) of the samples and of the 297 held-out digits (resized to the
  samples' size, so both pass through the same input path). Lower is better. Like FID it
  is biased upwards for few samples, so compare it with
* `digits_fd_floor`: the same distance for as many TRAINING images as there are samples
  (at most all of them): what a model that reproduces its training data scores.
* `digits_confidence`: mean over samples of the largest class probability, in [0.1, 1].
  Real digits score about 0.9 (the classifier was trained with label smoothing 0.1);
  blurred digits and chimeras much lower. Noise still lands confidently in one class,
  which digits_fd and digits_class_entropy expose.
* `digits_class_entropy`: entropy in nats of the histogram of predicted classes; log(10)
  = 2.303 when every digit is drawn equally often, 0 when all samples are one digit
  (mode collapse).
* `digits_num_classes_present`: digits predicted at least once (0..10).

Measured with 297 images at 16x16 against the held-out set (tests/data/test_digits_metrics.py):

  images                                digits_fd  confidence  class entropy
  297 training images (real)                 4.3        0.90          2.30
  uniform noise                             88.7        0.80          0.00
  held-out digits, 5x5 box blur             19.2        0.56          2.13
  left half + right half of two digits       9.2        0.54          2.22
  297 copies of one held-out digit         183.7        0.98          0.00
"""

import functools

import numpy as np

from sparsediff_jax.data.digits import classifier as digits_classifier
from sparsediff_jax.data.digits import source as digits
from sparsediff_jax.metrics import label_metrics
from sparsediff_jax.metrics.label_metrics import (  # noqa: F401  (the digits API)
    NUM_CLASSES, class_histogram, frechet_feature_distance, histogram_entropy,
    mean_confidence)


def classifier_metrics(classifier, samples: np.ndarray, reference: np.ndarray,
                       floor_images: np.ndarray | None = None) -> dict[str, float]:
  """label_metrics.classifier_metrics named `digits_*` (see there)."""
  return label_metrics.classifier_metrics(classifier, samples, reference, floor_images,
                                          prefix='digits')


@functools.lru_cache(maxsize=4)
def _classifier(folder: str):
  return digits_classifier.load_or_train(folder)


def digits_sample_metrics(config, samples, train_images) -> dict[str, float]:
  """The digits' own metrics (their registry.Dataset record): samples uint8 [N, S, S, 3]
  -> flat `digits_*` floats.

  The classifier comes from the default cache (digits_classifier.load_or_train), trained
  there on first use. `train_images` (uint8 [K, S, S, 3], the run's training subset; None:
  the whole train split) give digits_fd_floor.
  """
  del config   # the samples' own size decides the reference's size.
  samples = np.asarray(samples)
  size = max(samples.shape[1], digits.MIN_SIZE)
  reference, _ = digits.load_split('heldout', size)
  if train_images is None:
    train_images, _ = digits.load_split('train', size)
  classifier = _classifier(str(digits_classifier.cache_folder().parent))
  return classifier_metrics(classifier, samples, reference, np.asarray(train_images))
