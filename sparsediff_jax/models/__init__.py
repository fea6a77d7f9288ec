"""Networks: `build_model(config, seed)` returns the NNX module named by config.model.name.

Each network registers a builder `fn(config, seed) -> nnx.Module` with registry.MODELS in
its own file (unet.py, dit.py; see sparsediff_jax/registry.py); the module maps noisy images
[B, H, W, 3] and noise-level conditioning [B] to an output of the images' shape. README.md
states the whole contract (tests/models/test_contract.py checks it).
"""

import jax
import jax.numpy as jnp

from sparsediff_jax import registry

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}


def build_model(config, seed: int):
  """Builds the model of `config.model` for `config.data` images with parameters from `seed`."""
  return registry.MODELS.get(config.model.name)(config, seed)


def count_params(params) -> int:
  return sum(int(x.size) for x in jax.tree.leaves(params))
