"""U-Net shapes, dtypes, initial output, dropout and parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsediff_jax.models import build_model, count_params
from tests.helpers.tiny import tiny_config


@pytest.mark.parametrize('size,mult,attn', [(16, (1, 2), (8,)), (16, (1, 2, 2), (8, 4)),
                                            (12, (1, 1), ())])
def test_output_shape_and_dtype(size, mult, attn):
  c = tiny_config(data__image_size=size, model__channel_mult=mult,
                  model__attn_resolutions=attn)
  net = build_model(c, 0)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, size, size, 3))
  y = net(x, jnp.array([0.1, 0.9]))
  assert y.shape == x.shape and y.dtype == jnp.float32
  # The output conv starts at zero, so an untrained net predicts zero everywhere.
  assert float(jnp.abs(y).max()) == 0.0


def _perturbed(c):
  """A model whose zero-initialised layers are nudged so the output depends on everything."""
  net = build_model(c, 0)
  graphdef, params = nnx.split(net)
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
  leaves = [p + 0.05 * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)]
  return nnx.merge(graphdef, jax.tree.unflatten(tree, leaves))


def test_output_depends_on_conditioning_and_bf16_close_to_f32():
  c = tiny_config()
  net = _perturbed(c)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  y1, y2 = net(x, jnp.array([0.1, 0.1])), net(x, jnp.array([0.9, 0.9]))
  assert float(jnp.abs(y1 - y2).max()) > 1e-3
  c16 = tiny_config(model__dtype='bfloat16')
  net16 = build_model(c16, 0)
  nnx.update(net16, nnx.state(net))
  y16 = net16(x, jnp.array([0.1, 0.1]))
  assert y16.dtype == jnp.float32
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(nnx.state(net16)))
  np.testing.assert_allclose(y16, y1, atol=0.1 * float(jnp.abs(y1).max()) + 1e-2)


def test_dropout_active_only_with_rngs():
  net = _perturbed(tiny_config(model__dropout=0.5))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  cond = jnp.array([0.5, 0.5])
  a, b = net(x, cond), net(x, cond)
  np.testing.assert_array_equal(a, b)
  d1 = net(x, cond, rngs=nnx.Rngs(dropout=0))
  d2 = net(x, cond, rngs=nnx.Rngs(dropout=1))
  assert float(jnp.abs(d1 - d2).max()) > 1e-4


def test_parameter_count_grows_with_width():
  small = count_params(nnx.state(build_model(tiny_config(), 0)))
  wide = count_params(nnx.state(build_model(tiny_config(model__channels=16), 0)))
  assert 0 < small < wide


@pytest.mark.parametrize('dropout', [0.0, 0.3])
def test_remat_gives_the_same_values_and_gradients(dropout):
  """model.remat recomputes blocks in the backward pass: the numbers must not change,
  dropout masks included (the same rngs draw the same masks in the recomputation)."""
  c = tiny_config(model__dropout=dropout)
  net = _perturbed(c)
  graphdef, params = nnx.split(net)
  remat_graphdef, _ = nnx.split(build_model(tiny_config(model__dropout=dropout,
                                                        model__remat=True), 0))
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  cond = jnp.array([0.2, 0.7])

  def loss(graph, p):
    rngs = nnx.Rngs(dropout=3) if dropout else None
    return jnp.mean(nnx.merge(graph, p)(x, cond, rngs=rngs) ** 2)

  (l0, g0), (l1, g1) = [jax.jit(jax.value_and_grad(lambda p, g=g: loss(g, p)))(params)
                        for g in (graphdef, remat_graphdef)]
  assert float(l0) > 0
  np.testing.assert_allclose(l1, l0, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-7)
  # And the backward pass really recomputes: the compiled gradient holds more convolutions.
  hlo = [jax.jit(jax.grad(lambda p, g=g: loss(g, p))).lower(params).as_text()
         for g in (graphdef, remat_graphdef)]
  assert hlo[1].count('convolution(') > hlo[0].count('convolution(')
