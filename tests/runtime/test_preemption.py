"""StopRequest: signals become a stop at a step, agreed on by every process.

The whole path through the training loop (checkpoint at the step, exit code 143, exact
resume) is tested with the real CLI in test_resume.py.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from sparsediff_jax.runtime import preemption
from tests.helpers import REPO

pytestmark = pytest.mark.slow   # processes stopped by signals


def _deliver(signum):
  os.kill(os.getpid(), signum)
  time.sleep(0.05)   # Python runs the handler at the next bytecode of the main thread


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_asks_to_stop_and_close_restores_the_handlers(signum):
  before = {s: signal.getsignal(s) for s in preemption.HANDLED}
  stop = preemption.StopRequest()
  try:
    assert not stop.should_stop(1)
    _deliver(signum)
    assert stop.should_stop(2) and stop.signum == signum
  finally:
    stop.close()
  assert {s: signal.getsignal(s) for s in preemption.HANDLED} == before


def test_sigint_after_a_stop_request_interrupts_at_once():
  stop = preemption.StopRequest()
  try:
    _deliver(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
      _deliver(signal.SIGINT)
  finally:
    stop.close()


def test_interrupted_names_the_signal_the_step_and_what_to_do():
  e = preemption.TrainingInterrupted(1234, signal.SIGTERM)
  assert str(e) == ('stopped by SIGTERM at step 1234 after writing its checkpoint; run the '
                    'same command again to resume')


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_two_processes_stop_at_the_same_step(tmp_path, signum):
  """A signal to one process of a jax.distributed job stops both at one common step."""
  port, env = str(_free_port()), {**os.environ, 'PYTHONPATH': REPO}
  procs = [subprocess.Popen([sys.executable, os.path.join(REPO, 'tests', 'helpers', 'preemption_worker.py'),
                             str(i), port, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True) for i in (0, 1)]
  try:
    deadline = time.time() + 90
    while not all((tmp_path / f'ready-{i}').exists() for i in (0, 1)):
      assert time.time() < deadline and all(p.poll() is None for p in procs)
      time.sleep(0.1)
    time.sleep(0.5)
    procs[1].send_signal(signum)   # the slower process: the other one is steps ahead
    outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  assert [p.returncode for p in procs] == [0, 0]
  steps = {int(out.split()[2]) for out in outputs}
  assert len(steps) == 1 and steps.pop() > 1, outputs
  # A SIGINT travels to JAX's notifier as SIGTERM; the process that got it knows which.
  assert outputs[1].endswith(f'by {int(signum)}')
  assert outputs[0].endswith(f'by {int(signal.SIGTERM)}')
