"""One training run per workdir: WORKDIR/.lock, taken before the run writes anything.

Two runs training into one workdir would interleave their checkpoints and metrics and each
resume from the other's steps. `hold(workdir)` refuses a second run with a WorkdirError
(exit code 2) naming the holder: host, PID, start time and command line.

Local disks: the lock is `fcntl.flock` on WORKDIR/.lock, held by an open file descriptor.
The kernel releases it when the process ends however it ends (SIGKILL and out-of-memory
kills included), so a lock can never outlive its run. The file also records who holds it;
a clean exit removes it. A file left behind by a killed run, its flock free, is taken over
with a warning naming the old holder.

NFS: Linux maps flock to POSIX byte-range locks kept by the server (NFSv4, or NFSv3 with
lockd), which work between hosts. Where the mount has no locking (`nolock`, or flock
failing with ENOLCK), and on remote paths (gs://...) where no lock exists at all, the lock
is ADVISORY: a file that the holder rewrites every HEARTBEAT_S seconds. It is taken over
as stale when its PID is no longer alive on this same host, or when it has not been
rewritten for STALE_AFTER_S seconds (short, so that a pod restarted after a preemption on
machines with new names waits at most that long, and is refused meanwhile). Its limits:
creation is not atomic on gs://, so two runs started within a second or two of each other
can both get it; a holder that is suspended (not killed) longer than STALE_AFTER_S loses it.

Multi-host runs: only process 0 takes the lock (it is the process that writes the run
record); the other processes are parts of the same run, and a second run is stopped by
process 0 of that run refusing to start.
"""

from absl import logging
import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time

from sparsediff_jax import errors

LOCK_NAME = '.lock'
HEARTBEAT_S = 30.0     # how often an advisory lock file is rewritten
STALE_AFTER_S = 120.0  # an advisory lock not rewritten for this long belongs to no one


def holder_record() -> dict:
  """Who this process is: host, PID, start time (ISO 8601, local time), command line."""
  return {'host': socket.gethostname(), 'pid': os.getpid(),
          'started': datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
          'argv': list(sys.argv), 'heartbeat': time.time()}


def describe(record: dict | None) -> str:
  """'host H, PID P, started T: COMMAND' of a lock record (None: unknown holder)."""
  if not record:
    return 'holder unknown (an empty or unreadable lock file)'
  command = ' '.join(str(a) for a in record.get('argv', []))
  return (f'host {record.get("host", "?")}, PID {record.get("pid", "?")}, started '
          f'{record.get("started", "?")}' + (f': {command}' if command else ''))


def _parse(text: str) -> dict | None:
  try:
    record = json.loads(text)
  except ValueError:
    return None
  return record if isinstance(record, dict) else None


def _pid_alive(pid) -> bool:
  try:
    os.kill(int(pid), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, TypeError):   # alive under another user, or garbled
    return True
  return True


def _in_use_error(workdir: str, record: dict | None) -> errors.WorkdirError:
  return errors.WorkdirError(
      f'--workdir={workdir} is in use by another run ({describe(record)}); wait for it to '
      'end or stop it, or choose another --workdir (if that run is dead, delete '
      f'{os.path.join(workdir, LOCK_NAME)})')


def _make_dirs(path: str) -> list[str]:
  """Creates `path` and its missing ancestors; returns those created, deepest first."""
  made = []
  while not os.path.exists(path):
    made.append(path)
    path = os.path.dirname(path)
  for directory in reversed(made):
    try:
      os.mkdir(directory)
    except FileExistsError:
      pass
  return made


class _LocalLock:
  """flock on a local (or lock-capable NFS) file; see the module docstring."""

  def __init__(self, workdir: str):
    self.workdir = workdir
    self.path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
    self.fd = None

  def acquire(self) -> None:
    while True:
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        record = _parse(_read_fd(fd))
        os.close(fd)
        raise _in_use_error(self.workdir, record) from None
      except OSError:
        os.close(fd)
        raise
      # The holder before us may have removed the file between our open and our flock: then
      # we hold a lock on a file no one else can see, and must start again on the new one.
      try:
        same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
      except FileNotFoundError:
        same = False
      if same:
        break
      os.close(fd)
    self.fd = fd
    old = _parse(_read_fd(fd))
    if old:
      logging.warning('taking over the lock %s left by a run that ended without releasing it '
                      '(%s)', self.path, describe(old))
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, json.dumps(holder_record()).encode(), 0)
      os.fsync(fd)
    except OSError:   # e.g. a full disk: no lock file is left behind
      self.release()
      raise

  def release(self) -> None:
    if self.fd is None:
      return
    try:   # removed while still held, so that no one can lock the file being removed
      os.unlink(self.path)
    except FileNotFoundError:
      pass
    finally:
      os.close(self.fd)
      self.fd = None


