"""A Diffusion Transformer (DiT, Peebles & Xie 2023) in Flax NNX: `model.name='dit'`.

Input [B, H, W, C] images and [B] noise conditioning; output [B, H, W, C] in float32, as
the U-Net. The image is cut into non-overlapping `patch_size` x `patch_size` patches, each
linearly embedded as one token of width `hidden_size`; fixed (untrained) 2-D sin-cos
position embeddings are added; `depth` transformer blocks follow, each conditioned on the
noise level by adaLN-Zero (a per-example shift, scale and gate of every sub-layer, computed
from the noise embedding); a final adaptive LayerNorm and linear layer map each token back
to its patch's pixels.

Every adaLN modulation and the final linear layer start at zero, so every block starts as
the identity and the initial output is exactly zero (what the U-Net's zero output
convolution does too).

Sparse supervision and tokens: the network never sees the loss mask. With
`mask.patch_size = model.patch_size` the mask keeps or drops whole patches, which are
exactly the DiT's tokens (the patch grids coincide: both start at pixel (0, 0)), so the
loss supervises a random subset of whole tokens and ignores the rest. All tokens still
pass through the network; only the loss changes.

`model.dtype='bfloat16'` runs the matmuls of the tokens (patch embedding, attention, MLP,
final layer) in bfloat16 with float32 parameters; the residual stream, the LayerNorms and
the per-example conditioning path stay in float32 (cheap: they are elementwise or one
vector per example).
"""


import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from sparsediff_jax import registry
from sparsediff_jax.images import CHANNELS
from sparsediff_jax.models import layers

# Width of the sinusoidal noise-level features fed to the conditioning MLP (DiT's value).
TIME_FREQ_DIM = 256


def patchify(x: jax.Array, p: int) -> jax.Array:
  """[B, H, W, C] -> [B, (H/p) * (W/p), p * p * C], tokens in row-major patch order."""
  b, h, w, c = x.shape
  x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: jax.Array, p: int, h: int, w: int) -> jax.Array:
  """The inverse of `patchify`: [B, (h/p) * (w/p), p * p * C] -> [B, h, w, C]."""
  b, _, d = tokens.shape
  c = d // (p * p)
  x = tokens.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
  return x.reshape(b, h, w, c)


