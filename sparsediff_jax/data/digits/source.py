"""A real, small dataset that ships with scikit-learn: the UCI handwritten digits.

`sklearn.datasets.load_digits()` reads 1,797 grayscale 8x8 images of the digits 0-9 (values
0..16, the counts of set pixels in 4x4 blocks of 32x32 bitmaps) from a file inside the
scikit-learn package, so nothing is downloaded.

Preprocessing, in this order:

1. Scale 0..16 to 0..255 in float64 (x * 255 / 16), round half to even, cast to uint8.
2. Resize the 8x8 uint8 image to image_size x image_size with PIL's bilinear filter
   (`Image.Resampling.BILINEAR`, which Pillow applies antialiased: its triangle filter is
   stretched when shrinking; every supported size is >= 8, so here it only enlarges, which
   is plain bilinear interpolation with half-pixel centres). Size 8 is the image itself.
3. Repeat the gray channel three times (RGB), the layout of every dataset in this project.

The split is fixed: rows 0..1499 of scikit-learn's order are `train` (the training set,
and what the digits classifier of `sparsediff_jax/data/digits/classifier.py` learns
from) and rows 1500..1796 are `heldout` (297 images: the classifier's accuracy check and
the reference set of the digits metrics). A model trained on `train` never sees `heldout`.
"""

import functools

import numpy as np
from PIL import Image

from sparsediff_jax import errors
from sparsediff_jax.data.source import Source

NUM_TRAIN = 1500           # rows [0, 1500) of scikit-learn's order.
NUM_HELDOUT = 297          # rows [1500, 1797).
SPLITS = ('train', 'heldout')
NATIVE_SIZE = 8            # side of the stored images, pixels.
MIN_SIZE = NATIVE_SIZE     # smaller sizes would throw away strokes the images are made of.
ID_PREFIX = 'sklearn-digits'


@functools.lru_cache(maxsize=1)
def _native() -> tuple[np.ndarray, np.ndarray]:
  """All 1,797 images at 8x8, scaled to 0..255: (uint8 [1797, 8, 8], int64 [1797])."""
  from sklearn.datasets import load_digits   # imported late: sklearn is slow to import.
  bunch = load_digits()
  scaled = np.round(bunch.images.astype(np.float64) * (255.0 / 16.0))
  images = np.clip(scaled, 0, 255).astype(np.uint8)
  labels = bunch.target.astype(np.int64)
  if images.shape != (NUM_TRAIN + NUM_HELDOUT, NATIVE_SIZE, NATIVE_SIZE):
    raise RuntimeError(f'scikit-learn digits have shape {images.shape}; expected '
                       f'({NUM_TRAIN + NUM_HELDOUT}, 8, 8)')
  return images, labels


def resize(gray: np.ndarray, image_size: int) -> np.ndarray:
  """uint8 [N, 8, 8] -> uint8 [N, image_size, image_size, 3] by PIL bilinear + RGB."""
  if image_size == gray.shape[1]:
    out = gray
  else:
    out = np.stack([
        np.asarray(Image.fromarray(g).resize(
            (image_size, image_size), Image.Resampling.BILINEAR))
        for g in gray])
  return np.repeat(out[..., None], 3, axis=-1)


def _check_size(image_size) -> None:
  if not isinstance(image_size, (int, np.integer)) or image_size < MIN_SIZE:
    raise errors.ConfigError(
        f'config.data.image_size={image_size} is invalid: the digits dataset is stored at '
        f'8x8 and is resized up, so image_size must be an integer >= {MIN_SIZE}')


@functools.lru_cache(maxsize=8)
def _split(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  images, labels = _native()
  rows = slice(0, NUM_TRAIN) if split == 'train' else slice(NUM_TRAIN, None)
  out_images, out_labels = resize(images[rows], image_size), labels[rows].copy()
  # Cached and shared by every caller: read-only so no caller can change another's data.
  out_images.flags.writeable = False
  out_labels.flags.writeable = False
  return out_images, out_labels


def load_split(split: str, image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """One split of the digits, preprocessed as the module docstring says.

  Args:
    split: 'train' (1500 images) or 'heldout' (297 images).
    image_size: side of the returned images, pixels, >= 8.
  Returns:
    (images uint8 [N, image_size, image_size, 3] in 0..255, labels int64 [N] in 0..9),
    both read-only (they are cached in memory and shared).
  """
  if split not in SPLITS:
    raise ValueError(f'unknown digits split {split!r}; choose from {SPLITS}')
  _check_size(image_size)
  return _split(split, int(image_size))


def check_fields(config) -> None:
  """data.image_size: at least the stored 8x8."""
  _check_size(config.data.image_size)


def open_digits(config) -> Source:
  """The train split of the digits as a dataset Source (examples in scikit-learn order)."""
  size = config.data.image_size
  _check_size(size)

  def load(lo: int, hi: int) -> np.ndarray:
    images, _ = load_split('train', size)
    return np.array(images[lo:hi])   # a writable copy: the cached split stays shared.

  return Source(
      available=NUM_TRAIN, order='sklearn row order',
      ids=lambda n: [f'{ID_PREFIX}/train/{i}' for i in range(min(n, NUM_TRAIN))],
      load=load,
      facts={'source': 'sklearn.datasets.load_digits (UCI optical recognition of '
                       'handwritten digits, 8x8, values 0..16)',
             'split': f'train: rows 0..{NUM_TRAIN - 1} of {NUM_TRAIN + NUM_HELDOUT} '
                      f'(rows {NUM_TRAIN}.. are the held-out split)',
             'preprocessing': f'x * 255 / 16 in float, rounded to uint8; PIL bilinear '
                              f'8x8 -> {size}x{size}; gray repeated to RGB'})


def fresh_digits(config, num: int, num_train: int) -> np.ndarray:
  """uint8 [min(num, 297), S, S, 3]: the first held-out digits (rows 1500..), which no run
  trains on whatever its subset (num_train <= 1500)."""
  del num_train
  images, _ = load_split('heldout', config.data.image_size)
  return np.array(images[:num])
