"""Trace of a matrix square root, in a child process that a signal or a time limit can end.

Why a child process: scipy.linalg.sqrtm (1.16+) runs in C while HOLDING the GIL: a
2048 x 2048 product takes long, and one with a NaN never ends. While it runs no Python
thread can run, so neither the command line's signal watcher (runtime/interrupts.py) nor a
watchdog thread nor a timeout can act: Ctrl-C and SIGTERM were ignored until SIGKILL. The
parent instead waits on a pipe (a wait that releases the GIL), so its watcher ends it at
once on a signal, and a time limit kills the child. The child takes the default action for
SIGINT and SIGTERM (a terminal's Ctrl-C reaches the whole process group), asks Linux to
SIGKILL it when its parent dies (PR_SET_PDEATHSIG: the parent may end with os._exit) and
sets an alarm past the parent's limit as a last bound where that is unavailable. A thread
pool or NumPy's eigendecompositions (which release the GIL) would keep the parent free but
could not be stopped on a timeout, and they change the numbers that pytorch-fid reports.

Small matrices (up to IN_PROCESS_MAX_DIM) take milliseconds and are computed in process.

Run as a program (`python sqrtm.py PARENT_PID ALARM_S`): reads an .npy matrix on stdin,
writes the .npy [trace, residual] on stdout. Imports only NumPy and SciPy.
"""

import io
import os
import signal
import subprocess
import sys
import warnings

import numpy as np

IN_PROCESS_MAX_DIM = 128   # larger products go to a child process
TIMEOUT_ENV = 'SPARSEDIFF_SQRTM_TIMEOUT_S'
DEFAULT_TIMEOUT_S = 1800.0   # 2048 x 2048 takes 10-60 s on 2 CPU cores


class SqrtmTimeout(RuntimeError):
  """The square root did not finish within its time limit (the child was killed)."""


def timeout_seconds() -> float:
  """The time limit: $SPARSEDIFF_SQRTM_TIMEOUT_S (seconds > 0), else DEFAULT_TIMEOUT_S."""
  value = os.environ.get(TIMEOUT_ENV, '')
  try:
    seconds = float(value)
  except ValueError:
    return DEFAULT_TIMEOUT_S
  return seconds if 0 < seconds < float('inf') else DEFAULT_TIMEOUT_S


def sqrtm_trace(product: np.ndarray) -> tuple[float, float]:
  """Trace of the principal square root of `product`, and the relative residual.

  The residual ||X X - A||_F / ||A||_F is what the deprecated `disp=False` returned.
  """
  import scipy.linalg   # here: importing it costs a training start about 0.4 s
  with warnings.catch_warnings():
    # scipy warns on singular input; the residual below is our (quantitative) check.
    warnings.simplefilter('ignore', scipy.linalg.LinAlgWarning)
    root = scipy.linalg.sqrtm(product)
  norm = np.linalg.norm(product)
  residual = np.linalg.norm(root @ root - product) / norm if norm > 0 else 0.0
  if np.iscomplexobj(root):
    # Tiny imaginary parts come from rounding on a (near-)singular product; large ones
    # mean the square root is not trustworthy.
    imag = np.max(np.abs(np.diagonal(root).imag)) if root.size else 0.0
    if imag > 1e-3:
      return float('nan'), float('inf')
    root = root.real
  return float(np.trace(root)), float(residual)


def bounded_sqrtm_trace(product: np.ndarray, timeout: float | None = None,
                        in_process_max_dim: int = IN_PROCESS_MAX_DIM) -> tuple[float, float]:
  """sqrtm_trace(product), in a child process above in_process_max_dim rows.

  Raises SqrtmTimeout after `timeout` seconds (default: timeout_seconds()), RuntimeError
  when the child fails. The child never outlives the call (nor the calling thread, on Linux).
  """
  if product.shape[0] <= in_process_max_dim:
    return sqrtm_trace(product)
  timeout = timeout_seconds() if timeout is None else timeout
  buffer = io.BytesIO()
  np.save(buffer, np.ascontiguousarray(product, np.float64))
  child = subprocess.Popen(
      [sys.executable, os.path.abspath(__file__), str(os.getpid()), str(int(timeout) + 30)],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  try:
    out, err = child.communicate(buffer.getvalue(), timeout=timeout)
  except subprocess.TimeoutExpired:
    raise SqrtmTimeout(f'the matrix square root of a {product.shape[0]} x '
                       f'{product.shape[1]} product did not finish in {timeout:g} s') from None
  finally:   # a timeout, or an interrupt (KeyboardInterrupt) in library use
    if child.poll() is None:
      child.kill()
      child.wait()
  if child.returncode != 0:
    last = (err.decode(errors='replace').strip().splitlines() or [''])[-1]
    raise RuntimeError(f'the matrix square root failed in its child process (exit '
                       f'{child.returncode}: {last})')
  trace, residual = np.load(io.BytesIO(out))
  return float(trace), float(residual)


def _die_with_parent(parent: int, alarm_s: int) -> None:
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, signal.SIG_DFL)
  if sys.platform.startswith('linux'):
    import ctypes
    try:
      ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
      pass
  if os.getppid() != parent:   # the parent died before prctl
    os._exit(1)
  signal.alarm(alarm_s)   # default action: the process ends, even inside C code


def _main(argv) -> None:
  _die_with_parent(int(argv[1]), int(argv[2]))
  product = np.load(io.BytesIO(sys.stdin.buffer.read()))
  out = io.BytesIO()
  np.save(out, np.array(sqrtm_trace(product), np.float64))
  sys.stdout.buffer.write(out.getvalue())
  sys.stdout.buffer.flush()


if __name__ == '__main__':
  _main(sys.argv)
