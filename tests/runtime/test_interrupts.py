"""Ctrl-C (SIGINT) and SIGTERM end the CLI with one line and exit code 130 / 143 in every
phase: while the sampler compiles in --mode=sample (it used to end in a segmentation
fault) and while parameters are initialised or the step compiles in training (a long
traceback). Real subprocesses, signalled when their log shows the phase."""

import os
import signal
import time

import pytest

from tests.helpers.cli_runs import TINY, env, run, start
from tests.helpers.slow_phase import env_slowed

pytestmark = pytest.mark.slow   # CLI subprocesses stopped by signals

SHORT = (*TINY, '--config.training.num_steps=2', '--config.training.checkpoint_every=2',
         '--config.training.sample_every=0', '--config.eval.train_fid_every=0')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('interrupts')
  e = env(str(root))
  e['SPARSEDIFF_CACHE'] = str(root / 'cache')
  result = run(*SHORT, f'--workdir={root}/run', env=e)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, e


def _signal_at(args, marker, signum, log_path, e, timeout=300):
  proc = start(*args, '--verbosity=0', env=e, log_path=log_path)
  deadline = time.time() + timeout
  try:
    while marker not in open(log_path).read():
      assert proc.poll() is None, open(log_path).read()[-3000:]
      assert time.time() < deadline, open(log_path).read()[-3000:]
      time.sleep(0.05)
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
  finally:
    if proc.poll() is None:
      proc.kill()
  return code, open(log_path).read()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize('mode, marker', [('sample', 'compiling the sampler...'),
                                          ('train', 'compiling the train step and the '
                                                    'sampler...'),
                                          ('train', 'initialising parameters...')])
def test_a_signal_in_any_phase_is_one_line_and_128_plus_n(trained, tmp_path, mode, marker,
                                                         signum):
  root, e = trained
  workdir = f'{root}/run' if mode == 'sample' else f'{tmp_path}/new'
  args = (*SHORT, f'--workdir={workdir}', f'--mode={mode}')
  if mode == 'train':
    args = (*args, '--config.training.num_steps=1000')
  if marker == 'initialising parameters...':   # a compiled init runs in a blink: hold it
    e = env_slowed(e, str(tmp_path / 'slowed'), 'sparsediff_jax.train_state', 'init_state',
                   60)
  code, log = _signal_at(args, marker, signum, str(tmp_path / 'log.txt'), e)
  name = signal.Signals(signum).name
  said = [l for l in log.splitlines() if f'by {name}' in l]
  assert code == 128 + signum, (code, log[-3000:])
  assert len(said) == 1, log[-3000:]
  assert 'Traceback' not in log and 'Segmentation' not in log and 'Fatal' not in log, log[-3000:]
  if mode == 'train':   # stopped before its first step: nothing left, not even the lock, so
    assert not os.path.exists(workdir), os.listdir(workdir)   # a corrected rerun starts
