"""Small Fashion-MNIST-like IDX files for the tests (CI has no dataset package): labels are
readable from the pixels (class c is a bright, mirror-symmetric band at rows 2c..2c+2)."""

import gzip
import os

import numpy as np

from sparsediff_jax.data.fashion_mnist import source as fashion_mnist


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
  header = magic.to_bytes(4, 'big') + b''.join(d.to_bytes(4, 'big') for d in array.shape)
  return header + np.ascontiguousarray(array, np.uint8).tobytes()


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """n 28x28 images whose label c is drawn as a bright band at row 2c (readable back)."""
  rng = np.random.default_rng(seed)
  labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
  images = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
  for i, c in enumerate(labels):
    images[i, 2 * c:2 * c + 3, 4:24] = 255
  return images, labels


def write_idx_folder(folder, n_train=60, n_test=20, gz=True) -> dict:
  """The four IDX files of a small fake dataset in `folder`; returns the arrays."""
  os.makedirs(folder, exist_ok=True)
  arrays = {'train': fake_split(n_train, 0), 'test': fake_split(n_test, 1)}
  for split, (images, labels) in arrays.items():
    image_stem, label_stem = fashion_mnist.FILES[split]
    for stem, content in ((image_stem, idx_bytes(images, 2051)),
                          (label_stem, idx_bytes(labels, 2049))):
      path = os.path.join(folder, stem + ('.gz' if gz else ''))
      with (gzip.open(path, 'wb') if gz else open(path, 'wb')) as f:
        f.write(content)
  return arrays
