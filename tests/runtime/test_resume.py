"""Exact resume and the run-level failures, with the real CLI on a tiny training run.

One uninterrupted run is the reference. Another run of the same command is killed with
SIGKILL once a checkpoint exists, restarted, stopped with SIGTERM, has the checkpoint it
wrote then damaged, and is restarted once more to the end: every step's losses must equal
the reference's bit for bit, and so must the final parameters, EMA and optimiser state.
Copies of the reference workdir then meet a different config, checkpoints that are all
damaged, and a diverged state.
"""

import json
import os
import re
import shutil
import signal
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.helpers.cli_runs import (TINY, assert_one_line_error, env, run, snapshot, start,
                      truncate_every_file)
from sparsediff_jax.console import metrics_jsonl

pytestmark = pytest.mark.slow   # CLI subprocesses killed and resumed

NUM_STEPS, EVERY = 40, 5
ARGS = (*TINY, f'--config.training.num_steps={NUM_STEPS}',
        f'--config.training.checkpoint_every={EVERY}')
COMPARED = ('loss', 'dense_loss', 'grad_norm', 'kept_fraction', 'learning_rate', 'skipped')


@pytest.fixture(scope='module')
def cli_env(tmp_path_factory):
  root = tmp_path_factory.mktemp('resume')
  return env(str(root), jax_cache=str(root / 'jax_cache'))


@pytest.fixture(scope='module')
def reference(tmp_path_factory, cli_env):
  workdir = str(tmp_path_factory.mktemp('reference') / 'run')
  result = run(*ARGS, f'--workdir={workdir}', env=cli_env)
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def _per_step(workdir) -> dict:
  records = metrics_jsonl.read(os.path.join(workdir, 'metrics.jsonl'))
  steps = [r['step'] for r in records]
  assert steps == list(range(1, NUM_STEPS + 1)), steps   # each step once, in order
  return {r['step']: {k: r[k] for k in COMPARED} for r in records}


def _final_state(workdir):
  path = os.path.join(workdir, 'checkpoints', str(NUM_STEPS), 'state')
  return jax.device_get(ocp.StandardCheckpointer().restore(path))


def _wait_for(condition, proc, what, timeout=300):
  deadline = time.time() + timeout
  while not condition():
    assert proc.poll() is None, f'the run ended (code {proc.returncode}) before {what}'
    assert time.time() < deadline, f'timed out waiting for {what}'
    time.sleep(0.02)


def _logged_steps(log_path) -> list[int]:
  with open(log_path) as f:
    return [int(m) for m in re.findall(r'^\S+ step (\d+): loss ', f.read(), re.M)]


