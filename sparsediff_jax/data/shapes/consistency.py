"""Global consistency of `shapes` images: object count, mirror symmetry, palette colours.

Every training image of the embedded dataset (`source.py` beside this module) obeys three
global rules: exactly 2 * pairs objects on a black background, left-right mirror symmetry,
and flat colours from a small saturated palette. A denoiser that only looks at a
neighbourhood can draw each object well and still break the first two rules, so these
measures are a quantitative check of the "global consistency" claim.

`shape_consistency(images, pairs)` takes uint8 [N, H, W, 3] (samples straight from a
generator) and returns plain floats. Training images score perfectly: count error 0,
symmetry error 0, every object has its mirror partner, palette error 0.

Objects are the connected components (4-connectivity) of the foreground, the pixels whose
brightest channel exceeds `threshold`; components smaller than a quarter of the smallest
object the dataset draws are specks of sampling noise and are ignored.
"""

import numpy as np
import scipy.ndimage

from sparsediff_jax.data.shapes.source import PALETTE

DEFAULT_THRESHOLD = 96   # uint8 level; the palette's brightest channel is >= 200.
PARTNER_IOU = 0.5        # a mirrored object must overlap its partner at least this much.


def min_object_area(image_size: int) -> int:
  """Pixels below which a component is noise: a quarter of the smallest disc drawn."""
  radius = 2.5 * image_size / 32.0   # shapes.make_image draws radii from 2.5 * size / 32.
  return max(1, int(0.25 * np.pi * radius * radius))


def foreground(images: np.ndarray, threshold: int = DEFAULT_THRESHOLD) -> np.ndarray:
  """bool [N, H, W]: pixels whose brightest channel exceeds `threshold`."""
  return images.max(axis=-1) > threshold


def label_objects(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, int]:
  """Components of one bool [H, W] mask, small ones removed: (int labels [H, W], count)."""
  labels, n = scipy.ndimage.label(mask)
  if n:
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas >= min_area
    keep[0] = False
    relabel = np.zeros(n + 1, np.int64)
    relabel[keep] = np.arange(1, keep.sum() + 1)
    labels, n = relabel[labels], int(keep.sum())
  return labels, n


def mirror_partners(labels: np.ndarray, n: int, image: np.ndarray) -> tuple[int, list]:
  """How many of the n objects have a mirror partner, and each partner's colour error.

  The partner of object a is the object b whose mask best overlaps a's left-right mirror
  image; it counts when their IoU is at least PARTNER_IOU. The colour error of a matched
  pair is the mean absolute difference of the two objects' mean colours, in [0, 1].
  """
  if n == 0:
    return 0, []
  mirrored = labels[:, ::-1]
  # overlap[a, b] = pixels of object a that land on object b when a is mirrored.
  overlap = np.bincount((mirrored * (n + 1) + labels).ravel(),
                        minlength=(n + 1) ** 2).reshape(n + 1, n + 1)[1:, 1:]
  area = np.bincount(labels.ravel(), minlength=n + 1)[1:]
  iou = overlap / (area[:, None] + area[None, :] - overlap)
  best = iou.argmax(axis=1)
  matched = iou[np.arange(n), best] >= PARTNER_IOU
  flat = image.reshape(-1, image.shape[-1]).astype(np.float64)
  colour = np.stack([np.bincount(labels.ravel(), weights=flat[:, c], minlength=n + 1)[1:]
                     for c in range(flat.shape[1])], axis=1) / area[:, None]
  errors = [float(np.abs(colour[a] - colour[best[a]]).mean() / 255.0)
            for a in np.flatnonzero(matched)]
  return int(matched.sum()), errors


def per_image(images: np.ndarray, pairs: int, *, threshold: int = DEFAULT_THRESHOLD,
              min_area: int | None = None) -> dict[str, np.ndarray]:
  """The raw measures of every image of uint8 [N, H, W, 3]; each value is an [N] array.

  count: objects found; symmetry_error: mean |x - fliplr(x)| in [0, 1] over the pixels
  that are foreground in x or in its mirror image (0 when there is none); partnered:
  fraction of objects with a mirror partner (1 when there are no objects); pair_colour_error:
  mean colour error of the matched pairs (0 when none); palette_error: mean distance in
  [0, 1] (mean absolute per channel) of foreground pixels to the nearest palette colour.
  """
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
    raise ValueError(f'expected uint8 images [N, H, W, 3], got {images.dtype} {images.shape}')
  min_area = min_object_area(images.shape[1]) if min_area is None else min_area
  fg = foreground(images, threshold)
  x = images.astype(np.float32) / 255.0
  out = {k: np.zeros(len(images)) for k in
         ('count', 'symmetry_error', 'partnered', 'pair_colour_error', 'palette_error')}
  palette = PALETTE.astype(np.float32) / 255.0
  for i, (img, mask) in enumerate(zip(x, fg)):
    labels, n = label_objects(mask, min_area)
    out['count'][i] = n
    region = mask | mask[:, ::-1]
    if region.any():
      out['symmetry_error'][i] = np.abs(img - img[:, ::-1]).mean(axis=-1)[region].mean()
    matched, colour_errors = mirror_partners(labels, n, images[i])
    out['partnered'][i] = matched / n if n else 1.0
    out['pair_colour_error'][i] = np.mean(colour_errors) if colour_errors else 0.0
    if mask.any():
      pixels = img[mask]
      out['palette_error'][i] = np.abs(pixels[:, None] - palette[None]).mean(-1).min(1).mean()
  return out


def shape_consistency(images: np.ndarray, pairs: int, *, threshold: int = DEFAULT_THRESHOLD,
                      min_area: int | None = None,
                      symmetry_tolerance: float = 0.05) -> dict[str, float]:
  """Dataset-level consistency of uint8 [N, H, W, 3] images of `shapes` with `pairs` pairs.

  Returns floats (higher is better for *_fraction, lower for *_error):
    count_exact_fraction: images with exactly 2 * pairs objects.
    count_abs_error: mean |objects found - 2 * pairs|.
    symmetry_error: mean over images of the foreground mirror difference, in [0, 1].
    partnered_fraction: mean over images of the fraction of objects with a mirror partner.
    pair_colour_error: mean colour difference of matched mirror pairs, in [0, 1].
    palette_error: mean distance of foreground pixels to the palette, in [0, 1].
    consistent_fraction: images with the right count, every object partnered and a
      symmetry error below `symmetry_tolerance`: the one-number summary.
  """
  m = per_image(images, pairs, threshold=threshold, min_area=min_area)
  right_count = m['count'] == 2 * pairs
  consistent = right_count & (m['partnered'] == 1.0) & (m['symmetry_error'] < symmetry_tolerance)
  return {
      'count_exact_fraction': float(right_count.mean()),
      'count_abs_error': float(np.abs(m['count'] - 2 * pairs).mean()),
      'symmetry_error': float(m['symmetry_error'].mean()),
      'partnered_fraction': float(m['partnered'].mean()),
      'pair_colour_error': float(m['pair_colour_error'].mean()),
      'palette_error': float(m['palette_error'].mean()),
      'consistent_fraction': float(consistent.mean()),
  }


def shapes_sample_metrics(config, samples: np.ndarray, train_images: np.ndarray) -> dict:
  """The shapes dataset's own metrics (its registry.Dataset record): `shape_consistency`
  of uint8 `samples` [N, S, S, 3]."""
  del train_images
  return shape_consistency(samples, config.data.shapes_pairs)
