"""runtime/orbax_logs.py: Orbax's logs of a failed checkpoint write (a full disk, a folder that
cannot be written, a path too long) are dropped, other logs are kept, and the closed-loop
errors and Orbax tracebacks that follow a failed write are dropped only once one was seen."""

import errno
import logging as pylogging

import pytest

from sparsediff_jax.runtime import orbax_logs

ORBAX_FILE = '/x/site-packages/orbax/checkpoint/_src/futures/future.py'


def _record(path, level, exc, message='background save failed'):
  info = (type(exc), exc, None) if exc else None
  return pylogging.LogRecord('absl', level, path, 1, message, (), info)


@pytest.mark.parametrize('failure', [
    OSError(errno.ENOSPC, 'No space left on device'),
    PermissionError(errno.EPERM, 'Operation not permitted'),
    OSError(errno.EROFS, 'Read-only file system'),
    # TensorStore keeps only the message
    ValueError('Error opening "zarr" driver: ... Failed to open: "/x/m.ocdbt": File name too '
               'long [tensorstore_spec=...]'),
])
def test_orbax_logs_of_a_failed_write_are_dropped_and_others_kept(failure, monkeypatch):
  monkeypatch.setattr(orbax_logs._DropOrbaxWriteFailure, 'seen_failure', False)
  assert orbax_logs._is_orbax_write_failure_log(_record(ORBAX_FILE, pylogging.ERROR, failure),
                                                False)
  assert not orbax_logs._is_orbax_write_failure_log(
      _record('/x/train.py', pylogging.ERROR, failure), False)
  other = RuntimeError('some bug')
  assert not orbax_logs._is_orbax_write_failure_log(
      _record(ORBAX_FILE, pylogging.ERROR, other), False)
  assert orbax_logs._is_orbax_write_failure_log(   # after a reported failure: dropped
      _record(ORBAX_FILE, pylogging.ERROR, other), True)
  assert orbax_logs._ORBAX_FILTER.filter(_record(ORBAX_FILE, pylogging.WARNING, None,
                                                 'a warning without a traceback'))


def test_closed_loop_errors_are_dropped_only_after_a_failed_write(monkeypatch):
  closed = RuntimeError('Event loop is closed')
  record = pylogging.LogRecord('concurrent.futures', pylogging.ERROR, '/x/_base.py', 1,
                               'exception calling callback', (), (RuntimeError, closed, None))
  monkeypatch.setattr(orbax_logs._DropOrbaxWriteFailure, 'seen_failure', False)
  assert orbax_logs._ORBAX_FILTER.filter(record)
  monkeypatch.setattr(orbax_logs._DropOrbaxWriteFailure, 'seen_failure', True)
  assert not orbax_logs._ORBAX_FILTER.filter(record)
