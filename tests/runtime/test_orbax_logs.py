"""runtime/orbax_logs.py: Orbax's logs of a full disk are dropped, other logs are kept, and the
closed-loop errors that follow a failed write are dropped only once a full disk was seen."""

import errno
import logging as pylogging

from sparsediff_jax.runtime import orbax_logs


def test_orbax_logs_of_a_full_disk_are_dropped_and_others_kept():
  def record(path, level, exc):
    info = (type(exc), exc, None) if exc else None
    return pylogging.LogRecord('absl', level, path, 1, 'background save failed', (), info)
  enospc = OSError(errno.ENOSPC, 'No space left on device')
  orbax_file = '/x/site-packages/orbax/checkpoint/_src/futures/future.py'
  assert orbax_logs._is_orbax_disk_full_log(record(orbax_file, pylogging.ERROR, enospc))
  assert not orbax_logs._is_orbax_disk_full_log(
      record(orbax_file, pylogging.ERROR, OSError(errno.EIO, 'I/O')))
  assert not orbax_logs._is_orbax_disk_full_log(record('/x/train.py', pylogging.ERROR, enospc))


def test_closed_loop_errors_are_dropped_only_after_a_full_disk(monkeypatch):
  closed = RuntimeError('Event loop is closed')
  record = pylogging.LogRecord('concurrent.futures', pylogging.ERROR, '/x/_base.py', 1,
                               'exception calling callback', (), (RuntimeError, closed, None))
  monkeypatch.setattr(orbax_logs._DropOrbaxDiskFull, 'seen_disk_full', False)
  assert orbax_logs._ORBAX_FILTER.filter(record)
  monkeypatch.setattr(orbax_logs._DropOrbaxDiskFull, 'seen_disk_full', True)
  assert not orbax_logs._ORBAX_FILTER.filter(record)
