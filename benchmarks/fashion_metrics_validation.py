"""Do the Fashion-MNIST classifier metrics and the symmetry measure tell real images from bad
ones? Real images against deliberately broken ones, at 16x16 and 28x28.

Classifier metrics (sparsediff_jax/metrics/label_metrics.py): N training images
(real; their FD against the test split is the floor) and two disjoint sets of N training
images against each other, against uniform noise, a box blur, half/half composites (left
half of one test image, right half of the next one with another label) and N copies of one
test image, each scored against the 10,000 test images.

Symmetry (sparsediff_jax/data/fashion_mnist/metrics.py): N real test images against the
same images with the right half replaced by the mirrored left half of another test image
of the same class / of another class, with the right half shifted right by 2 pixels
(scaled with the size), and with Gaussian noise (sigma 40 levels) added to the right half;
the reference is the train split's first 10,000 images.

  python benchmarks/fashion_metrics_validation.py [--num=1000] [--sizes=16,28]

Prints one markdown table per size (the numbers of docs/results/fashion_mnist_metrics.md).
The classifier comes from the cache (trained there first if missing: minutes on 2 cores).
"""

import argparse
import time

import ml_collections
import numpy as np
import scipy.ndimage

from sparsediff_jax.data.fashion_mnist import source as fashion_mnist
from sparsediff_jax.metrics import classifier, label_metrics
from sparsediff_jax.data.fashion_mnist import metrics as fashion_metrics

DATA = ml_collections.ConfigDict({'name': 'fashion_mnist', 'data_dir': '', 'source': 'files',
                                  'download': False})


def other_half(images, labels, same_class: bool):
  """Right half := mirrored left half of the next image of the same / another class."""
  out, half, n = images.copy(), images.shape[2] // 2, len(images)
  for i in range(n):
    j = next(k % n for k in range(i + 1, i + n) if (labels[k % n] == labels[i]) == same_class)
    out[i, :, half:] = images[j, :, :half][:, ::-1]
  return out


def composites(images, labels):
  """Left half of image i + right half of the next image with another label."""
  out, half, n = images.copy(), images.shape[2] // 2, len(images)
  for i in range(n):
    j = next(k % n for k in range(i + 1, i + n) if labels[k % n] != labels[i])
    out[i, :, half:] = images[j, :, half:]
  return out


def shifted_half(images, pixels: int):
  out, half = images.copy(), images.shape[2] // 2
  out[:, :, half + pixels:] = images[:, :, half:images.shape[2] - pixels]
  out[:, :, half:half + pixels] = 0
  return out


def noised_half(images, sigma: float, seed: int = 0):
  out, half = images.astype(np.float64), images.shape[2] // 2
  noise = np.random.default_rng(seed).normal(0, sigma, out[:, :, half:].shape)
  out[:, :, half:] += noise
  return np.clip(np.round(out), 0, 255).astype(np.uint8)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num', type=int, default=1000)
  parser.add_argument('--sizes', default='16,28')
  args = parser.parse_args()
  start = time.perf_counter()
  model = classifier.load_or_train('fashion_mnist', data_config=DATA)
  print(f'classifier: held-out accuracy {model.heldout_accuracy:.4f} on 10,000 test images '
        f'(sha256 {model.sha256[:12]}, {time.perf_counter() - start:.0f} s to load or train)')
  n = args.num
  symmetric = fashion_metrics.SYMMETRIC_CLASSES['fashion_mnist']
  for size in map(int, args.sizes.split(',')):
    train, _ = fashion_mnist.load_split(DATA, 'train', size)
    test, test_labels = fashion_mnist.load_split(DATA, 'test', size)
    rng = np.random.default_rng(0)
    blur = 5 if size >= 28 else 3
    cases = {
        f'{n} training images (real)': train[:n],
        f'{n} other training images vs the first {n}': None,
        'uniform noise': rng.integers(0, 256, (n,) + train.shape[1:], dtype=np.uint8),
        f'test images, {blur}x{blur} box blur': scipy.ndimage.uniform_filter(
            test[:n], size=(1, blur, blur, 1), mode='constant'),
        'left + right half of two classes': composites(test[:n], test_labels[:n]),
        f'{n} copies of one test image': np.repeat(test[:1], n, axis=0),
    }
    print(f'\n### {size}x{size}, {n} images per row\n')
    print('| images | fd | confidence | class entropy | classes |')
    print('|---|---|---|---|---|')
    for name, images in cases.items():
      if images is None:
        m = label_metrics.classifier_metrics(model, train[n:2 * n], train[:n], prefix='f')
      else:
        m = label_metrics.classifier_metrics(model, images, test, prefix='f')
      print(f'| {name} | {m["f_fd"]:.2f} | {m["f_confidence"]:.3f} | '
            f'{m["f_class_entropy"]:.3f} | {m["f_num_classes_present"]:.0f} |')
    shift = max(1, round(2 * size / 28))
    reference = train[:10000]
    sym_cases = {
        f'{n} real test images': test[:n],
        'right half := mirrored left half, same class': other_half(test[:n], test_labels[:n], True),
        'right half := mirrored left half, other class': other_half(test[:n], test_labels[:n],
                                                                    False),
        f'right half shifted by {shift} px': shifted_half(test[:n], shift),
        'right half + noise (sigma 40)': noised_half(test[:n], 40.0),
    }
    print(f'\n| images ({size}x{size}) | symmetric fraction | asymmetry | floor | '
          'asymmetric rate | split-class rate | split floor |')
    print('|---|---|---|---|---|---|---|')
    for name, images in sym_cases.items():
      m = fashion_metrics.symmetry_consistency(model, images, reference, symmetric, 'f')
      print(f'| {name} | {m["f_symmetric_fraction"]:.3f} | {m["f_asymmetry"]:.4f} | '
            f'{m["f_asymmetry_floor"]:.4f} | {m["f_asymmetric_rate"]:.3f} | '
            f'{m["f_split_class_rate"]:.3f} | {m["f_split_class_rate_floor"]:.3f} |')
  print(f'\ntotal {time.perf_counter() - start:.0f} s')


if __name__ == '__main__':
  main()