def _steps(workdir) -> list[int]:
  directory = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def test_killed_and_preempted_run_continues_exactly(reference, cli_env, tmp_path):
  workdir = str(tmp_path / 'run')
  command = (*ARGS, f'--workdir={workdir}')

  # 1. SIGKILL as soon as a checkpoint exists: no chance to save anything more.
  proc = start(*command, env=cli_env, log_path=str(tmp_path / 'kill.log'))
  _wait_for(lambda: os.path.isdir(os.path.join(workdir, 'checkpoints')) and _steps(workdir),
            proc, 'the first checkpoint')
  proc.send_signal(signal.SIGKILL)
  proc.wait()

  # 2. Restart; SIGTERM once it has trained two steps: it checkpoints the step in flight.
  log = str(tmp_path / 'term.log')
  proc = start(*command, env=cli_env, log_path=log)
  with open(log, 'a'):
    pass
  _wait_for(lambda: len(_logged_steps(log)) >= 2, proc, 'two steps after the restart')
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 128 + signal.SIGTERM
  assert time.time() - sent < 60
  with open(log) as f:
    stopped = int(re.search(r'stopped by SIGTERM at step (\d+) after writing its checkpoint',
                            f.read()).group(1))
  assert stopped < NUM_STEPS and _steps(workdir)[-1] == stopped

  # 3. That checkpoint is then cut short (a disk filling up): the restart falls back.
  truncate_every_file(os.path.join(workdir, 'checkpoints', str(stopped)))
  result = run(*command, env=cli_env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert re.search(rf'checkpoint {stopped} in \S+ cannot be restored', result.stderr)
  assert re.search(rf'restored checkpoint \d+ of \S+; the newer \[{stopped}\]', result.stderr)

  assert _per_step(workdir) == _per_step(reference)
  jax.tree.map(np.testing.assert_array_equal, _final_state(workdir), _final_state(reference))


def test_workdir_holding_another_run_is_refused(reference, cli_env, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  before = snapshot(workdir)
  result = run(*ARGS, '--config.model.channels=16', '--config.mask.ratio=0.5',
               f'--workdir={workdir}', env=cli_env)
  line = assert_one_line_error(result)
  assert line.startswith(f'error: {workdir} holds a run trained with a different config '
                         '(mask.ratio: 0.9 -> 0.5; model.channels: 8 -> 16); resume with the '
                         'saved values, list the fields in --config.training.resume_may_change')
  assert snapshot(workdir) == before


def test_only_damaged_checkpoints_is_an_error_not_a_fresh_start(reference, cli_env, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  for step in _steps(workdir):
    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step)))
    os.mkdir(os.path.join(workdir, 'checkpoints', str(step)))
  before = snapshot(workdir)
  result = run(*ARGS, f'--workdir={workdir}', '--config.training.num_steps=50', env=cli_env)
  line = assert_one_line_error(result)
  assert re.match(r'error: none of the checkpoints \[30, 35, 40\] in \S+ can be restored '
                  r'\(step 40: .*\); resume with the config they were written with, or '
                  r'start from scratch with --start_over', line), line
  assert snapshot(workdir) == before


def test_diverged_run_skips_then_stops_keeping_the_good_state(reference, cli_env, tmp_path):
  """Parameters blown up by 1e30 (finite, so a checkpoint may hold them) give NaN losses:
  those steps are skipped, the state stays as it was, and patience ends the run."""
  workdir = str(tmp_path / 'run')
  shutil.copytree(reference, workdir)
  state = _final_state(workdir)
  state['params'] = jax.tree.map(lambda p: p * np.float32(1e30), state['params'])
  path = os.path.join(workdir, 'checkpoints', str(NUM_STEPS), 'state')
  shutil.rmtree(path)
  ocp.StandardCheckpointer().save(path, state)
  ocp.StandardCheckpointer().wait_until_finished()

  result = run(*ARGS, f'--workdir={workdir}', '--config.training.num_steps=50',
               '--config.training.nonfinite_patience=2', '--config.training.checkpoint_every=1',
               env=cli_env)
  line = assert_one_line_error(result, code=1)
  assert re.match(rf'error: step {NUM_STEPS + 2}: the loss is not finite \(loss=nan, '
                  r'grad_norm=nan\); the update was not applied, after 2 skipped steps in a '
                  r'row \(config.training.nonfinite_patience=2\): the run is not recovering; '
                  rf'the newest checkpoint, step {NUM_STEPS + 1}, is the last good state', line), line
  records = metrics_jsonl.read(os.path.join(workdir, 'metrics.jsonl'))
  assert [(r['step'], r['skipped'], r['skipped_steps']) for r in records[NUM_STEPS:]] == [
      (NUM_STEPS + 1, 1.0, 1.0), (NUM_STEPS + 2, 1.0, 2.0)]
  # Checkpointed after the first skipped step, before the second was read: untouched state.
  assert _steps(workdir)[-1] == NUM_STEPS + 1
  after = jax.device_get(ocp.StandardCheckpointer().restore(
      os.path.join(workdir, 'checkpoints', str(NUM_STEPS + 1), 'state')))
  for key in ('params', 'ema', 'opt_state'):
    jax.tree.map(np.testing.assert_array_equal, after[key], state[key])
  assert int(after['step']) == NUM_STEPS + 1
  meta = os.path.join(workdir, 'checkpoints', str(NUM_STEPS + 1), 'meta', 'metadata')
  with open(meta) as f:
    assert json.load(f)['skipped_steps'] == 1
