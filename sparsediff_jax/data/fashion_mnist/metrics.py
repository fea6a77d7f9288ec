"""Sample quality on Fashion-MNIST and MNIST: the classifier metrics, and on Fashion-MNIST
a global-consistency measure on real images (left-right mirror symmetry).

Reported for data.name='fashion_mnist' / 'mnist' by --mode=research and --mode=eval (the
`metrics` of their registry.Dataset records, data/fashion_mnist/__init__.py) as flat
floats: the `<name>_*` classifier metrics of label_metrics.py (FD with its real-vs-real
floor, confidence, class entropy, classes present) and `<name>_classifier_accuracy` (its
accuracy on the 10,000 test images), then for Fashion-MNIST:

* `fashion_mnist_asymmetry`: mean left-right asymmetry (mean |x - mirror(x)| of the gray
  image, in [0, 1]) of the samples that the classifier assigns to a mirror-symmetric
  class (T-shirt/top, trouser, pullover, dress, coat, shirt, bag: photographed from the
  front; sandal, sneaker and ankle boot are side views), against
* `fashion_mnist_asymmetry_floor`: the same for the real test images of those classes,
  weighted by the samples' class mix (what real garments score);
* `fashion_mnist_asymmetric_rate`: the fraction of those samples more asymmetric than 95%
  of the real test images of their class (real images: about 0.05 by construction);
* `fashion_mnist_split_class_rate`: the fraction of those samples whose two halves the
  classifier reads as different classes (each half completed by its own mirror image),
  with `fashion_mnist_split_class_rate_floor`, the same on the real test images;
* `fashion_mnist_symmetric_fraction`: the fraction of samples assigned to those classes.

Validation (benchmarks/fashion_metrics_validation.py; numbers in
docs/results/fashion_mnist_metrics.md): real test images against composites whose right
half is the mirrored left half of another image of the same class or of another class,
against shifted halves and against noised halves.
"""

import functools

import numpy as np

from sparsediff_jax.data.fashion_mnist import source as fashion_mnist
from sparsediff_jax.metrics import classifier as classifier_lib
from sparsediff_jax.metrics import label_metrics

# Classes photographed from the front, nearly mirror-symmetric, per dataset.
SYMMETRIC_CLASSES = {'fashion_mnist': (0, 1, 2, 3, 4, 6, 8)}
QUANTILE = 0.95          # a sample is asymmetric beyond this quantile of its real class.
MAX_REFERENCE = 10000    # test images used as the reference (all of Fashion-MNIST's).


def asymmetry(images: np.ndarray) -> np.ndarray:
  """float64 [N]: mean |gray - mirror(gray)| / 255 of uint8 [N, H, W, 3] images."""
  gray = np.asarray(images, np.float64).mean(axis=-1) / 255.0
  return np.abs(gray - gray[:, :, ::-1]).mean(axis=(1, 2))


def mirrored_halves(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(left half + its mirror, mirror of the right half + right half) of uint8
  [N, H, W, 3] images with even W: each half completed into a symmetric image."""
  half = images.shape[2] // 2
  left, right = images[:, :, :half], images[:, :, images.shape[2] - half:]
  return (np.concatenate([left, left[:, :, ::-1]], axis=2),
          np.concatenate([right[:, :, ::-1], right], axis=2))


def split_class(classifier, images: np.ndarray) -> np.ndarray:
  """bool [N]: the classifier reads the two mirrored halves as different classes."""
  left, right = mirrored_halves(images)
  return classifier.probabilities(left).argmax(-1) != classifier.probabilities(right).argmax(-1)


def symmetry_consistency(classifier, samples: np.ndarray, reference: np.ndarray,
                         symmetric: tuple[int, ...], prefix: str) -> dict[str, float]:
  """The symmetry measures of the module docstring, named `<prefix>_*`.

  Args:
    classifier: a classifier.Classifier of the dataset.
    samples: uint8 [N, S, S, 3] (S even).
    reference: uint8 [M, S, S, 3] real held-out images at the samples' size.
    symmetric: the mirror-symmetric classes.
  """
  sample_class = classifier.probabilities(samples).argmax(-1)
  real_class = classifier.probabilities(reference).argmax(-1)
  chosen = np.isin(sample_class, symmetric)
  out = {f'{prefix}_symmetric_fraction': float(chosen.mean())}
  if not chosen.any():
    return out
  sample_asym, real_asym = asymmetry(samples[chosen]), asymmetry(reference)
  classes = sample_class[chosen]
  floor, beyond = np.zeros(len(classes)), np.zeros(len(classes), bool)
  for c in np.unique(classes):
    of_class = real_asym[real_class == c]
    if len(of_class) == 0:   # no real image read as c: compare with every real image.
      of_class = real_asym
    floor[classes == c] = of_class.mean()
    beyond[classes == c] = sample_asym[classes == c] > np.quantile(of_class, QUANTILE)
  real_chosen = np.isin(real_class, symmetric)
  out.update({
      f'{prefix}_asymmetry': float(sample_asym.mean()),
      f'{prefix}_asymmetry_floor': float(floor.mean()),
      f'{prefix}_asymmetric_rate': float(beyond.mean()),
      f'{prefix}_split_class_rate': float(split_class(classifier, samples[chosen]).mean()),
      f'{prefix}_split_class_rate_floor': float(
          split_class(classifier, reference[real_chosen]).mean()),
  })
  return out


@functools.lru_cache(maxsize=4)
def _classifier(name: str, data_dir: str, source: str, download: bool):
  import ml_collections
  data_config = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir,
                                           'source': source, 'download': download})
  return classifier_lib.load_or_train(name, data_config=data_config)


def sample_metrics(config, samples, train_images) -> dict[str, float]:
  """The datasets' own metrics (their registry.Dataset records): samples uint8
  [N, S, S, 3] -> flat `<name>_*` floats.

  The classifier comes from the default cache (classifier.load_or_train), trained there on
  first use; the reference is the test split at the samples' size; `train_images` (the
  run's training subset; None: the first train images) give `<name>_fd_floor`.
  """
  d = config.data
  samples = np.asarray(samples)
  size = samples.shape[1]
  model = _classifier(d.name, d.data_dir, d.source, bool(d.download))
  reference, _ = fashion_mnist.load_split(d, 'test', size)
  reference = reference[:MAX_REFERENCE]
  if train_images is None:
    train_images = fashion_mnist.load_split(d, 'train', size)[0][:len(samples)]
  out = label_metrics.classifier_metrics(model, samples, reference,
                                         np.asarray(train_images), prefix=d.name)
  out[f'{d.name}_classifier_accuracy'] = float(model.heldout_accuracy)
  if d.name in SYMMETRIC_CLASSES and size % 2 == 0:
    out.update(symmetry_consistency(model, samples, reference, SYMMETRIC_CLASSES[d.name],
                                    d.name))
  return out
