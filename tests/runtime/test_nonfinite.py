"""Non-finite guards: the in-step selection, the host-side policies, the checkpoint refusal."""

import os
import re
import signal

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sparsediff_jax.runtime import nonfinite


def _adam_step():
  """A jitted step built like train_step.make_train_step: Adam on a quadratic, guarded."""
  tx = optax.adam(0.1)

  @jax.jit
  def step(params, opt_state, target):
    loss, grads = jax.value_and_grad(lambda p: jnp.sum((p['w'] - target) ** 2))(params)
    updates, new_opt = tx.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    ok = nonfinite.all_finite(loss, optax.global_norm(grads))
    new_params, new_opt = nonfinite.keep_if(ok, (new_params, new_opt), (params, opt_state))
    return new_params, new_opt, 1.0 - ok.astype(jnp.float32)

  params = {'w': jnp.ones(3)}
  return step, params, tx.init(params)


def test_a_nan_step_leaves_parameters_and_optimiser_state_untouched():
  step, params, opt = _adam_step()
  params, opt, skipped = step(params, opt, jnp.zeros(3))
  assert float(skipped) == 0.0
  before = jax.device_get((params, opt))
  params, opt, skipped = step(params, opt, jnp.array([0.0, np.nan, 0.0]))
  assert float(skipped) == 1.0
  jax.tree.map(np.testing.assert_array_equal, before, jax.device_get((params, opt)))
  # Training goes on from there as if the bad batch had never come.
  params, opt, skipped = step(params, opt, jnp.zeros(3))
  assert float(skipped) == 0.0 and np.all(np.isfinite(params['w']))
  assert int(opt[0].count) == 2   # Adam counted only the applied updates


def test_all_finite_ignores_integer_leaves_and_sees_inf():
  assert bool(nonfinite.all_finite({'i': jnp.array([2**31 - 1]), 'x': jnp.ones(2)}))
  assert not bool(nonfinite.all_finite({'x': jnp.array([1.0, jnp.inf])}))
  assert not bool(nonfinite.all_finite(jnp.float32(1.0), {'x': jnp.array([jnp.nan])}))


def _feed(monitor, flags, start=1):
  for i, bad in enumerate(flags):
    monitor.observe(start + i, {'skipped': jnp.float32(bad), 'grad_norm': jnp.float32(1.0),
                                'loss': jnp.float32(np.nan if bad else 0.5)})


def test_skip_counts_across_checks_and_resets_the_streak():
  monitor = nonfinite.NonFiniteMonitor('skip', patience=3, skipped_steps=5)
  _feed(monitor, [0, 1, 1, 0, 1])
  assert monitor.check() is None
  _feed(monitor, [1, 0], start=6)
  assert monitor.check() is None
  assert monitor.skipped_steps == 5 + 4
  assert monitor.meta() == {'skipped_steps': 9}


def test_skip_stops_after_patience_in_a_row_naming_the_step():
  monitor = nonfinite.NonFiniteMonitor('skip', patience=3)
  _feed(monitor, [1, 1, 0, 1, 1])
  assert monitor.check() is None
  _feed(monitor, [1], start=6)
  error = monitor.check()
  assert isinstance(error, nonfinite.NonFiniteError)
  assert re.match(r'step 6: the loss is not finite \(loss=nan.*after 3 skipped steps in a row',
                  str(error))


def test_patience_zero_skips_forever():
  monitor = nonfinite.NonFiniteMonitor('skip', patience=0)
  _feed(monitor, [1] * 50)
  assert monitor.check() is None
  assert monitor.skipped_steps == 50


def test_stop_names_the_first_bad_step():
  monitor = nonfinite.NonFiniteMonitor('stop', patience=100)
  _feed(monitor, [0, 0, 1, 1], start=10)
  assert re.match(r"^step 12: the loss is not finite \(loss=nan, grad_norm=1\).*"
                  r"on_nonfinite='stop'", str(monitor.check()))


