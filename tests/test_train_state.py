"""The initialiser compiled at its cheaper CPU optimisation level gives the same bits as at
the default level (state.INIT_CPU_COMPILER_OPTIONS): a cold start's saving must not change
what a run starts from (tests/test_loss_reference.py checks the whole run)."""

import jax
from flax import nnx
import numpy as np
import pytest

from sparsediff_jax.runtime import sharding

from sparsediff_jax import train_state as state
from tests.helpers import tiny


@pytest.mark.parametrize('model', sorted(tiny.MODELS))
def test_init_at_the_cheaper_level_matches_the_default_level_bit_for_bit(model):
  config = tiny.model_config(model)
  tx, _ = state.make_optimizer(config)
  mesh = sharding.make_mesh(config)
  assert mesh.devices.flat[0].platform == 'cpu'   # where the cheaper level applies
  cheaper = state.init_state(config, tx, mesh)
  default = jax.jit(state._init_fn(config, tx),
                    out_shardings=state.state_shardings(config, tx, mesh))()
  got, want = jax.tree.leaves(cheaper), jax.tree.leaves(default)
  assert jax.tree.structure(cheaper) == jax.tree.structure(default)
  for a, b in zip(got, want):
    assert a.dtype == b.dtype and a.sharding == b.sharding
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  # the precompiled path (modes/train.py compiles it beside the train step) is the same
  again = state.init_state(config, tx, mesh, state.compile_init(config, tx, mesh))
  for a, b in zip(jax.tree.leaves(again), got):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize('model', sorted(tiny.MODELS))
def test_one_trace_gives_the_graphdef_and_the_state_of_the_separate_ones(model):
  """abstract_model_and_state (one trace of the model, what training uses) returns what
  abstract_model and abstract_state return separately: the same graphdef, and the same
  shapes, dtypes and shardings of every array of the state."""
  config = tiny.model_config(model)
  tx, _ = state.make_optimizer(config)
  mesh = sharding.make_mesh(config)
  graphdef, target = state.abstract_model_and_state(config, tx, mesh)
  want_graphdef, want_params = state.abstract_model(config)
  # The graphdef holds the same modules and parameters: it takes the separate trace's
  # parameters back into a model of the same class (GraphDef equality itself also compares
  # static function objects, which differ between traces in some flax versions).
  model = nnx.merge(graphdef, want_params)
  assert type(model) is type(nnx.merge(want_graphdef, want_params))
  assert jax.tree.structure(nnx.split(model)[1]) == jax.tree.structure(want_params)
  want = state.abstract_state(config, tx, mesh)
  assert jax.tree.structure(target) == jax.tree.structure(want)
  for a, b in zip(jax.tree.leaves(target), jax.tree.leaves(want)):
    assert (a.shape, a.dtype, a.sharding) == (b.shape, b.dtype, b.sharding)
  shardings = jax.tree.map(lambda a: a.sharding, target)
  separate = state.state_shardings(config, tx, mesh)   # leaf by leaf: Variables compare
  assert jax.tree.structure(shardings) == jax.tree.structure(separate)   # by identity in
  assert jax.tree.leaves(shardings) == jax.tree.leaves(separate)         # some flax versions
