"""Sparse supervision: the whole idea of the paper lives in this module.

Each training step draws a fresh random binary mask and the regression loss is taken
only where the mask is 1. The network still sees the full noisy image; only the loss is
sparse. With drop ratio eta, each pixel is kept with probability 1 - eta.

Everything here is a pure function of its arguments; the training step calls
`sample_pixel_mask` once per step with a key that is never reused, and `masked_mse`.
"""

from typing import Literal

import jax
import jax.numpy as jnp

Normalize = Literal['kept', 'all']


def sample_pixel_mask(
    key: jax.Array,
    shape: tuple[int, int, int, int],
    ratio: float,
    *,
    per_channel: bool = False,
    patch_size: int = 1,
) -> jax.Array:
  """Draws an i.i.d. Bernoulli keep-mask.

  Args:
    key: PRNG key; a global-shape draw under jit gives every example (on every device and
      host) its own mask, so two data shards never share one.
    shape: (batch, height, width, channels) of the images the loss compares.
    ratio: eta, the probability that an element is dropped, in [0, 1).
    per_channel: draw each channel on its own instead of one draw per pixel.
    patch_size: keep/drop square patches of this side together (height and width must be
      divisible by it).

  Returns:
    float32 array of `shape` with values in {0, 1}; 1 = supervised.
  """
  b, h, w, c = shape
  if h % patch_size or w % patch_size:
    raise ValueError(f'image {h}x{w} is not divisible by mask patch_size {patch_size}')
  if isinstance(ratio, (int, float)) and ratio == 0:
    # The dense loss: the same all-ones mask a draw would give, without drawing it, so
    # ratio 0 is the true dense baseline (also for measuring what the mask costs).
    return jnp.ones(shape, jnp.float32)
  draw_shape = (b, h // patch_size, w // patch_size, c if per_channel else 1)
  keep = jax.random.bernoulli(key, 1.0 - ratio, draw_shape).astype(jnp.float32)
  if patch_size > 1:
    keep = jnp.repeat(jnp.repeat(keep, patch_size, axis=1), patch_size, axis=2)
  return jnp.broadcast_to(keep, shape)


def masked_mse(
    prediction: jax.Array,
    target: jax.Array,
    mask: jax.Array,
    weight: jax.Array | None = None,
    normalize: Normalize = 'kept',
) -> jax.Array:
  """Mean squared error over the supervised elements only.

  Args:
    prediction, target: [B, H, W, C].
    mask: [B, H, W, C] in {0, 1} (from `sample_pixel_mask`).
    weight: optional per-example loss weight [B] (e.g. EDM's lambda(sigma)).
    normalize: 'kept' divides by the number of supervised elements, so the loss (and the
      gradient scale) does not depend on eta; 'all' divides by the number of all elements,
      so its expectation over masks is (1 - eta) times the dense loss (one reading of the
      paper's Eq. 8). With an all-ones mask both equal the ordinary dense MSE.

  Returns:
    Scalar float32 loss.
  """
  err = jnp.square(prediction.astype(jnp.float32) - target.astype(jnp.float32))
  if weight is not None:
    err = err * weight.astype(jnp.float32).reshape((-1,) + (1,) * (err.ndim - 1))
  total = jnp.sum(err * mask)
  if normalize == 'kept':
    # A batch with no kept element (only possible for tiny batches and eta near 1) has
    # loss 0 rather than NaN.
    return total / jnp.maximum(jnp.sum(mask), 1.0)
  if normalize == 'all':
    return total / err.size
  raise ValueError(f"normalize must be 'kept' or 'all', got {normalize!r}")


def masked_covariance(sigma: jax.Array, ratio: float) -> jax.Array:
  """The covariance of masked data m * x, from the paper's analysis.

  For x with covariance `sigma` (zero mean) and m ~ Bernoulli(1 - eta) i.i.d. per element,
  Cov(m * x) = (1 - eta)^2 Sigma + eta (1 - eta) diag(Sigma): masking damps the
  correlations between pixels more than the per-pixel variances.
  """
  keep = 1.0 - ratio
  return keep**2 * sigma + ratio * keep * jnp.diag(jnp.diag(sigma))
