"""The train step: it learns, its metrics, device-count invariance, checkpoint resume."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsediff_jax.runtime import checkpoints, sharding
from sparsediff_jax import data
from sparsediff_jax import train_step
from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer
from sparsediff_jax.modes import train
from tests.helpers import REPO
from tests.helpers.tiny import tiny_config
from tests.helpers.states import assert_same_state



@pytest.fixture(scope='module')
def setup():
  c = tiny_config()
  mesh = sharding.make_mesh()
  tx, schedule = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh)
  batch = data.load_train_images(c)[:8]
  return c, mesh, tx, step, batch


def test_step_reduces_loss_on_a_fixed_batch(setup):
  c, mesh, tx, step, batch = setup
  state = init_state(c, tx, mesh)
  b = sharding.global_batch(batch, mesh)
  losses = []
  for _ in range(30):
    state, m = step(state, b)
    losses.append(float(m['dense_loss']))
  assert int(state.step) == 30
  assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_metrics_and_ema(setup):
  c, mesh, tx, step, batch = setup
  state = init_state(c, tx, mesh)
  before = jax.device_get(state.params)
  state, m = step(state, sharding.global_batch(batch, mesh))
  assert set(m) >= {'loss', 'dense_loss', 'grad_norm', 'learning_rate', 'kept_fraction'}
  assert abs(float(m['kept_fraction']) - (1 - c.mask.ratio)) < 0.1
  d = min(c.optim.ema_decays[0], 1 / 10)   # the warmed-up decay at step 0
  expected = jax.tree.map(lambda e, p: d * e + (1 - d) * p, before,
                          jax.device_get(state.params))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
               expected, jax.device_get(state.ema[0]))


def test_ratio_zero_loss_is_the_dense_loss():
  c = tiny_config({'mask.ratio': 0.0, 'model.channel_mult': (1,),   # a one-level net:
                   'model.attn_resolutions': ()})                   # a cheaper compile
  mesh = sharding.make_mesh()
  tx, schedule = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  fn = jax.jit(train_step.make_train_step(c, graphdef, tx, schedule))
  _, m = fn(init_state(c, tx, mesh), jnp.asarray(data.load_train_images(c)[:8]))
  assert float(m['kept_fraction']) == 1.0
  np.testing.assert_allclose(m['loss'], m['dense_loss'], rtol=1e-6)


def _run_devices(n):
  env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={n}')
  out = subprocess.run([sys.executable, '-m', 'tests.helpers.run_tiny_steps'],
                       env=env, capture_output=True, text=True, timeout=600, cwd=REPO)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_one_and_eight_devices_agree():
  one, eight = _run_devices(1), _run_devices(8)
  assert one['devices'] == 1 and eight['devices'] == 8
  np.testing.assert_allclose(one['losses'], eight['losses'], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(one['param_sums'], eight['param_sums'], rtol=1e-5, atol=1e-6)
  # The masks the compiled step drew: the same global masks on 1 and 8 devices, a
  # different one for every example (so also across devices), about 1 - ratio kept.
  assert one['masks_sha256'] == eight['masks_sha256']
  assert eight['mask_rows_distinct'] == eight['batch']
  assert abs(eight['mask_kept_fraction'] - 0.1) < 0.05


def test_compiled_step_draws_the_mask_of_its_strategy(tiny_config):
  """The mask returned by the jitted step: i.i.d. at mask.ratio, and under the
  noise-level schedule kept more at low noise than at high noise."""
  mesh = sharding.make_mesh()
  kept = {}
  for name, extra in (('iid', {'mask.ratio': 0.5}),
                      ('noise_schedule', {'mask.strategy': 'noise_schedule',
                                          'mask.ratio_at_t0': 0.0, 'mask.ratio_at_t1': 0.98})):
    c = tiny_config({**extra, 'training.batch_size': 64, 'data.num_train_examples': 64,
                     'model.channel_mult': (1,), 'model.attn_resolutions': ()})
    tx, schedule = make_optimizer(c)
    graphdef, _ = abstract_model(c)
    step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh, return_mask=True)
    _, m = step(init_state(c, tx, mesh),
                sharding.global_batch(data.load_train_images(c), mesh))
    mask = np.asarray(m['mask'])
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask.shape == (64, 16, 16, 3)
    np.testing.assert_array_equal(mask, mask[..., :1].repeat(3, axis=-1))   # per pixel
    kept[name] = mask.reshape(64, -1).mean(axis=1)
  assert abs(kept['iid'].mean() - 0.5) < 0.03
  # Flow matching's times are uniform: the per-example kept fraction 1 - 0.98 t spreads
  # from about 1 to 0.02 instead of clustering at one value.
  assert kept['noise_schedule'].max() > 0.8 and kept['noise_schedule'].min() < 0.2
  assert kept['iid'].std() < 0.1 < kept['noise_schedule'].std()


def test_checkpoint_round_trip_and_resume(tmp_path):
  c = tiny_config(training__num_steps=4, training__checkpoint_every=2)
  full = train.train(c, str(tmp_path / 'full'))
  # Stop at 2, then resume to 4 with the same command.
  half = tiny_config(training__num_steps=2, training__checkpoint_every=2)
  train.train(half, str(tmp_path / 'resumed'))
  ckpt = checkpoints.Checkpointer(str(tmp_path / 'resumed' / 'checkpoints'))
  assert ckpt.all_steps() == [2]
  resumed = train.train(c, str(tmp_path / 'resumed'))
  assert int(resumed.step) == 4
  assert_same_state(full, resumed)


@pytest.mark.slow   # several compilations of the step
def test_steps_per_call_runs_the_same_steps(tmp_path):
  """training.steps_per_call=2 (a lax.scan over stacked batches) trains the same 4 steps as
  one step per call: the same losses in metrics.jsonl and the same state; its checkpoint
  resumes with steps_per_call=1."""
  c = tiny_config(training__num_steps=4, training__checkpoint_every=2)
  full = train.train(c, str(tmp_path / 'one'))
  scanned = tiny_config(training__num_steps=2, training__checkpoint_every=2,
                        training__steps_per_call=2)
  train.train(scanned, str(tmp_path / 'scan'))
  resumed = train.train(c, str(tmp_path / 'scan'))
  assert int(resumed.step) == 4
  # The same numbers up to float rounding (the scan fuses differently).
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(y), np.asarray(x),
                                                       rtol=1e-5, atol=1e-6),
               (full.params, full.ema), (resumed.params, resumed.ema))
  lines = [[json.loads(l) for l in open(tmp_path / d / 'metrics.jsonl')] for d in ('one', 'scan')]
  losses = [{r['step']: r['loss'] for r in rs if 'loss' in r} for rs in lines]
  assert sorted(losses[0]) == sorted(losses[1]) == [2, 4]
  for s in (2, 4):
    np.testing.assert_allclose(losses[1][s], losses[0][s], rtol=1e-5)


def test_steps_per_call_must_divide_the_schedule():
  from sparsediff_jax import validation
  with pytest.raises(validation.ConfigError, match='multiple of training.steps_per_call=3'):
    validation.validate_config(tiny_config(training__steps_per_call=3), 1)


@pytest.mark.slow   # several compilations of the step
def test_rolled_and_unrolled_multi_step_agree(setup):
  c, mesh, tx, _, batch = setup
  graphdef, _ = abstract_model(c)
  fn = train_step.make_train_step(c, graphdef, tx, make_optimizer(c)[1])
  stacked = np.stack([batch, batch[::-1]])
  out = [jax.jit(train_step.make_multi_step(fn, 2, unroll))(init_state(c, tx, mesh), stacked)
         for unroll in (True, False)]
  assert out[0][1]['loss'].shape == (2,)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(y), np.asarray(x),
                                                       rtol=1e-5, atol=1e-7), out[0], out[1])
  single = jax.jit(fn)
  state, m1 = single(init_state(c, tx, mesh), batch)
  _, m2 = single(state, batch[::-1])
  np.testing.assert_allclose(out[0][1]['loss'], [m1['loss'], m2['loss']], rtol=1e-5)
