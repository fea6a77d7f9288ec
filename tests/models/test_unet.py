"""The U-Net beyond the model contract (test_contract.py): shapes at several resolutions and
depths, the exactly-zero initial output, and parameter counts."""

import jax
import jax.numpy as jnp
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


def test_parameter_count_grows_with_width():
  small = count_params(nnx.state(build_model(tiny_config(), 0)))
  wide = count_params(nnx.state(build_model(tiny_config(model__channels=16), 0)))
  assert 0 < small < wide
