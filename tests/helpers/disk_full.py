"""A disk that fills up under chosen files, for tests: `fill_up(pattern)` makes every file
opened for writing with os.fdopen (atomic_io's temporary files) or open (the TensorBoard
events file) whose path contains `pattern` take half of the first write and then fail with
ENOSPC, as a full disk does.

As a program, `python disk_full.py PATTERN ARGS...` runs the command line
(sparsediff_jax.main) with ARGS on such a disk.
"""

import builtins
import errno
import os
import sys

_fdopen = os.fdopen
_open = builtins.open


class _FillingFile:
  def __init__(self, file):
    self._file = file

  def write(self, data):
    self._file.write(data[:len(data) // 2])
    self._file.flush()
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def __getattr__(self, name):
    return getattr(self._file, name)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self._file.close()


def fill_up(pattern: str, setattr_fn=None) -> None:
  """Patches os.fdopen (through `setattr_fn(os, 'fdopen', f)`, e.g. pytest's monkeypatch)."""

  def fdopen(fd, *args, **kwargs):
    file = _fdopen(fd, *args, **kwargs)
    if pattern in os.readlink(f'/proc/self/fd/{fd}'):
      return _FillingFile(file)
    return file

  def open_(file, mode='r', *args, **kwargs):
    opened = _open(file, mode, *args, **kwargs)
    if any(c in mode for c in 'wax+') and pattern in os.fspath(file):
      return _FillingFile(opened)
    return opened

  (setattr_fn or setattr)(os, 'fdopen', fdopen)
  (setattr_fn or setattr)(builtins, 'open', open_)


if __name__ == '__main__':
  fill_up(sys.argv.pop(1))
  from sparsediff_jax import main
  sys.argv[0] = main.__file__
  main.run()
