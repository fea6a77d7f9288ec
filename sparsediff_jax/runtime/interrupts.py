"""Ctrl-C (SIGINT) and SIGTERM end the command line at once, in any mode and phase, with one
line and exit code 128 + N (130, 143); the training loop's clean stop (preemption.py) takes
over while it listens.

Why not Python's KeyboardInterrupt: a Python signal handler runs only between bytecodes of
the main thread, so during an XLA compilation or an initialisation the exception is raised
wherever the interpreter resumes: a long traceback, or a segmentation fault when it unwinds
through JAX while compiler threads are still running (exit 139 in `--mode=sample`).
Instead, `install` points the signal's wakeup file descriptor at a pipe: CPython's C-level
handler writes the signal number there at once, even while the main thread is inside XLA,
and a watcher thread reads it, writes the line with a bare write(2) and ends the process
with os._exit (no unwinding, no teardown of live threads).

A Python handler installed later by someone else (preemption.StopRequest during training)
means "I handle this one": the watcher then leaves the first signal to it, and only a second
SIGINT (the user insisting) ends the process at once. Files the process was writing are left
as an interrupted write leaves them, except what was registered with `at_interrupt`: those
clean-ups (the provisional run record, the workdir lock) run first, newest first, for at most
CLEANUP_S seconds in all. Imports nothing heavy: installed before JAX.
"""

import os
import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)
CLEANUP_S = 5.0   # the clean-ups' time before the process ends anyway (a hung remote write)
_deferred: dict[int, int] = {}   # signal -> how many were left to another handler
_installed = False
_cleanups: list = []   # fn() run before the process ends on a signal, newest first


def at_interrupt(fn):
  """Runs fn() if a signal ends the process at once (not a stop the training loop handles);
  returns the function that unregisters it."""
  _cleanups.append(fn)
  return lambda: _cleanups.remove(fn) if fn in _cleanups else None


def _run_cleanups() -> None:
  def run_all():
    for fn in reversed(list(_cleanups)):
      try:
        fn()
      except BaseException:  # noqa: BLE001 - the process ends anyway
        pass
  worker = threading.Thread(target=run_all, name='interrupt-cleanup', daemon=True)
  worker.start()
  worker.join(CLEANUP_S)


def _wake_only(signum, frame):
  """The Python-level handler while only the watcher acts: nothing (it has the signal)."""


def _message(signum: int) -> bytes:
  name = signal.Signals(signum).name
  how = ' (Ctrl-C)' if signum == signal.SIGINT else ''
  return (f'interrupted by {name}{how}: stopped at once; rerun the same command to start '
          'again (training resumes from its newest checkpoint)\n').encode()


def _watch(read_fd: int) -> None:
  while True:
    data = os.read(read_fd, 1)
    if not data:
      return
    signum = data[0]
    if signum not in HANDLED:
      continue
    if signal.getsignal(signum) is not _wake_only:   # another handler listens (training)
      _deferred[signum] = _deferred.get(signum, 0) + 1
      if not (signum == signal.SIGINT and _deferred[signum] > 1):
        continue
    try:
      _run_cleanups()
      os.write(2, _message(signum))
    finally:
      os._exit(128 + signum)


def install() -> bool:
  """Routes SIGINT and SIGTERM to the watcher (call from the main thread, before JAX);
  False where that cannot be done (not the main thread), leaving Python's defaults."""
  global _installed
  if _installed:
    return True
  if threading.current_thread() is not threading.main_thread():
    return False
  read_fd, write_fd = os.pipe()
  os.set_blocking(write_fd, False)
  for signum in HANDLED:
    signal.signal(signum, _wake_only)
  signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
  threading.Thread(target=_watch, args=(read_fd,), name='signal-watcher', daemon=True).start()
  _installed = True
  return True


def watching() -> bool:
  """Whether the watcher ends the process on a repeated SIGINT (see preemption.py)."""
  return _installed
