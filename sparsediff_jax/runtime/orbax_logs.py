"""Keeps Orbax's log noise about a full disk, and its read-only notice, off the console.

When an asynchronous checkpoint write hits ENOSPC, checkpoints.py reports it once, as a
DiskFullError. Orbax itself logs the failure from each writer thread it passes through (with
tracebacks), asyncio logs the failed tasks nobody retrieved, and once Orbax has closed its event
loop the other writes of the same save fail to hand back their results ('Event loop is closed',
logged by concurrent.futures or raised where nobody can catch it, so Python prints it as an
unraisable error). Everything here drops exactly those records, and nothing else.
"""

from absl import logging
import contextlib
import logging as pylogging
import sys

from sparsediff_jax.runtime.atomic_io import disk_full_cause


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


def _is_orbax_disk_full_log(record: pylogging.LogRecord) -> bool:
  """An error Orbax logs, with a traceback, from each thread an ENOSPC passes through."""
  if 'orbax' not in record.pathname or record.levelno < pylogging.WARNING:
    return False
  if record.exc_info and record.exc_info[1] is not None:
    if disk_full_cause(record.exc_info[1]) is not None:
      return True
  return 'No space left on device' in record.getMessage()


def _is_closed_loop_aftermath(record: pylogging.LogRecord) -> bool:
  """When a write fails, Orbax closes its event loop while other writes of the same save are
  still running in worker threads; each of them then fails to hand back its result and
  concurrent.futures logs 'Event loop is closed' with a traceback."""
  error = record.exc_info[1] if record.exc_info else None
  return (record.name == 'concurrent.futures' and isinstance(error, RuntimeError)
          and 'Event loop is closed' in str(error))


def _is_unretrieved_disk_full_task(record: pylogging.LogRecord) -> bool:
  """asyncio's 'Task exception was never retrieved' for a write that hit ENOSPC, logged with
  a traceback when the failed save's tasks are collected (often after the error line)."""
  if record.name != 'asyncio':
    return False
  error = record.exc_info[1] if record.exc_info else None
  return ((error is not None and disk_full_cause(error) is not None)
          or 'No space left on device' in record.getMessage())


class _DropOrbaxDiskFull(pylogging.Filter):
  """Drops Orbax's logs of an ENOSPC, and the closed-loop errors that follow a failed write
  once one has been seen: DiskFullError reports the failure, once."""

  seen_disk_full = False

  def filter(self, record):
    if _is_orbax_disk_full_log(record) or _is_unretrieved_disk_full_task(record):
      type(self).seen_disk_full = True
      return False
    return not (type(self).seen_disk_full and _is_closed_loop_aftermath(record))


_ORBAX_FILTER = _DropOrbaxDiskFull()


def quiet_disk_full_logs() -> None:
  """Installs _DropOrbaxDiskFull where those logs pass (absl's logger, for Orbax's own, and
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


def note_disk_full() -> None:
  """From now on, drops the closed-loop errors that follow a failed write."""
  _DropOrbaxDiskFull.seen_disk_full = True


def _drop_closed_loop_unraisable(unraisable) -> None:
  """sys.unraisablehook: passes everything on except 'Event loop is closed' RuntimeErrors
  (the aftermath of a failed asynchronous checkpoint write, reported once as an error)."""
  error = unraisable.exc_value
  if isinstance(error, RuntimeError) and 'Event loop is closed' in str(error):
    return
  _previous_unraisablehook(unraisable)