def sincos_1d(dim: int, pos: np.ndarray) -> np.ndarray:
  """[N] positions -> [N, dim] (dim even): sines, then cosines, of geometric frequencies."""
  omega = 1.0 / 10_000.0 ** (np.arange(dim // 2, dtype=np.float64) / (dim // 2))
  args = pos.astype(np.float64)[:, None] * omega[None]
  return np.concatenate([np.sin(args), np.cos(args)], axis=1)


def sincos_2d(dim: int, grid: int) -> np.ndarray:
  """Fixed position embeddings of a grid x grid token map: [grid * grid, dim] float32.

  Half the width encodes the row, half the column, so `dim` must be divisible by 4.
  Computed with NumPy from static shapes: a constant of the compiled program, never a
  parameter (nothing to train, nothing in checkpoints).
  """
  rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing='ij')
  emb = np.concatenate([sincos_1d(dim // 2, rows.reshape(-1)),
                        sincos_1d(dim // 2, cols.reshape(-1))], axis=1)
  return emb.astype(np.float32)


def _linear(din, dout, rngs, *, dtype=jnp.float32, zero=False):
  init = nnx.initializers.zeros if zero else nnx.initializers.xavier_uniform()
  return nnx.Linear(din, dout, dtype=dtype, kernel_init=init,
                    bias_init=nnx.initializers.zeros, rngs=rngs)


def _norm(dim, rngs):
  # No learned affine: adaLN supplies the scale and shift. float32 for bf16 stability.
  return nnx.LayerNorm(dim, epsilon=1e-6, use_scale=False, use_bias=False,
                       dtype=jnp.float32, rngs=rngs)


def _modulate(x, shift, scale):
  """x [B, N, D]; shift, scale [B, D]."""
  return x * (1.0 + scale[:, None]) + shift[:, None]


class DiTBlock(nnx.Module):
  """Pre-norm self-attention and MLP, each shifted/scaled/gated by adaLN-Zero.

  `dropout` (model.dropout) drops the attention output and the MLP's hidden units, the two
  places a ViT uses it; the DiT paper trains without.
  """

  def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, dropout: float, dtype,
               rngs: nnx.Rngs):
    self.num_heads = num_heads
    self.norm1 = _norm(hidden, rngs)
    self.qkv = _linear(hidden, 3 * hidden, rngs, dtype=dtype)
    self.proj = _linear(hidden, hidden, rngs, dtype=dtype)
    self.norm2 = _norm(hidden, rngs)
    mlp_hidden = max(1, round(hidden * mlp_ratio))
    self.fc1 = _linear(hidden, mlp_hidden, rngs, dtype=dtype)
    self.fc2 = _linear(mlp_hidden, hidden, rngs, dtype=dtype)
    self.dropout = nnx.Dropout(dropout)
    # adaLN-Zero: zero modulation makes every gate 0, so the block starts as the identity.
    self.ada = _linear(hidden, 6 * hidden, rngs, zero=True)

  def __call__(self, x, c, rngs=None):
    """x: [B, N, D] float32 tokens; c: [B, D] conditioning; rngs: dropout (None = off)."""
    drop = lambda h: self.dropout(h, deterministic=rngs is None, rngs=rngs)
    shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(
        self.ada(nnx.silu(c)), 6, axis=-1)
    b, n, d = x.shape
    qkv = self.qkv(_modulate(self.norm1(x), shift1, scale1))
    q, k, v = jnp.split(qkv.reshape(b, n, 3, self.num_heads, d // self.num_heads), 3,
                        axis=2)
    attn = jax.nn.dot_product_attention(q[:, :, 0], k[:, :, 0], v[:, :, 0])
    x = x + gate1[:, None] * drop(self.proj(attn.reshape(b, n, d)))
    h = nnx.gelu(self.fc1(_modulate(self.norm2(x), shift2, scale2)), approximate=True)
    return x + gate2[:, None] * self.fc2(drop(h))


class DiT(nnx.Module):

  def __init__(self, *, image_size: int, in_channels: int, patch_size: int, hidden_size: int,
               depth: int, num_heads: int, mlp_ratio: float = 4.0, dropout: float = 0.0,
               dtype=jnp.float32, remat: bool = False, rngs: nnx.Rngs):
    del image_size   # the token grid follows the input; kept for the U-Net's signature
    self.patch_size, self.hidden_size = patch_size, hidden_size
    self.dtype = dtype
    # Rematerialisation: each block's activations are recomputed in the backward pass
    # instead of stored (less memory, about one more forward pass of compute).
    self.remat = remat
    self.embed = _linear(patch_size * patch_size * in_channels, hidden_size, rngs, dtype=dtype)
    self.t1 = nnx.Linear(TIME_FREQ_DIM, hidden_size,
                         kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.t2 = nnx.Linear(hidden_size, hidden_size,
                         kernel_init=nnx.initializers.normal(0.02), rngs=rngs)
    self.blocks = layers.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio, dropout,
                                              dtype, rngs) for _ in range(depth)])
    self.norm_out = _norm(hidden_size, rngs)
    self.ada_out = _linear(hidden_size, 2 * hidden_size, rngs, zero=True)
    self.out = _linear(hidden_size, patch_size * patch_size * in_channels, rngs, dtype=dtype,
                       zero=True)

  def __call__(self, x: jax.Array, cond: jax.Array, *, rngs: nnx.Rngs | None = None):
    """x: [B, H, W, C]; cond: [B]; rngs: dropout randomness (None = deterministic).

    Returns [B, H, W, C] float32.
    """
    _, h, w, _ = x.shape   # square images: the position grid is (h / p) x (h / p)
    p = self.patch_size
    block = nnx.remat(_block) if self.remat else _block
    c = self.t2(nnx.silu(self.t1(layers.timestep_embedding(cond, TIME_FREQ_DIM))))
    tokens = self.embed(patchify(x.astype(self.dtype), p)).astype(jnp.float32)
    tokens = tokens + sincos_2d(self.hidden_size, h // p)[None]
    for blk in self.blocks:
      tokens = block(blk, tokens, c, rngs)
    shift, scale = jnp.split(self.ada_out(nnx.silu(c)), 2, axis=-1)
    out = self.out(_modulate(self.norm_out(tokens), shift, scale))
    return unpatchify(out, p, h, w).astype(jnp.float32)


def _block(blk, tokens, c, rngs):
  return blk(tokens, c, rngs)


@registry.MODELS.register('dit')   # fields: entry_checks.dit_fields
def build_dit(config, seed: int) -> DiT:
  """The DiT of `config.model` for `config.data` images, parameters drawn from `seed`."""
  from sparsediff_jax.models import DTYPES   # the package imports this module lazily
  m = config.model
  return DiT(image_size=config.data.image_size, in_channels=CHANNELS,
             patch_size=m.patch_size, hidden_size=m.hidden_size, depth=m.depth,
             num_heads=m.num_heads, mlp_ratio=m.mlp_ratio, dropout=m.dropout,
             dtype=DTYPES[m.dtype], remat=m.remat, rngs=nnx.Rngs(params=seed))
