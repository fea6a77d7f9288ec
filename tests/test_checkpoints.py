"""Checkpointer on real Orbax files: damaged newest steps, none intact, NaN states, and a
soak of asynchronous saves killed at random moments."""

import os
import random
import shutil
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from checkpoint_soak_worker import state_of
from cli_runs import truncate_every_file
from sparsediff_jax import checkpoints, nonfinite

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ABSTRACT = checkpoints.abstract_like(state_of(0), jax.sharding.SingleDeviceSharding(
    jax.devices()[0]))


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """Steps 1, 2, 3 (state arrays hold their step), written once and copied per test."""
  directory = str(tmp_path_factory.mktemp('saved') / 'checkpoints')
  ckpt = checkpoints.Checkpointer(directory, keep=3)
  for step in (1, 2, 3):
    ckpt.save(step, state_of(step), {'data': {'position': step}})
  ckpt.wait()
  ckpt.close()
  return directory


@pytest.fixture
def copy(saved, tmp_path):
  directory = str(tmp_path / 'checkpoints')
  shutil.copytree(saved, directory)
  return directory


def _remove_the_array_data(step_dir):
  state = os.path.join(step_dir, 'state')
  for name in os.listdir(state):
    if name == 'd' or name.startswith('ocdbt.process_'):
      shutil.rmtree(os.path.join(state, name))


def _empty(step_dir):
  shutil.rmtree(step_dir)
  os.mkdir(step_dir)


@pytest.mark.parametrize('damage', [truncate_every_file, _remove_the_array_data, _empty])
def test_a_damaged_newest_step_falls_back_and_is_set_aside(copy, damage, caplog):
  damage(os.path.join(copy, '3'))
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  step, state, meta = ckpt.restore_latest(ABSTRACT)
  assert step == 2 and meta == {'data': {'position': 2}}
  np.testing.assert_array_equal(state['params']['w'], np.full((64, 32), 2.0))
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert any(w.startswith(f'checkpoint 3 in {copy} cannot be restored') for w in warnings)
  assert any(w.startswith(f'restored checkpoint 2 of {copy}; the newer [3]') for w in warnings)
  # Set aside, so that training can write step 3 again (Orbax would skip it otherwise).
  assert sorted(os.listdir(copy)) == ['1', '2', '3.damaged']
  ckpt.save(3, state_of(3), {'data': {'position': 3}})
  ckpt.wait()
  assert ckpt.restore_latest(ABSTRACT)[0] == 3
  ckpt.close()


def test_none_intact_is_an_error_not_a_fresh_start(copy):
  for step in ('1', '2', '3'):
    truncate_every_file(os.path.join(copy, step))
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'^none of the checkpoints \[1, 2, 3\] in .* can be restored \(step '
                           r'3: .*\); move the directory away'):
    ckpt.restore_latest(ABSTRACT)
  assert sorted(os.listdir(copy)) == ['1', '2', '3']   # nothing renamed or deleted
  ckpt.close()


def test_a_refusal_from_check_meta_is_not_taken_for_damage(copy):
  ckpt = checkpoints.Checkpointer(copy, keep=3)

  def refuse(meta):
    raise ValueError(f'not this run (position {meta["data"]["position"]})')

  with pytest.raises(ValueError, match=r'position 3'):
    ckpt.restore_latest(ABSTRACT, check_meta=refuse)
  assert sorted(os.listdir(copy)) == ['1', '2', '3']
  ckpt.close()


def test_a_state_with_nan_is_never_written(copy):
  ckpt = checkpoints.Checkpointer(copy, keep=3)
  bad = state_of(4)
  bad['params']['b'] = bad['params']['b'].at[5].set(np.nan)
  with pytest.raises(nonfinite.NonFiniteError, match='the state of step 4 holds NaN'):
    ckpt.save(4, bad, {'data': {'position': 4}})
  ckpt.wait()
  assert ckpt.all_steps() == [1, 2, 3]
  ckpt.close()


def test_soak_async_saves_killed_at_random_moments(tmp_path):
  """A process saving a checkpoint per step is killed (SIGKILL) at random moments, and some
  newest steps are then cut short too: every restart must restore a consistent state, never
  meet an unreadable newest step it cannot fall back past, nor more steps than allowed."""
  directory, keep, rng = str(tmp_path / 'checkpoints'), 2, random.Random(0)
  env = {**os.environ, 'PYTHONPATH': REPO}
  worker = [sys.executable, os.path.join(REPO, 'tests', 'checkpoint_soak_worker.py'),
            directory, str(keep)]
  restored_steps, deadline = [], time.time() + 100
  for cycle in range(8):
    proc = subprocess.Popen(worker, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    assert proc.stdout.readline().startswith('ready')
    time.sleep(rng.uniform(0.0, 1.2))
    proc.kill()
    proc.wait()
    steps = sorted(int(n) for n in os.listdir(directory) if n.isdigit())
    # A kill between Orbax's commit of a new step and its deletion of the oldest leaves
    # one extra step; anything else half-written is a *.orbax-checkpoint-tmp folder.
    assert len(steps) <= keep + 1
    if cycle % 2 and len(steps) > 1:   # a disk error on the newest, with an older one left
      truncate_every_file(os.path.join(directory, str(steps[-1])))
    ckpt = checkpoints.Checkpointer(directory, keep=keep)
    restored = ckpt.restore_latest(ABSTRACT)
    if restored is not None:
      step, state, meta = restored
      assert meta == {'data': {'position': step}} and int(state['step']) == step
      np.testing.assert_array_equal(state['params']['w'], np.full((64, 32), float(step)))
      assert len(ckpt.all_steps()) <= keep
      restored_steps.append(step)
    ckpt.close()
    if time.time() > deadline:
      break
  assert restored_steps and restored_steps[-1] > 0