def _read_fd(fd: int) -> str:
  return os.pread(fd, 1 << 16, 0).decode('utf-8', 'replace')


class _AdvisoryLock:
  """A lock file rewritten every HEARTBEAT_S seconds, for gs:// and NFS without locking."""

  def __init__(self, workdir: str):
    from etils import epath   # local paths and gs:// alike
    self.workdir = workdir
    self.path = epath.Path(workdir) / LOCK_NAME
    self.record = None
    self._stop = threading.Event()
    self._thread = None

  def acquire(self) -> None:
    old = None
    if self.path.exists():
      old = _parse(self.path.read_text())
      if not self._is_stale(old):
        raise _in_use_error(self.workdir, old)
      logging.warning('taking over the stale lock %s (%s)', self.path, describe(old))
    self.record = holder_record()
    self.path.parent.mkdir(parents=True, exist_ok=True)
    self._write()
    self._thread = threading.Thread(target=self._beat, name='workdir-lock', daemon=True)
    self._thread.start()

  @staticmethod
  def _is_stale(record: dict | None) -> bool:
    if not record:
      return True
    if record.get('host') == socket.gethostname() and not _pid_alive(record.get('pid')):
      return True
    return time.time() - float(record.get('heartbeat', 0)) > STALE_AFTER_S

  def _write(self) -> None:
    """Replaces the file whole, so that a reader never sees half a record (and takes the
    lock for stale): an object store replaces objects whole; a file is renamed over."""
    from sparsediff_jax.runtime import atomic_io
    atomic_io.write_text(self.path, json.dumps(self.record))

  def _beat(self) -> None:
    while not self._stop.wait(HEARTBEAT_S):
      try:
        self.record['heartbeat'] = time.time()
        self._write()
      except Exception as e:  # noqa: BLE001 - a missed beat must not end the run
        logging.warning('cannot refresh the lock %s: %s', self.path, e)

  def release(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()
    try:
      if self.record and _parse(self.path.read_text()) == self.record:
        self.path.unlink()
    except Exception as e:  # noqa: BLE001 - the run's own outcome matters more
      logging.warning('cannot remove the lock %s: %s', self.path, e)


@contextlib.contextmanager
def hold(workdir: str, before_release=None):
  """Holds WORKDIR/.lock for the body; creates the workdir if needed.

  Raises errors.WorkdirError, changing nothing on disk, when another live run holds it.
  On exit (normal, exception, or a signal turned into one) `before_release()` runs if given
  (e.g. checkpoints.wait_for_saves, so that no write is in flight once the lock is free),
  then the lock is released and the directories this call created are removed again if
  they are still empty.
  """
  try:   # the first write of a run: a path the OS refuses (/proc/x, read-only) ends here
    made = [] if '://' in workdir else _make_dirs(os.path.abspath(workdir))
  except OSError as e:
    raise errors.WorkdirError(f'--workdir={workdir}: cannot create it ({_reason(e)}); '
                              'choose another --workdir') from e
  lock = _AdvisoryLock(workdir) if '://' in workdir else _LocalLock(workdir)
  try:
    try:
      lock.acquire()
    except OSError as e:
      if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        raise
      logging.warning('%s cannot be locked (%s); using an advisory lock file', workdir, e)
      lock = _AdvisoryLock(workdir)
      lock.acquire()
  except OSError as e:
    _remove_empty(made)
    if e.errno == errno.ENOSPC:   # as every full disk: exit code 1 (atomic_io.py)
      raise errors.DiskFullError(
          f'no space left on device (ENOSPC) writing {os.path.join(workdir, LOCK_NAME)}; '
          'nothing was written; free space there and run the same command again') from e
    raise errors.WorkdirError(f'--workdir={workdir}: cannot write its lock file {LOCK_NAME} '
                              f'({_reason(e)}); choose another --workdir or fix its '
                              'permissions') from e
  except BaseException:
    _remove_empty(made)
    raise
  # Ctrl-C or SIGTERM that ends the process at once (interrupts.py) removes the lock too.
  from sparsediff_jax.runtime import interrupts
  forget = interrupts.at_interrupt(lambda: (lock.release(), _remove_empty(made)))
  try:
    yield lock
  finally:
    forget()
    try:
      if before_release is not None:
        before_release()
    finally:
      lock.release()
    _remove_empty(made)


def _reason(error: OSError) -> str:
  where = f' at {error.filename}' if error.filename else ''
  return f'{error.strerror or error}{where}'


def _remove_empty(directories: list[str]) -> None:
  for directory in directories:   # deepest first
    try:
      os.rmdir(directory)
    except OSError:   # not empty (the run wrote something) or gone
      return
