"""The Diffusion Transformer (model.name='dit') beyond the model contract (test_contract.py):
the exactly-zero initial output, attention across patches, fixed positions, the parameter
count of the architecture, config checks, training (with token-aligned masks), device-count
and FSDP invariance, checkpoint resume and sampling."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from sparsediff_jax.runtime import checkpoints, sharding

from sparsediff_jax import train_state as state
from sparsediff_jax import data, errors, formulations, masking, registry, validation
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer
from sparsediff_jax.modes import sample, train
from sparsediff_jax.models import build_model, count_params, dit
from tests.helpers.cli_runs import run_worker
from tests.helpers.nets import perturbed
from tests.helpers.tiny import model_config
from tests.helpers.states import assert_same_state

def dit_config(**overrides):
  """The tiny DiT (tiny.MODELS['dit']): 2 blocks, 32 wide, on 16x16 images."""
  return model_config('dit', **overrides)


@pytest.mark.parametrize('formulation', registry.FORMULATIONS.names())
def test_output_shape_dtype_and_zero_init_for_each_formulation(formulation):
  """Built as train.py builds it (abstract graphdef, jitted sharded init), fed the
  formulation's own training pair: the output has the target's shape, float32, all zero."""
  c = dit_config(diffusion__formulation=formulation)
  mesh = sharding.make_mesh()
  tx, _ = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  state = init_state(c, tx, mesh)
  x0 = jnp.asarray(data.load_train_images(c)[:4], jnp.float32) / 127.5 - 1.0
  pair = formulations.get_formulation(c.diffusion).training_pair(jax.random.PRNGKey(0), x0)
  y = nnx.merge(graphdef, state.params)(pair.net_input, pair.cond)
  assert y.shape == pair.target.shape == (4, 16, 16, 3) and y.dtype == jnp.float32
  # adaLN-Zero and the zero final layer: an untrained DiT predicts exactly zero.
  assert float(jnp.abs(y).max()) == 0.0


def test_zero_output_in_bfloat16_and_parameters_stay_float32():
  c = dit_config(model__dtype='bfloat16')
  net = build_model(c, 0)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  y = net(x, jnp.array([0.1, 0.9]))
  assert y.dtype == jnp.float32 and float(jnp.abs(y).max()) == 0.0
  params = jax.tree.leaves(nnx.state(net, nnx.Param))
  assert params and all(p.dtype == jnp.float32 for p in params)


def test_output_depends_on_every_patch_and_bfloat16_runs_the_token_matmuls():
  net = perturbed(dit_config())
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 16, 16, 3))
  y1 = net(x, jnp.array([0.1, 0.1]))
  # Attention mixes tokens: changing one corner pixel changes the far corner's patch.
  y3 = net(x.at[:, 0, 0, 0].add(1.0), jnp.array([0.1, 0.1]))
  assert float(jnp.abs(y3 - y1)[:, -2:, -2:].max()) > 1e-5
  net16 = build_model(dit_config(model__dtype='bfloat16'), 0)
  nnx.update(net16, nnx.state(net))
  y16 = net16(x, jnp.array([0.1, 0.1]))
  assert float(jnp.abs(y16 - y1).max()) > 0   # it did compute in bfloat16
  # The token matmuls really run in bfloat16 (test_contract.py: close to float32).
  hlo = jax.jit(lambda a: net16(a, jnp.array([0.1, 0.1]))).lower(x).as_text()
  assert 'bf16' in hlo


def test_parameter_count_matches_the_architecture_and_positions_are_not_parameters():
  c = dit_config(model__depth=3)
  net = build_model(c, 0)
  p, d, m, cin, f = 2, 32, 64, 3, dit.TIME_FREQ_DIM
  lin = lambda a, b: a * b + b
  block = lin(d, 3 * d) + lin(d, d) + lin(d, m) + lin(m, d) + lin(d, 6 * d)
  expected = (lin(p * p * cin, d) + lin(f, d) + lin(d, d) + 3 * block + lin(d, 2 * d)
              + lin(d, p * p * cin))
  # The whole state is the trained parameters: no position table, no other variables.
  assert count_params(nnx.state(net)) == count_params(nnx.state(net, nnx.Param)) == expected


def test_patchify_round_trip_and_sincos_positions():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 3))
  tokens = dit.patchify(x, 4)
  assert tokens.shape == (2, 4, 48)
  np.testing.assert_array_equal(tokens[:, 1].reshape(2, 4, 4, 3), x[:, :4, 4:])  # row-major
  np.testing.assert_array_equal(dit.unpatchify(tokens, 4, 8, 8), x)
  pos = dit.sincos_2d(16, 4)
  assert pos.shape == (16, 16) and pos.dtype == np.float32
  assert len({r.tobytes() for r in pos}) == 16   # every token has its own position
  # Tokens in one grid row share the row half of the embedding, in one column the other.
  np.testing.assert_array_equal(pos[0, :8], pos[3, :8])
  np.testing.assert_array_equal(pos[0, 8:], pos[12, 8:])


def test_mask_patches_equal_to_model_patches_keep_or_drop_whole_tokens():
  mask = masking.sample_pixel_mask(jax.random.PRNGKey(0), (4, 16, 16, 3), 0.5, patch_size=4)
  per_token = dit.patchify(mask, 4)   # [4, 16 tokens, 48 elements]
  assert bool(jnp.all(per_token.min(axis=-1) == per_token.max(axis=-1)))
  assert 0 < float(per_token.mean()) < 1


@pytest.mark.parametrize('bad,field', [
    (dict(model__patch_size=3), 'model.patch_size=3'),
    (dict(model__hidden_size=30, model__num_heads=1), 'model.hidden_size=30'),
    (dict(model__num_heads=3), 'model.num_heads=3'),
    (dict(model__depth=0), 'model.depth=0'),
    (dict(model__num_heads=0), 'model.num_heads=0'),
    (dict(model__mlp_ratio=-1.0), 'model.mlp_ratio=-1.0'),
])
def test_bad_dit_fields_are_config_errors(bad, field):
  c = dit_config(**bad)
  with pytest.raises(errors.ConfigError, match=field.replace('.', r'\.')):
    registry.MODELS.check('dit', c)
  with pytest.raises(validation.ConfigError, match=field.replace('.', r'\.')):
    validation.validate_config(c, 1)


def test_valid_dit_config_passes_and_unet_checks_do_not_apply():
  # 6 heads divide hidden 48 but not the U-Net's default channel counts (16, 32).
  validation.validate_config(dit_config(model__hidden_size=48, model__num_heads=6), 1)


def test_trains_on_shapes_with_token_aligned_masks():
  """A few dozen compiled steps on a fixed batch of shapes, the mask keeping or dropping
  whole tokens (mask.patch_size = model.patch_size): the dense loss falls."""
  c = dit_config(mask__patch_size=2, mask__ratio=0.5, optim__learning_rate=2e-3,
                 optim__warmup_steps=5)
  mesh = sharding.make_mesh()
  tx, schedule = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh)
  state = init_state(c, tx, mesh)
  batch = sharding.global_batch(data.load_train_images(c)[:8], mesh)
  losses = []
  for _ in range(40):
    state, m = step(state, batch)
    losses.append(float(m['dense_loss']))
  assert np.all(np.isfinite(losses)) and int(state.step) == 40
  assert 0.0 < float(m['kept_fraction']) < 1.0
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5]), losses


@pytest.mark.slow
def test_one_and_eight_devices_and_fsdp_agree():
  one, eight = run_worker('dit_devices_worker', 1), run_worker('dit_devices_worker', 8)
  assert one['devices'] == 1 and eight['devices'] == 8
  ref = one['runs']['fsdp1']
  for name in ('fsdp1', 'fsdp4'):
    run = eight['runs'][name]
    np.testing.assert_allclose(run['losses'], ref['losses'], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run['param_sums'], ref['param_sums'], rtol=1e-5, atol=1e-6)
  # FSDP really split the state: a quarter-ish of the bytes on each device.
  assert any('fsdp' in s for s in eight['runs']['fsdp4']['param_specs'])
  assert eight['runs']['fsdp4']['bytes_per_device'] < 0.5 * eight['runs']['fsdp1'][
      'bytes_per_device']


@pytest.mark.slow
def test_checkpoint_resume_and_sampling(tmp_path):
  c = dit_config(training__num_steps=4, training__checkpoint_every=2)
  full = train.train(c, str(tmp_path / 'full'))
  train.train(dit_config(training__num_steps=2, training__checkpoint_every=2),
              str(tmp_path / 'resumed'))
  assert checkpoints.Checkpointer(str(tmp_path / 'resumed' / 'checkpoints')).all_steps() == [2]
  resumed = train.train(c, str(tmp_path / 'resumed'))
  assert int(resumed.step) == 4
  assert_same_state(full, resumed)
  # --mode=sample's path (the one restore path of every mode): the EMA parameters, a grid.
  run = state.restore_run(c, str(tmp_path / 'resumed'))
  step, params = run.step, run.params(c)
  assert step == 4
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
               params, resumed.ema[0])
  paths = sample.run_sample_mode(c, str(tmp_path / 'resumed'))
  assert paths and all(os.path.getsize(p) > 0 for p in paths)
