"""Sparse supervision: the whole idea of the paper lives in this module.

Each training step draws a fresh random binary mask and the regression loss is taken
only where the mask is 1. The network still sees the full noisy image; only the loss is
sparse. With drop ratio eta, each pixel is kept with probability 1 - eta.

Everything here is a pure function of its arguments. The training step asks the mask
strategy named by `config.mask.strategy` for the step's keep-mask, once per step with a key
that is never reused, and takes `masked_mse`. A strategy is any function

    strategy(key, shape, level, step, mask_config) -> float32 keep-mask of `shape`

(level: [B] noise level of each example in [0, 1), formulations.TrainingPair.level; step:
the optimiser step, int32 scalar) registered with `registry.MASKS`, whose declaration line
names the highest drop ratio it uses (entry_checks.py: one keeps-nothing rule for all):
- 'iid' (the paper, the default): every element kept with probability 1 - mask.ratio.
- 'noise_schedule' (not in the paper): the drop ratio moves linearly with the noise level,
  from mask.ratio_at_t0 at clean data to mask.ratio_at_t1 at pure noise.
"""

from typing import Literal

import jax
import jax.numpy as jnp

from sparsediff_jax import registry

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
    ratio: eta, the probability that an element is dropped, in [0, 1): a number, or one
      per example ([B]).
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
  if jnp.ndim(ratio):
    ratio = jnp.reshape(ratio, (b, 1, 1, 1))
  keep = jax.random.bernoulli(key, 1.0 - ratio, draw_shape).astype(jnp.float32)
  if patch_size > 1:
    keep = jnp.repeat(jnp.repeat(keep, patch_size, axis=1), patch_size, axis=2)
  return jnp.broadcast_to(keep, shape)


@registry.MASKS.register('iid')
def iid_mask(key, shape, level, step, cfg) -> jax.Array:
  """The paper's mask: each element (pixel, channel or patch) kept w.p. 1 - mask.ratio."""
  del level, step   # the same law at every noise level and step
  return sample_pixel_mask(key, shape, cfg.ratio, per_channel=cfg.per_channel,
                           patch_size=cfg.patch_size)


def scheduled_ratio(level: jax.Array, ratio_at_t0: float, ratio_at_t1: float) -> jax.Array:
  """The drop ratio at noise level `level` ([B] in [0, 1)): linear from t0 to t1."""
  return ratio_at_t0 + (ratio_at_t1 - ratio_at_t0) * level


@registry.MASKS.register('noise_schedule')
def noise_schedule_mask(key, shape, level, step, cfg) -> jax.Array:
  """Drops more (or less) of the loss at high noise: i.i.d. with a per-example ratio
  `scheduled_ratio(level, mask.ratio_at_t0, mask.ratio_at_t1)`."""
  del step
  ratio = scheduled_ratio(level, cfg.ratio_at_t0, cfg.ratio_at_t1)
  return sample_pixel_mask(key, shape, ratio, per_channel=cfg.per_channel,
                           patch_size=cfg.patch_size)


def get_mask_strategy(cfg):
  """fn(key, shape, level, step) -> keep-mask for the `config.mask` block `cfg`."""
  strategy = registry.MASKS.get(cfg.strategy)
  return lambda key, shape, level, step: strategy(key, shape, level, step, cfg)


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
