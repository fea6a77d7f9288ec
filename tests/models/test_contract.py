"""The contract every registered model meets (sparsediff_jax/models/README.md), checked for
each name in registry.MODELS at its tiny size (tiny.MODELS): a new model is tested here by
registering it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsediff_jax import registry
from sparsediff_jax.models import build_model, count_params
from sparsediff_jax import train_state as state
from tests.helpers.nets import perturbed
from tests.helpers.tiny import model_config

pytestmark = pytest.mark.parametrize('name', registry.MODELS.names())

X = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))


def test_output_has_the_input_shape_in_float32(name):
  y = build_model(model_config(name), 0)(X, jnp.array([0.1, 0.9]))
  assert y.shape == X.shape and y.dtype == jnp.float32


def test_the_noise_level_conditions_the_output(name):
  net = perturbed(model_config(name))
  y1, y2 = net(X, jnp.array([0.1, 0.1])), net(X, jnp.array([0.9, 0.9]))
  assert float(jnp.abs(y1 - y2).max()) > 1e-3
  # Each example is conditioned on its own level.
  y12 = net(X, jnp.array([0.1, 0.9]))
  np.testing.assert_allclose(y12[0], y1[0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(y12[1], y2[1], rtol=1e-5, atol=1e-6)


def test_the_same_seed_builds_the_same_parameters(name):
  c = model_config(name)
  a, b, other = (jax.tree.leaves(nnx.state(build_model(c, s), nnx.Param)) for s in (0, 0, 1))
  assert len(a) == len(b) == len(other) > 0
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert any(not np.array_equal(x, y) for x, y in zip(a, other))


def test_the_state_is_the_parameters_and_their_count_is_the_one_reported(name):
  """Training logs count_params of the abstract model (train_state.abstract_model):
  the number of trained parameters, with no other variables in the state."""
  c = model_config(name)
  net = build_model(c, 0)
  _, abstract = state.abstract_model(c)
  n = count_params(nnx.state(net, nnx.Param))
  assert n > 0 and count_params(nnx.state(net)) == count_params(abstract) == n


def test_bfloat16_computes_close_to_float32_with_float32_parameters_and_output(name):
  net = perturbed(model_config(name))
  net16 = build_model(model_config(name, model__dtype='bfloat16'), 0)
  params = jax.tree.leaves(nnx.state(net16, nnx.Param))
  assert params and all(p.dtype == jnp.float32 for p in params)
  nnx.update(net16, nnx.state(net))
  cond = jnp.array([0.1, 0.1])
  y, y16 = net(X, cond), net16(X, cond)
  assert y16.dtype == jnp.float32
  np.testing.assert_allclose(y16, y, atol=0.1 * float(jnp.abs(y).max()) + 1e-2)


def test_dropout_is_off_without_rngs_and_on_with_them(name):
  net = perturbed(model_config(name, model__dropout=0.5))
  cond = jnp.array([0.5, 0.5])
  np.testing.assert_array_equal(net(X, cond), net(X, cond))
  d1, d2 = (net(X, cond, rngs=nnx.Rngs(dropout=s)) for s in (0, 1))
  assert float(jnp.abs(d1 - d2).max()) > 1e-4


@pytest.mark.parametrize('dropout', [0.0, 0.3])
def test_remat_gives_the_same_values_and_gradients(name, dropout):
  """model.remat recomputes blocks in the backward pass: the numbers must not change,
  dropout masks included (the same rngs draw the same masks in the recomputation)."""
  graphdef, params = nnx.split(perturbed(model_config(name, model__dropout=dropout)))
  remat_graphdef, _ = nnx.split(build_model(
      model_config(name, model__dropout=dropout, model__remat=True), 0))
  cond = jnp.array([0.2, 0.7])

  def loss(graph, p):
    rngs = nnx.Rngs(dropout=3) if dropout else None
    return jnp.mean(nnx.merge(graph, p)(X, cond, rngs=rngs) ** 2)

  (l0, g0), (l1, g1) = [jax.jit(jax.value_and_grad(lambda p, g=g: loss(g, p)))(params)
                        for g in (graphdef, remat_graphdef)]
  assert float(l0) > 0
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
  # And the backward pass really recomputes: the compiled gradient holds more products.
  ops = [jax.jit(jax.grad(lambda p, g=g: loss(g, p))).lower(params).as_text()
         for g in (graphdef, remat_graphdef)]
  count = lambda hlo: hlo.count('convolution(') + hlo.count('dot_general')  # noqa: E731
  assert count(ops[1]) > count(ops[0])
