"""The embedded dataset: mirror-symmetric images of coloured discs and squares.

Every image holds exactly `2 * pairs` objects on a black background: `pairs` objects drawn
in the left half and their mirror images in the right half. Two global facts, the object
count and the left-right symmetry, are what a purely local denoiser gets wrong, and both
can be measured on samples. Image i depends only on (seed, i), so the dataset is the same
on every machine and needs no download.
"""

import numbers

import numpy as np

from sparsediff_jax import errors
from sparsediff_jax.data.source import Source

# Saturated, well-separated colours (RGB) so objects are easy to count after generation.
PALETTE = np.array([
    [230, 60, 60], [60, 200, 70], [70, 110, 240],
    [240, 210, 50], [200, 80, 220], [60, 210, 220],
], dtype=np.uint8)


def _draw(canvas: np.ndarray, kind: int, cy: float, cx: float, r: float, color) -> None:
  h, w, _ = canvas.shape
  # Pixel centres as a column and a row, broadcast: the same values per pixel as a full
  # grid, without building one per object (drawing was most of a default run's data time).
  dy, dx = np.arange(h)[:, None] + 0.5 - cy, np.arange(w)[None, :] + 0.5 - cx
  if kind == 0:   # disc
    inside = dy ** 2 + dx ** 2 <= r * r
  else:           # axis-aligned square
    inside = (np.abs(dy) <= r) & (np.abs(dx) <= r)
  canvas[inside] = color


def make_image(seed: int, index: int, size: int = 32, pairs: int = 2) -> np.ndarray:
  """Image `index` of the dataset defined by `seed`: uint8 [size, size, 3]."""
  rng = np.random.default_rng([seed, index])
  img = np.zeros((size, size, 3), np.uint8)
  scale = size / 32.0
  placed: list[tuple[float, float, float]] = []
  objects = []
  attempts = layouts = 0
  while len(placed) < pairs:
    attempts += 1
    if attempts > 200:   # a crowded start can leave no room: begin the layout again
      placed, objects, attempts, layouts = [], [], 0, layouts + 1
      if layouts > 50:
        raise ValueError(f'cannot place {pairs} object pairs in a {size}x{size} shapes image; '
                         'use fewer pairs (data.shapes_pairs) or a larger data.image_size')
    r = rng.uniform(2.5, 4.0) * scale
    # A square's corner lies r*sqrt(2) from its centre: keep a one-pixel gap to the mirror
    # axis and to the border so the mirrored object stays a separate component.
    reach = r * np.sqrt(2.0) + 1.0
    cy = rng.uniform(reach, size - reach)
    cx = rng.uniform(reach, size / 2 - reach)
    if all(np.hypot(cy - y, cx - x) > (reach + rr) for y, x, rr in placed):
      placed.append((cy, cx, reach))
      objects.append((rng.integers(2), cy, cx, r, PALETTE[rng.integers(len(PALETTE))]))
  for kind, cy, cx, r, color in objects:
    _draw(img, kind, cy, cx, r, color)
    _draw(img, kind, cy, size - cx, r, color)
  return img


def make_shapes(num: int, size: int = 32, pairs: int = 2, seed: int = 0,
                start: int = 0) -> np.ndarray:
  """Images start .. start + num - 1 of the dataset: uint8 [num, size, size, 3]."""
  return np.stack([make_image(seed, i, size, pairs) for i in range(start, start + num)])


MIN_SIZE = 16   # smaller images leave no room for the objects.


def check_fields(config) -> None:
  """data.image_size and data.shapes_pairs: a layout of make_image must exist. More pairs
  make its layout search restart forever (measured: 3 pairs at 16 px, 4 at any size)."""
  d = config.data

  def integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)

  if not integer(d.image_size) or d.image_size < MIN_SIZE:
    raise errors.ConfigError(f'config.data.image_size={d.image_size!r} is invalid: the shapes '
                             f'dataset needs images of at least {MIN_SIZE} pixels')
  most = 3 if d.image_size >= 32 else 2
  if not integer(d.shapes_pairs) or not 1 <= d.shapes_pairs <= most:
    raise errors.ConfigError(
        f'config.data.shapes_pairs={d.shapes_pairs!r} is invalid: the shapes dataset fits 1 '
        f'to {most} mirrored pairs per image at data.image_size={d.image_size} (3 need at '
        'least 32 pixels)')


def open_shapes(config) -> Source:
  """The embedded procedural dataset: image i is drawn from (shapes_seed, i) alone."""
  d = config.data
  return Source(
      available=None, order='image-index',
      ids=lambda n: [str(i) for i in range(n)],
      load=lambda lo, hi: make_shapes(hi - lo, d.image_size, d.shapes_pairs, d.shapes_seed,
                                      start=lo),
      facts={'source': f'procedural shapes (shapes_seed={d.shapes_seed}, '
                       f'shapes_pairs={d.shapes_pairs})', 'split': 'all',
             'preprocessing': f'drawn at {d.image_size}x{d.image_size}'})


def fresh_shapes(config, num: int, num_train: int) -> np.ndarray:
  """uint8 [num, S, S, 3]: images num_train .. num_train + num - 1, past the training subset
  (small images repeat by chance, so a few of them may equal a training image)."""
  d = config.data
  return make_shapes(num, d.image_size, d.shapes_pairs, d.shapes_seed, start=num_train)
