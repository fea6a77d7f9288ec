"""The FID's matrix square root runs where a signal or a time limit can end it (sqrtm.py):
scipy's sqrtm holds the GIL, and on a NaN it never returns."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from sparsediff_jax.metrics.fid import fid, sqrtm
from tests.helpers import REPO


def _product(d: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  a, b = rng.standard_normal((d, 2 * d)), rng.standard_normal((d, 2 * d))
  return (a @ a.T / (2 * d)) @ (b @ b.T / (2 * d))


def _children(pid: int) -> list[int]:
  out = []
  for task in os.listdir(f'/proc/{pid}/task'):
    with open(f'/proc/{pid}/task/{task}/children') as f:
      out += [int(c) for c in f.read().split()]
  return out


def _alive(pid: int) -> bool:
  try:
    with open(f'/proc/{pid}/stat') as f:
      return f.read().split(')')[-1].split()[0] != 'Z'
  except FileNotFoundError:
    return False


def test_the_child_process_gives_the_in_process_result():
  product = _product(40)
  here = sqrtm.sqrtm_trace(product)
  there = sqrtm.bounded_sqrtm_trace(product, timeout=120, in_process_max_dim=8)
  assert there[0] == pytest.approx(here[0], rel=1e-12) and there[1] < 1e-8


def test_a_square_root_past_its_time_limit_is_killed_and_reported():
  hangs = _product(64)
  hangs[0, 0] = np.nan   # scipy's sqrtm never returns on this
  with pytest.raises(sqrtm.SqrtmTimeout, match=r'64 x 64 product did not finish in 3 s'):
    sqrtm.bounded_sqrtm_trace(hangs, timeout=3, in_process_max_dim=8)
  assert not [c for c in _children(os.getpid()) if _alive(c)]   # the child is gone


def test_frechet_distance_refuses_nan_before_any_square_root(monkeypatch):
  monkeypatch.setattr(sqrtm, 'bounded_sqrtm_trace', lambda *a, **k: pytest.fail('computed'))
  sigma = np.eye(3)
  sigma[1, 2] = np.inf
  with pytest.raises(ValueError, match=r'sigma2 holds NaN or inf values \(1 of 9\)'):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), sigma)
  with pytest.raises(ValueError, match='mu1 holds NaN'):
    fid.frechet_distance(np.full(3, np.nan), np.eye(3), np.zeros(3), np.eye(3))


def test_the_time_limit_is_one_error_line_of_the_run(monkeypatch):
  monkeypatch.setenv(sqrtm.TIMEOUT_ENV, '7')

  def too_slow(product, timeout=None):
    raise sqrtm.SqrtmTimeout(f'the matrix square root of a 3 x 3 product did not finish in '
                             f'{sqrtm.timeout_seconds():g} s')
  monkeypatch.setattr(sqrtm, 'bounded_sqrtm_trace', too_slow)
  with pytest.raises(fid.SqrtmTimeoutError, match=r'did not finish in 7 s \(the limit: '
                     r'\$SPARSEDIFF_SQRTM_TIMEOUT_S, now 7 s\)') as e:
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(3))
  from sparsediff_jax import errors
  assert isinstance(e.value, errors.RunFailedError)   # exit 1, one line
  for bad in ('abc', '-1', 'inf', ''):
    monkeypatch.setenv(sqrtm.TIMEOUT_ENV, bad)
    assert sqrtm.timeout_seconds() == sqrtm.DEFAULT_TIMEOUT_S


# A process as the command line runs: the signal watcher installed, then a square root
# that never ends (NaN, bypassing frechet_distance's check).
_HANG = '''
import sys
from sparsediff_jax.runtime import interrupts
interrupts.install()
import numpy as np
from sparsediff_jax.metrics.fid import sqrtm
a = np.random.default_rng(0).standard_normal((200, 200))
a[0, 0] = np.nan
print('computing', flush=True)
sqrtm.bounded_sqrtm_trace(a, timeout=600)
'''


@pytest.mark.slow   # a subprocess
@pytest.mark.parametrize('signum', [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_the_process_mid_square_root(tmp_path, signum):
  proc = subprocess.Popen([sys.executable, '-c', _HANG], cwd=REPO, text=True,
                          env={**os.environ, 'PYTHONPATH': REPO}, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  try:
    assert proc.stdout.readline().strip() == 'computing'
    child = None
    for _ in range(600):   # the child started and is inside scipy's sqrtm
      kids = _children(proc.pid)
      if kids:
        child = kids[0]
        break
      time.sleep(0.05)
    assert child is not None
    time.sleep(2)
    proc.send_signal(signum)
    rc = proc.wait(timeout=60)   # without the child process: never (until SIGKILL)
    stderr = proc.stderr.read()
  finally:
    if proc.poll() is None:
      proc.kill()
  assert rc == 128 + signum, stderr
  assert stderr.strip().splitlines()[-1].startswith(
      f'interrupted by {signal.Signals(signum).name}')
  for _ in range(100):   # the child dies with its parent (PR_SET_PDEATHSIG)
    if not _alive(child):
      break
    time.sleep(0.1)
  assert not _alive(child)
