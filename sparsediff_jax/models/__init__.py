"""Network registry: `build_model(config)` returns the NNX module named by config.model.name."""

import jax
import jax.numpy as jnp
from flax import nnx

from sparsediff_jax.models.unet import UNet

MODELS = ('unet', 'dit')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(config, seed: int):
  """Builds the model of `config.model` for `config.data` images with parameters from `seed`."""
  m = config.model
  if m.name == 'unet':
    return UNet(image_size=config.data.image_size, in_channels=config.data.num_channels,
                channels=m.channels, channel_mult=tuple(m.channel_mult),
                num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
                num_heads=m.num_heads, dropout=m.dropout, dtype=DTYPES[m.dtype],
                remat=m.get('remat', False),
                rngs=nnx.Rngs(params=seed))
  elif m.name == 'dit':
    from sparsediff_jax.models.dit import build_dit
    return build_dit(config, seed)
  raise ValueError(f'unknown model {m.name!r}; choose from {MODELS}')


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
