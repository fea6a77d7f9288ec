"""A DDPM++/ADM-family convolutional U-Net in Flax NNX.

Input [B, H, W, C] images and [B] noise conditioning; output [B, H, W, C] in float32.
The network never sees the loss mask: sparse supervision changes the loss only.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from sparsediff_jax import registry
from sparsediff_jax.images import CHANNELS
from sparsediff_jax.models import DTYPES, layers


class UNet(nnx.Module):

  def __init__(self, *, image_size: int, in_channels: int, channels: int,
               channel_mult: tuple[int, ...], num_res_blocks: int,
               attn_resolutions: tuple[int, ...], num_heads: int = 1, dropout: float = 0.0,
               dtype=jnp.float32, remat: bool = False, rngs: nnx.Rngs):
    self.channels = channels
    self.dtype = dtype
    # Rematerialisation: each residual block's activations are recomputed in the backward
    # pass instead of stored (less memory, about one more forward pass of compute).
    self.remat = remat
    emb_dim = 4 * channels
    self.emb1 = nnx.Linear(channels, emb_dim, rngs=rngs)
    self.emb2 = nnx.Linear(emb_dim, emb_dim, rngs=rngs)
    self.conv_in = layers.conv(in_channels, channels, rngs, dtype=dtype)

    block = lambda cin, cout: layers.ResBlock(cin, cout, emb_dim, dropout, dtype, rngs)
    attn = lambda ch: layers.SelfAttention(ch, num_heads, dtype, rngs)

    # Encoder: remember the width of every feature map that is skipped to the decoder.
    down, skips, ch, res = [], [channels], channels, image_size
    for level, mult in enumerate(channel_mult):
      for _ in range(num_res_blocks):
        down.append(('res', block(ch, channels * mult)))
        ch = channels * mult
        if res in attn_resolutions:
          down.append(('attn', attn(ch)))
        skips.append(ch)
      if level < len(channel_mult) - 1:
        down.append(('down', layers.Downsample(ch, dtype, rngs)))
        res //= 2
        skips.append(ch)
    self.down_kinds = tuple(k for k, _ in down)
    self.down = layers.ModuleList([m for _, m in down])

    self.mid = layers.ModuleList([block(ch, ch), attn(ch), block(ch, ch)])

    up = []
    for level, mult in reversed(list(enumerate(channel_mult))):
      for _ in range(num_res_blocks + 1):
        up.append(('res', block(ch + skips.pop(), channels * mult)))
        ch = channels * mult
        if res in attn_resolutions:
          up.append(('attn', attn(ch)))
      if level > 0:
        up.append(('up', layers.Upsample(ch, dtype, rngs)))
        res *= 2
    self.up_kinds = tuple(k for k, _ in up)
    self.up = layers.ModuleList([m for _, m in up])

    self.norm_out = nnx.GroupNorm(ch, num_groups=layers.num_groups(ch), rngs=rngs)
    self.conv_out = layers.conv(ch, in_channels, rngs, dtype=dtype, zero=True)

  def __call__(self, x: jax.Array, cond: jax.Array, *, rngs: nnx.Rngs | None = None):
    """x: [B, H, W, C]; cond: [B]; rngs: dropout randomness (None = deterministic)."""
    res = nnx.remat(_res_block) if self.remat else _res_block
    emb = self.emb2(nnx.silu(self.emb1(layers.timestep_embedding(cond, self.channels))))
    h = self.conv_in(x.astype(self.dtype))
    hs = [h]
    for kind, m in zip(self.down_kinds, self.down):
      if kind == 'res':
        h = res(m, h, emb, rngs)
        hs.append(h)
      elif kind == 'attn':
        h = m(h)
        hs[-1] = h
      else:
        h = m(h)
        hs.append(h)
    h = res(self.mid[2], self.mid[1](res(self.mid[0], h, emb, rngs)), emb, rngs)
    for kind, m in zip(self.up_kinds, self.up):
      if kind == 'res':
        h = res(m, jnp.concatenate([h, hs.pop()], axis=-1), emb, rngs)
      else:
        h = m(h)
    return self.conv_out(nnx.silu(self.norm_out(h))).astype(jnp.float32)


def _res_block(block, h, emb, rngs):
  return block(h, emb, rngs)


@registry.MODELS.register('unet')   # fields: entry_checks.unet_fields
def build_unet(config, seed: int) -> UNet:
  m = config.model
  return UNet(image_size=config.data.image_size, in_channels=CHANNELS, channels=m.channels,
              channel_mult=tuple(m.channel_mult), num_res_blocks=m.num_res_blocks,
              attn_resolutions=tuple(m.attn_resolutions), num_heads=m.num_heads,
              dropout=m.dropout, dtype=DTYPES[m.dtype], remat=m.remat,
              rngs=nnx.Rngs(params=seed))
