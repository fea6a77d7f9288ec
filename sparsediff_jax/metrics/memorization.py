"""Memorization: each sample's nearest and second-nearest training image.

A sample is called memorized when it is much closer to one training image than to any
other: d1 / d2 < 1/3 (the criterion of Yoon et al. 2023 and Gu et al. 2023), with d1, d2
the L2 distances to the nearest and second-nearest training image. Distances are taken in
pixel space (uint8 images scaled to [0, 1], flattened) or in any feature space (e.g.
Inception pool3 features from `sparsediff_jax.metrics.fid.inception`).

`nearest_two` never holds the [N, M] distance matrix: one jit'ed function scans over
blocks of `reference_block` training rows for a block of `query_block` samples and keeps a
running top-2, so memory is O(query_block * reference_block) beside the data itself (50k
CIFAR-sized samples against 50k training images: 2 x 150 MB of uint8 on the device).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sparsediff_jax.console.images import pyplot, save_figure

MEMORIZED_RATIO = 1.0 / 3.0


def _flatten(x) -> np.ndarray:
  """[N, ...] -> [N, D]; uint8 images keep their dtype (scaled to [0, 1] on the device)."""
  x = np.asarray(x)
  return x.reshape(len(x), -1)


@functools.partial(jax.jit, static_argnames=('reference_block',))
def _top2_block(queries, references, num_references, *, reference_block):
  """Top-2 squared distances of `queries` [q, D] to the rows of `references` [R, D].

  references: padded to a multiple of reference_block rows; rows >= num_references are
  padding and never win. Returns (d1_sq [q], d2_sq [q], index_of_nearest [q] int32).
  """
  q = _as_float(queries)
  q_sq = jnp.sum(q * q, axis=1)
  blocks = references.reshape(-1, reference_block, references.shape[-1])

  def step(carry, block):
    best, best_idx = carry                           # [q, 2], [q, 2]
    refs, start = block
    # Converted block by block, so no float copy of the whole training set ever exists.
    refs = _as_float(refs)
    ref_sq = jnp.sum(refs * refs, axis=1)
    # |q - r|^2 = |q|^2 + |r|^2 - 2 q.r; full float32 precision because TPUs would
    # otherwise multiply in bfloat16 and blur near-duplicates into non-duplicates.
    dots = jnp.matmul(q, refs.T, precision=jax.lax.Precision.HIGHEST)
    d = jnp.maximum(q_sq[:, None] + ref_sq[None, :] - 2.0 * dots, 0.0)
    idx = start + jnp.arange(reference_block, dtype=jnp.int32)
    d = jnp.where(idx[None, :] < num_references, d, jnp.inf)
    neg, pos = jax.lax.top_k(-d, 2)
    cand = jnp.concatenate([best, -neg], axis=1)          # [q, 4]
    cand_idx = jnp.concatenate([best_idx, idx[pos]], axis=1)
    neg_best, order = jax.lax.top_k(-cand, 2)
    return (-neg_best, jnp.take_along_axis(cand_idx, order, axis=1)), None

  starts = jnp.arange(blocks.shape[0], dtype=jnp.int32) * reference_block
  init = (jnp.full((q.shape[0], 2), jnp.inf), jnp.zeros((q.shape[0], 2), jnp.int32))
  (_, best_idx), _ = jax.lax.scan(step, init, (blocks, starts))
  # The expanded form above loses about 1e-7 * |x|^2 to cancellation, which is large next
  # to a near-duplicate's distance: recompute the two winners' distances directly.
  exact = jnp.sum(jnp.square(q[:, None, :] - _as_float(references[best_idx])), axis=-1)
  order = jnp.argsort(exact, axis=1)
  exact = jnp.take_along_axis(exact, order, axis=1)
  best_idx = jnp.take_along_axis(best_idx, order, axis=1)
  return exact[:, 0], exact[:, 1], best_idx[:, 0]


def _as_float(x):
  """uint8 pixels -> [0, 1] float32; float features unchanged (as float32)."""
  return x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)


def nearest_two(queries, references, *, query_block: int = 1024,
                reference_block: int = 2048):
  """Nearest and second-nearest reference of every query.

  Args:
    queries: [N, ...] uint8 images or float features.
    references: [M, ...] of the same kind, M >= 2.
    query_block, reference_block: rows per block (memory ~ 4 * query_block *
      reference_block bytes of distances at a time).

  Returns:
    (d1 [N], d2 [N], nearest [N]) as numpy: float64 L2 distances (uint8 inputs in units of
    [0, 1] pixels) and int64 indices into `references`.
  """
  q, r = _flatten(queries), _flatten(references)
  if len(r) < 2:
    raise ValueError(f'need at least 2 reference rows for a second neighbour, got {len(r)}')
  if q.shape[1] != r.shape[1] or q.dtype != r.dtype:
    raise ValueError(f'queries {q.dtype} {queries.shape[1:]} and references {r.dtype} '
                     f'{references.shape[1:]} must have the same shape and dtype')
  reference_block = min(reference_block, len(r))
  pad = -len(r) % reference_block
  r_dev = jnp.asarray(np.concatenate([r, np.zeros((pad, r.shape[1]), r.dtype)]))
  out = []
  for lo in range(0, len(q), query_block):
    block = q[lo:lo + query_block]
    # Pad the last block so every call has the same shape (one compilation).
    rows = len(block)
    if len(q) > query_block:
      block = np.concatenate([block, np.zeros((query_block - rows,) + block.shape[1:],
                                              block.dtype)])
    d1, d2, idx = _top2_block(jnp.asarray(block), r_dev, len(r),
                              reference_block=reference_block)
    out.append(jax.device_get((d1, d2, idx)) + (rows,))
  d1 = np.concatenate([o[0][:o[3]] for o in out]).astype(np.float64)
  d2 = np.concatenate([o[1][:o[3]] for o in out]).astype(np.float64)
  idx = np.concatenate([o[2][:o[3]] for o in out]).astype(np.int64)
  return np.sqrt(d1), np.sqrt(d2), idx


def memorization_stats(d1: np.ndarray, d2: np.ndarray, prefix: str = '') -> dict[str, float]:
  """Summary of nearest-neighbour distances: memorized fraction, mean d1, mean d1/d2."""
  ratio = d1 / np.maximum(d2, 1e-12)
  return {
      f'{prefix}memorized_fraction': float(np.mean(ratio < MEMORIZED_RATIO)),
      f'{prefix}nn_distance_mean': float(np.mean(d1)),
      f'{prefix}nn_ratio_mean': float(np.mean(ratio)),
  }


def memorization_report(samples: np.ndarray, train_images: np.ndarray, *,
                        sample_features=None, train_features=None, **block_sizes):
  """Pixel-space (and, given features, feature-space) memorization of uint8 samples.

  Args:
    samples: uint8 [N, H, W, C] generated images.
    train_images: uint8 [M, H, W, C] the training set.
    sample_features, train_features: optional [N, D] / [M, D] features (e.g. Inception).

  Returns:
    (metrics dict of floats with 'pixel_' and 'feature_' prefixes, neighbours dict with
    the pixel-space 'd1', 'd2', 'nearest' arrays for `save_memorization_grid`).
  """
  d1, d2, nearest = nearest_two(samples, train_images, **block_sizes)
  metrics = memorization_stats(d1, d2, 'pixel_')
  if (sample_features is None) != (train_features is None):
    raise ValueError('give both sample_features and train_features, or neither')
  if sample_features is not None:
    f1, f2, _ = nearest_two(np.asarray(sample_features, np.float32),
                            np.asarray(train_features, np.float32), **block_sizes)
    metrics.update(memorization_stats(f1, f2, 'feature_'))
  return metrics, {'d1': d1, 'd2': d2, 'nearest': nearest}


def most_memorized(d1: np.ndarray, d2: np.ndarray, k: int) -> np.ndarray:
  """Indices of the k samples with the smallest d1 / d2, most memorized first."""
  return np.argsort(d1 / np.maximum(d2, 1e-12), kind='stable')[:k]


def save_memorization_grid(path: str, samples: np.ndarray, train_images: np.ndarray,
                           neighbours: dict, k: int = 8) -> str:
  """PNG of the k most memorized samples (top row) above their nearest training images.

  Each column is titled with d1/d2; a ratio below 1/3 counts as memorized.
  """
  plt = pyplot()
  order = most_memorized(neighbours['d1'], neighbours['d2'], min(k, len(samples)))
  fig, axes = plt.subplots(2, len(order), figsize=(1.4 * len(order), 3.2), squeeze=False)
  for col, i in enumerate(order):
    ratio = neighbours['d1'][i] / max(neighbours['d2'][i], 1e-12)
    for row, img in enumerate((samples[i], train_images[neighbours['nearest'][i]])):
      ax = axes[row, col]
      ax.imshow(img.squeeze(), interpolation='nearest')
      ax.set_xticks([])
      ax.set_yticks([])
    axes[0, col].set_title(f'{ratio:.2f}', fontsize=8,
                           color='red' if ratio < MEMORIZED_RATIO else 'black')
  axes[0, 0].set_ylabel('sample', fontsize=8)
  axes[1, 0].set_ylabel('nearest\ntraining', fontsize=8)
  fig.suptitle('most memorized samples (title: d1/d2, red < 1/3)', fontsize=9)
  return save_figure(fig, path)
