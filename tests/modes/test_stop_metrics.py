"""A run stopped by SIGTERM or SIGINT and resumed logs what an uninterrupted run logs.

The signal is sent by a training hook at a fixed step (deterministic, in-process), between
two metric lines: the stop writes no metric line, and the first line after the resume
averages the whole window, the steps before the stop included (carried in the checkpoint).
"""

import os
import signal

import pytest

from sparsediff_jax.console import metrics_jsonl
from sparsediff_jax.runtime import preemption
from sparsediff_jax.modes import train
from tests.helpers.tiny import tiny_config

pytestmark = pytest.mark.slow   # three compilations of the step

STEPS, LOG_EVERY, SIGNAL_AT = 12, 4, 5   # the stop lands at step 6, mid-window
COMPARED = ('loss', 'dense_loss', 'grad_norm', 'kept_fraction', 'learning_rate', 'skipped')


def _config():
  return tiny_config(training__num_steps=STEPS, training__log_every=LOG_EVERY,
                     training__checkpoint_every=LOG_EVERY)


def _signal_hook(signum):
  def factory(config, graphdef, mesh, workdir):
    def send(state):
      if int(state.step) == SIGNAL_AT:
        os.kill(os.getpid(), signum)
      return {}
    return 1, send
  return factory


def _metric_lines(workdir) -> dict:
  records = metrics_jsonl.read(os.path.join(workdir, 'metrics.jsonl'))
  return {r['step']: {k: r[k] for k in COMPARED} for r in records if 'loss' in r}


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('reference'))
  train.train(_config(), workdir)
  return _metric_lines(workdir)


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_stop_and_resume_log_like_one_run(reference, tmp_path, signum):
  workdir = str(tmp_path / 'run')
  with pytest.raises(preemption.TrainingInterrupted) as stopped:
    train.train(_config(), workdir, hooks=(_signal_hook(signum),))
  assert stopped.value.step == SIGNAL_AT + 1 and stopped.value.signum == signum
  assert sorted(_metric_lines(workdir)) == [4]   # no line at the stop step
  train.train(_config(), workdir)
  assert sorted(reference) == [4, 8, 12]
  assert _metric_lines(workdir) == reference    # step 8 averages steps 5..8, bit for bit
