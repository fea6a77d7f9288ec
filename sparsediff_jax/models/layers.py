"""Building blocks of the U-Net (Flax NNX), NHWC throughout."""

import math

import jax
import jax.numpy as jnp
from flax import nnx

# A list of submodules as one attribute. flax >= 0.12 wants nnx.List; flax 0.11 (Colab's) has
# none and takes a plain list, with the same state paths (attribute, index, ...).
ModuleList = getattr(nnx, 'List', list)


def num_groups(channels: int) -> int:
  """GroupNorm groups: at most 32, and at least 4 channels per group where possible.

  With one channel per group, GroupNorm would erase any per-channel offset, so narrow
  models (the embedded default, tests) keep several channels in every group.
  """
  return max(1, math.gcd(32, channels // 4))


def timestep_embedding(cond: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of the noise conditioning.

  Args:
    cond: [B] conditioning in roughly [-2, 1] (t, or EDM's log(sigma) / 4); scaled by 1000
      so the sinusoids of all frequencies vary across its range.
    dim: even embedding width.
  Returns:
    [B, dim] float32.
  """
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = 1000.0 * cond.astype(jnp.float32)[:, None] * freqs[None]
  return jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)


def conv(cin, cout, rngs, *, kernel=3, stride=1, dtype=jnp.float32, zero=False):
  init = nnx.initializers.zeros if zero else nnx.initializers.variance_scaling(
      1.0, 'fan_avg', 'uniform')
  return nnx.Conv(cin, cout, (kernel, kernel), strides=(stride, stride), padding='SAME',
                  dtype=dtype, kernel_init=init, rngs=rngs)


class ResBlock(nnx.Module):
  """GroupNorm-SiLU-Conv twice; the noise embedding scales and shifts the second norm.

  The scale/shift is applied after normalising (ADM's scale-shift norm), so no
  normalisation can remove the conditioning.
  """

  def __init__(self, cin, cout, emb_dim, dropout, dtype, rngs):
    self.norm1 = nnx.GroupNorm(cin, num_groups=num_groups(cin), rngs=rngs)
    self.conv1 = conv(cin, cout, rngs, dtype=dtype)
    self.emb = nnx.Linear(emb_dim, 2 * cout, dtype=dtype, rngs=rngs)
    self.norm2 = nnx.GroupNorm(cout, num_groups=num_groups(cout), rngs=rngs)
    self.dropout = nnx.Dropout(dropout)
    # Zero-initialised last conv: every block starts as the identity.
    self.conv2 = conv(cout, cout, rngs, dtype=dtype, zero=True)
    self.skip = conv(cin, cout, rngs, kernel=1, dtype=dtype) if cin != cout else None

  def __call__(self, x, emb, rngs=None):
    h = self.conv1(nnx.silu(self.norm1(x)))
    scale, shift = jnp.split(self.emb(nnx.silu(emb))[:, None, None, :], 2, axis=-1)
    h = nnx.silu(self.norm2(h) * (1.0 + scale) + shift)
    h = self.dropout(h, deterministic=rngs is None, rngs=rngs)
    h = self.conv2(h)
    skip = x if self.skip is None else self.skip(x)
    return (skip + h) / math.sqrt(2.0)


class SelfAttention(nnx.Module):
  """Multi-head self-attention over all positions of a feature map, residual."""

  def __init__(self, channels, num_heads, dtype, rngs):
    self.norm = nnx.GroupNorm(channels, num_groups=num_groups(channels), rngs=rngs)
    self.qkv = nnx.Linear(channels, 3 * channels, dtype=dtype, rngs=rngs)
    self.out = nnx.Linear(channels, channels, dtype=dtype,
                          kernel_init=nnx.initializers.zeros, rngs=rngs)
    self.num_heads = num_heads

  def __call__(self, x):
    b, h, w, c = x.shape
    q, k, v = jnp.split(self.qkv(self.norm(x)).reshape(b, h * w, 3, self.num_heads, -1),
                        3, axis=2)
    attn = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    return (x + self.out(attn.reshape(b, h, w, c))) / math.sqrt(2.0)


class Downsample(nnx.Module):
  def __init__(self, channels, dtype, rngs):
    self.conv = conv(channels, channels, rngs, stride=2, dtype=dtype)

  def __call__(self, x):
    return self.conv(x)


class Upsample(nnx.Module):
  def __init__(self, channels, dtype, rngs):
    self.conv = conv(channels, channels, rngs, dtype=dtype)

  def __call__(self, x):
    b, h, w, c = x.shape
    return self.conv(jax.image.resize(x, (b, 2 * h, 2 * w, c), 'nearest'))
