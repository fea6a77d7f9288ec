"""Keeps Orbax's log noise about a failed checkpoint write, and its read-only notice, off
the console.

When an asynchronous checkpoint write fails (ENOSPC, or another write failure: permissions,
an immutable folder, a path too long: atomic_io.write_failure_cause), checkpoints.py reports
it once, as a DiskFullError or CheckpointWriteError. Orbax itself logs the failure from each
writer thread it passes through (with tracebacks), asyncio logs the failed tasks nobody
retrieved, and once Orbax has closed its event loop the other writes of the same save fail to
hand back their results ('Event loop is closed', logged by concurrent.futures or raised where
nobody can catch it, so Python prints it as an unraisable error). Once the failure has been
reported, the writer threads that checkpoints.py releases fail too, and log that; Python
warns at exit about their coroutines never awaited. Everything here drops exactly those
records, and nothing else.
"""

from absl import logging
import contextlib
import logging as pylogging
import sys

import warnings

from sparsediff_jax.runtime.atomic_io import write_failure_cause


@contextlib.contextmanager
def without_read_only_notice():
  """Drops Orbax's 'Given directory is read only' warning, logged for every reader."""
  drop = lambda record: 'Given directory is read only' not in record.getMessage()
  logger = pylogging.getLogger('absl')
  logger.addFilter(drop)
  try:
    yield
  finally:
    logger.removeFilter(drop)


def _is_orbax_write_failure_log(record: pylogging.LogRecord, reported: bool) -> bool:
  """An error Orbax logs, with a traceback, from each thread a write failure passes through
  (once a failure was reported: any error Orbax logs with a traceback)."""
  if 'orbax' not in record.pathname or record.levelno < pylogging.WARNING:
    return False
  if record.exc_info and record.exc_info[1] is not None:
    if reported or write_failure_cause(record.exc_info[1]) is not None:
      return True
  return write_failure_cause(Exception(record.getMessage())) is not None


def _is_closed_loop_aftermath(record: pylogging.LogRecord) -> bool:
  """When a write fails, Orbax closes its event loop while other writes of the same save are
  still running in worker threads; each of them then fails to hand back its result and
  concurrent.futures logs 'Event loop is closed' with a traceback."""
  error = record.exc_info[1] if record.exc_info else None
  return (record.name == 'concurrent.futures' and isinstance(error, RuntimeError)
          and 'Event loop is closed' in str(error))


def _is_unretrieved_failed_task(record: pylogging.LogRecord) -> bool:
  """asyncio's 'Task/Future exception was never retrieved' for a write that failed, logged
  with a traceback when the failed save's tasks are collected (often after the error line)."""
  if record.name != 'asyncio':
    return False
  error = record.exc_info[1] if record.exc_info else None
  return ((error is not None and write_failure_cause(error) is not None)
          or write_failure_cause(Exception(record.getMessage())) is not None)


class _DropOrbaxWriteFailure(pylogging.Filter):
  """Drops Orbax's logs of a failed write, and the closed-loop errors that follow a failed
  write once one has been seen: checkpoints.py reports the failure, once."""

  seen_failure = False

  def filter(self, record):
    reported = type(self).seen_failure
    if _is_orbax_write_failure_log(record, reported) or _is_unretrieved_failed_task(record):
      type(self).seen_failure = True
      return False
    return not (reported and _is_closed_loop_aftermath(record))


_ORBAX_FILTER = _DropOrbaxWriteFailure()


def quiet_write_failure_logs() -> None:
  """Installs _DropOrbaxWriteFailure where those logs pass (absl's logger, for Orbax's own, and
  absl's console handler, for concurrent.futures'), and drops the 'Event loop is closed'
  errors that a failed write's worker threads raise where nobody can catch them (Python
  prints those unraisable errors as bare tracebacks). Idempotent."""
  for target in (pylogging.getLogger('absl'), pylogging.getLogger('concurrent.futures'),
                 pylogging.getLogger('asyncio'), logging.get_absl_handler()):
    if _ORBAX_FILTER not in target.filters:
      target.addFilter(_ORBAX_FILTER)
  if sys.unraisablehook is not _drop_closed_loop_unraisable:
    global _previous_unraisablehook
    _previous_unraisablehook = sys.unraisablehook
    sys.unraisablehook = _drop_closed_loop_unraisable


_previous_unraisablehook = sys.unraisablehook


def note_write_failure() -> None:
  """From now on, drops Orbax's errors and the closed-loop errors that follow a failed write,
  and Python's exit-time warnings about the failed save's coroutines never awaited."""
  _DropOrbaxWriteFailure.seen_failure = True
  warnings.filterwarnings('ignore', message=r'coroutine .* was never awaited',
                          category=RuntimeWarning)


def _drop_closed_loop_unraisable(unraisable) -> None:
  """sys.unraisablehook: passes everything on except 'Event loop is closed' RuntimeErrors
  (the aftermath of a failed asynchronous checkpoint write, reported once as an error)."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and 'Event loop is closed' in str(error):
    return
  _previous_unraisablehook(unraisable)
