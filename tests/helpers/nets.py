"""Models whose output depends on every parameter, for tests of what a network computes."""

import jax
from flax import nnx

from sparsediff_jax.models import build_model


def nudged(tree, seed: int, scale: float):
  """`tree` with scale x N(0, 1) noise (from `seed`) added to every leaf."""
  leaves, treedef = jax.tree.flatten(tree)
  keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
  return jax.tree.unflatten(
      treedef, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def perturbed(config):
  """The model of `config` (seed 0) with every parameter nudged (seed 1), so that its output
  depends on everything (zero-initialised output layers would otherwise hide the rest)."""
  graphdef, params = nnx.split(build_model(config, 0))
  return nnx.merge(graphdef, nudged(params, 1, 0.05))


def perturbed_ema(state, seed: int):
  """A TrainState whose first EMA is nudged (scale 0.1, `seed`): a fresh U-Net's output layer
  is zero, so its samples would be plain noise and its sensitivity nil."""
  return state.replace(ema=(nudged(state.ema[0], seed, 0.1),))