@pytest.mark.parametrize('loss, grad_norm, named', [
    (np.nan, np.nan, 'the loss is not finite'),
    (1.5, np.inf, 'the gradient is not finite'),
    (1.59592, 2.5518, "the optimiser's update is not finite although the loss and gradient "
                      'are'),
])
def test_the_message_names_the_quantity_that_was_not_finite(loss, grad_norm, named):
  monitor = nonfinite.NonFiniteMonitor('stop', patience=0)
  monitor.observe(7, {'skipped': jnp.float32(1.0), 'loss': jnp.float32(loss),
                      'grad_norm': jnp.float32(grad_norm)})
  message = str(monitor.check())
  assert message.startswith(f'step 7: {named} (loss=') and ' is not finite (loss=' not in (
      message.replace(named, '')), message


@pytest.mark.parametrize('policy, last, says', [
    ('stop', None, 'no checkpoint was written yet, so a rerun starts from the beginning'),
    ('stop', 40, 'the newest checkpoint, step 40, is the last good state'),
    ('skip', 40, 'the newest checkpoint, step 40, is the last good state'),
])
def test_the_message_names_the_real_newest_checkpoint_or_none(policy, last, says):
  monitor = nonfinite.NonFiniteMonitor(policy, patience=1, last_checkpoint=lambda: last)
  _feed(monitor, [1], start=45)
  assert says in str(monitor.check())


@pytest.mark.slow   # compiles the tiny train step (about 20 s on 2 cores)
def test_a_run_stopped_before_its_first_checkpoint_says_there_is_none(tiny_config, tmp_path):
  """An infinite learning rate (refused by validation, set here directly) makes the first
  update infinite from a finite loss and gradient: the stop names the update and says that
  no checkpoint exists (none was written: checkpoint_every=2, and the log at step 2 comes
  first)."""
  from sparsediff_jax.modes import train
  c = tiny_config({'optim.learning_rate': float('inf'), 'optim.warmup_steps': 0,
                   'optim.grad_clip': 0.0, 'training.on_nonfinite': 'stop',
                   'training.compilation_cache': ''})
  before = signal.getsignal(signal.SIGTERM)
  with pytest.raises(nonfinite.NonFiniteError) as e:
    train.train(c, str(tmp_path / 'run'))
  message = str(e.value)
  assert message.startswith("step 1: the optimiser's update is not finite"), message
  assert 'no checkpoint was written yet' in message, message
  assert not os.listdir(tmp_path / 'run' / 'checkpoints')
  # The loop failed: its stop request is closed, so a SIGTERM acts at once again.
  assert signal.getsignal(signal.SIGTERM) is before


def test_nothing_is_read_until_check():
  monitor = nonfinite.NonFiniteMonitor('stop', patience=0)
  _feed(monitor, [1])
  assert monitor.skipped_steps == 0   # observe() only records


def test_a_state_with_nan_is_refused():
  nonfinite.check_state_finite({'w': jnp.ones(2), 'rng': jnp.zeros(2, jnp.uint32)}, 'x')
  with pytest.raises(nonfinite.NonFiniteError, match='the state of step 7 holds NaN or inf'):
    nonfinite.check_state_finite({'w': jnp.array([1.0, np.nan])}, 'the state of step 7')


def test_an_infinite_update_from_finite_gradients_is_skipped(tiny_config):
  """The guard covers the update: an infinite learning rate (refused by validation, set
  here directly) turns a finite loss and gradient into an infinite update, and the compiled
  step keeps the old parameters and reports the step skipped."""
  from sparsediff_jax import data
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax import train_step
  from sparsediff_jax.train_state import abstract_model, init_state, make_optimizer
  c = tiny_config({'optim.learning_rate': float('inf'), 'optim.warmup_steps': 0,
                   'optim.grad_clip': 0.0})
  mesh = sharding.make_mesh()
  tx, schedule = make_optimizer(c)
  graphdef, _ = abstract_model(c)
  step = train_step.compile_train_step(c, graphdef, tx, schedule, mesh, donate=False)
  state = init_state(c, tx, mesh)
  new, m = step(state, sharding.global_batch(data.load_train_images(c)[:8], mesh))
  assert np.isfinite(float(m['loss'])) and np.isfinite(float(m['grad_norm']))
  assert float(m['skipped']) == 1.0
  for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params)):
    np.testing.assert_array_equal(a, b)
