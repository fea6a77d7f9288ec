"""Sample quality of a labelled dataset, measured by its domain classifier (classifier.py).

Reported by --mode=research and --mode=eval through the per-dataset metric registry
(`sparsediff_jax/registry.py`) as flat floats named after the dataset, `<name>_*`:

* `<name>_fd`: Frechet distance between the classifier's penultimate features of the
  samples and of the dataset's held-out images (resized to the samples' size, so both pass
  through the same input path). Lower is better. Like FID it is biased upwards for few
  samples, so compare it with
* `<name>_fd_floor`: the same distance for as many TRAINING images as there are samples
  (at most all of them): what a model that reproduces its training data scores.
* `<name>_confidence`: mean over samples of the largest class probability, in [0.1, 1]
  (the classifiers are trained with label smoothing 0.1, so real images score about 0.9).
* `<name>_class_entropy`: entropy in nats of the histogram of predicted classes; log(10)
  = 2.303 when every class is drawn equally often, 0 when all samples are one class.
* `<name>_num_classes_present`: classes predicted at least once (0..10).

The digits keep their module (data/digits/metrics.py, with its validation table);
Fashion-MNIST adds its global-consistency measures (data/fashion_mnist/metrics.py).
"""

import numpy as np

from sparsediff_jax.metrics.fid import fid

NUM_CLASSES = 10


def frechet_feature_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to features [Na, D] and [Nb, D] (Na, Nb >= 2)."""
  a, b = fid.feature_stats(features_a), fid.feature_stats(features_b)
  return fid.frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def mean_confidence(probabilities: np.ndarray) -> float:
  """Mean over rows of the largest class probability: [N, C] -> float."""
  return float(np.mean(np.max(probabilities, axis=-1)))


def class_histogram(probabilities: np.ndarray) -> np.ndarray:
  """int64 [C]: how many rows of probabilities [N, C] predict each class."""
  return np.bincount(np.argmax(probabilities, axis=-1),
                     minlength=max(NUM_CLASSES, probabilities.shape[-1]))


def histogram_entropy(counts: np.ndarray) -> float:
  """Entropy in nats of the distribution counts / sum(counts) (0 log 0 = 0)."""
  p = np.asarray(counts, np.float64)
  p = p[p > 0] / p.sum()
  return float(-(p * np.log(p)).sum()) + 0.0   # + 0.0: no -0.0 for a single class.


def classifier_metrics(classifier, samples: np.ndarray, reference: np.ndarray,
                       floor_images: np.ndarray | None = None, *,
                       prefix: str) -> dict[str, float]:
  """The classifier metrics of samples against reference images, named `<prefix>_*`.

  Args:
    classifier: a classifier.Classifier.
    samples: uint8 [N, S, S, 3], N >= 2.
    reference: uint8 [M, S', S', 3], M >= 2 (the held-out images).
    floor_images: uint8 [K, S'', S'', 3] real training images, K >= 2, or None; its first
      N give `<prefix>_fd_floor`.
  Returns:
    {'<prefix>_fd', '<prefix>_confidence', '<prefix>_class_entropy',
     '<prefix>_num_classes_present'[, '<prefix>_fd_floor']} as floats.
  """
  if len(samples) < 2:
    raise ValueError(f'{prefix} metrics need at least 2 samples, got {len(samples)}')
  features, probs = classifier.outputs(samples)
  counts = class_histogram(probs)
  reference_features = classifier.features(reference)
  out = {
      f'{prefix}_fd': frechet_feature_distance(features, reference_features),
      f'{prefix}_confidence': mean_confidence(probs),
      f'{prefix}_class_entropy': histogram_entropy(counts),
      f'{prefix}_num_classes_present': float(np.count_nonzero(counts)),
  }
  if floor_images is not None and len(floor_images) >= 2:
    floor = classifier.features(floor_images[:len(samples)])
    out[f'{prefix}_fd_floor'] = frechet_feature_distance(floor, reference_features)
  return out
