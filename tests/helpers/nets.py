"""Models whose output depends on every parameter, for tests of what a network computes."""

import jax
from flax import nnx

from sparsediff_jax.models import build_model


def perturbed(config):
  """The model of `config` (seed 0) with every parameter nudged (seed 1), so that its output
  depends on everything (zero-initialised output layers would otherwise hide the rest)."""
  graphdef, params = nnx.split(build_model(config, 0))
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))
