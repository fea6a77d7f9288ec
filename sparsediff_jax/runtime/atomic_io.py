"""Every file the project writes goes through here: it appears whole or not at all.

Local disk: the bytes go to a temporary file in the target's own folder (`.NAME.XXXX.tmp`),
are flushed to disk, and the file is renamed over the target, so a reader (or a run killed
mid-write) sees the old file or the new one, never half of one. Remote paths (gs://... and
whatever else etils.epath serves): one upload through epath; an object store publishes an
object whole when its upload ends, which is the same promise (a rename there is a copy).

Appends (`append_line`, for WORKDIR/metrics.jsonl) write one whole line in one write(); if
that fails or is cut short, the file is truncated back to its size before, so no half line
stays. A remote file cannot be appended to: its new contents are uploaded whole.

A full disk (ENOSPC) becomes one errors.DiskFullError naming the file, with the previous
version of the file untouched and no temporary file left. Reading goes through epath too,
so that every path works the same on local disk and gs://.
"""

import contextlib
import errno
import io
import json
import os
import tempfile

from etils import epath

from sparsediff_jax import errors


def is_remote(path) -> bool:
  """Whether `path` is a URL (gs://...), not a local path."""
  return '://' in os.fspath(path)


_INTACT = 'the previous version of that file is intact'


def disk_full_error(path, cause: OSError, state: str = _INTACT) -> errors.DiskFullError:
  return errors.DiskFullError(f'no space left on device (ENOSPC) writing {path}; {state}; '
                              'free space there and run the same command again')


@contextlib.contextmanager
def reporting_disk_full(path, state: str = _INTACT):
  """Turns an ENOSPC raised in the body into one DiskFullError naming `path` and, in
  `state`, what is left of the file."""
  try:
    yield
  except OSError as e:
    if e.errno == errno.ENOSPC:
      raise disk_full_error(path, e, state) from e
    raise


def disk_full_cause(error: BaseException) -> BaseException | None:
  """The ENOSPC error in `error`, its causes and contexts (and exception groups), or None.

  Orbax re-raises an asynchronous writer's error wrapped in other types, sometimes keeping
  only the message, so the text 'No space left on device' counts too.
  """
  return _cause_in_chain(error, (errno.ENOSPC,), ('No space left on device', 'ENOSPC'))


def _cause_in_chain(error: BaseException, errnos, texts) -> BaseException | None:
  """The first error in `error`'s chain (causes, contexts, exception groups) that is an
  OSError with one of `errnos` or whose message holds one of `texts`; else None."""
  stack, seen = [error], set()
  while stack:
    e = stack.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in errnos:
      return e
    if any(text in str(e) for text in texts):
      return e
    stack += [e.__cause__, e.__context__, *getattr(e, 'exceptions', ())]
  return None


# Why a write into a folder fails when the disk is not full: permissions, an immutable or
# read-only folder, a path over the system's limits, a file where a folder should be, a
# folder removed under the writer, a failing device. Orbax's array writer (TensorStore)
# keeps only the message, so each is recognised by its strerror text too.
WRITE_FAILURES = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENAMETOOLONG, errno.ENOTDIR,
                  errno.EEXIST, errno.ENOENT, errno.EIO, errno.EDQUOT, errno.ELOOP)


def write_failure_cause(error: BaseException) -> BaseException | None:
  """Like disk_full_cause, for ENOSPC and the errnos in WRITE_FAILURES: the error in
  `error`'s chain that says why a write failed, or None."""
  errnos = (errno.ENOSPC, *WRITE_FAILURES)
  return _cause_in_chain(error, errnos, [os.strerror(n) for n in errnos])


def failure_reason(cause: BaseException) -> str:
  """The strerror text of a write_failure_cause ('Permission denied', ...)."""
  if isinstance(cause, OSError) and cause.strerror:
    return cause.strerror
  for n in (errno.ENOSPC, *WRITE_FAILURES):
    if os.strerror(n) in str(cause):
      return os.strerror(n)
  return type(cause).__name__


def make_dirs(path) -> None:
  """Creates the folder `path` and its parents (local or remote); no-op when it exists."""
  with reporting_disk_full(path):
    epath.Path(path).mkdir(parents=True, exist_ok=True)


def write_bytes(path, data: bytes) -> None:
  """Replaces `path` with `data` atomically, creating its folder."""
  path = os.fspath(path)
  folder = os.path.dirname(path)
  if folder:
    make_dirs(folder)
  with reporting_disk_full(path):
    if is_remote(path):
      epath.Path(path).write_bytes(data)
      return
    fd, tmp = tempfile.mkstemp(dir=folder or '.', prefix=f'.{os.path.basename(path)}.',
                               suffix='.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o644 & ~_umask())
      os.replace(tmp, path)
    except BaseException:
      with contextlib.suppress(OSError):
        os.remove(tmp)
      raise


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


def write_text(path, text: str) -> None:
  write_bytes(path, text.encode('utf-8'))


def write_json(path, obj, **dumps_kwargs) -> None:
  """`obj` as JSON (indent=2 unless given), ending in a newline."""
  dumps_kwargs.setdefault('indent', 2)
  write_text(path, json.dumps(obj, **dumps_kwargs) + '\n')


def save_npz(path, **arrays) -> None:
  """numpy.savez of `arrays` to `path` (which should end in .npz), atomically."""
  import numpy as np
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  write_bytes(path, buffer.getvalue())


def save_figure(fig, path, **savefig_kwargs) -> None:
  """A matplotlib figure as PNG, atomically."""
  buffer = io.BytesIO()
  fig.savefig(buffer, format='png', **savefig_kwargs)
  write_bytes(path, buffer.getvalue())


def append_line(path, line: str) -> None:
  """Appends `line` (a newline is added) whole, or leaves the file as it was."""
  data = (line.rstrip('\n') + '\n').encode('utf-8')
  path = os.fspath(path)
  if is_remote(path):
    write_bytes(path, read_bytes(path, missing=b'') + data)
    return
  with reporting_disk_full(path):
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
      size = os.fstat(fd).st_size
      try:
        written = os.write(fd, data)
        if written != len(data):   # a short write: the disk filled up under it
          raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
      except BaseException:
        os.ftruncate(fd, size)
        raise
    finally:
      os.close(fd)


def read_bytes(path, *, missing=None) -> bytes | None:
  """The bytes of `path`, or `missing` when it does not exist (or a parent is a file)."""
  try:
    return epath.Path(path).read_bytes()
  except (FileNotFoundError, NotADirectoryError):
    return missing


def read_text(path, *, missing=None) -> str | None:
  data = read_bytes(path)
  return missing if data is None else data.decode('utf-8')


def exists(path) -> bool:
  return epath.Path(path).exists()


def try_writing_in(folder: str) -> None:
  """Raises the OSError that writing in the local `folder` (or, where it does not exist yet,
  in its nearest existing ancestor) would meet: a read-only mount, an immutable or
  unwritable folder, a file where a folder should be (NotADirectoryError naming the file).
  A mkdir and rmdir of a probe, so it also holds for root, whom permissions do not stop."""
  existing = os.path.abspath(folder)
  while not os.path.lexists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), existing)
  try:
    os.rmdir(tempfile.mkdtemp(prefix='.write-check-', dir=existing))
  except OSError as e:   # named by the folder, not by the probe's random name
    raise type(e)(e.errno, e.strerror, existing) from None


def check_can_write(mode: str, folders) -> None:
  """WorkdirError (bad input, exit 2) unless files can be written in each of `folders`
  (try_writing_in), for the modes that read a run, before any sampling. Remote folders
  are checked by their first write."""
  for folder in folders:
    if is_remote(folder):
      continue
    try:
      try_writing_in(folder)
    except OSError as e:
      where = f'{e.filename} is a file' if e.errno == errno.ENOTDIR else e.filename
      raise errors.WorkdirError(
          f'--mode={mode} cannot write its outputs in {folder} ({e.strerror}: {where}); '
          'make the workdir writable (or read a writable copy of the run) and run again'
      ) from e


def unused_prefix(prefix: str, also=()) -> str:
  """PREFIX, or PREFIX-2, PREFIX-3, ... the first for which no PREFIX.png/.npz (and no
  A.json, A-2.json, ... for each prefix A in `also`) exists: a rerun with other sampling
  settings never overwrites an earlier output. Chosen by looking: two processes that ask
  at once get the same answer (reserved_prefix reserves it)."""
  outputs = _outputs(prefix, also)
  suffix, k = '', 1
  while _taken(outputs, suffix):
    k += 1
    suffix = f'-{k}'
  return prefix + suffix


def _outputs(prefix: str, also) -> list[tuple[str, tuple[str, ...]]]:
  return [(prefix, ('.png', '.npz')), *((a, ('.json',)) for a in also)]


def _taken(outputs, suffix: str) -> bool:
  return any(exists(p + suffix + ext) for p, exts in outputs for ext in exts)


RESERVED = '.reserved'   # the ending of a reservation marker (.NAME-2.reserved)


@contextlib.contextmanager
def reserved_prefix(prefix: str, also=(), *, reserve: bool = True, tidy=()):
  """unused_prefix's answer, reserved for this process while the body runs.

  A marker file `.NAME{suffix}.reserved` beside PREFIX, created with O_CREAT | O_EXCL,
  makes every other process asking at the same time take another suffix; the suffix is
  looked at again once the marker is held (a process that just finished has written its
  outputs before it removed its marker), and the marker is removed when the body ends,
  through a handle on the folder, so also from where the folder was moved meanwhile (a
  run set aside by --start_over). So concurrent readers never share an output name. A marker left by a killed process
  only makes later ones skip that suffix.

  reserve: False (a process other than 0, which writes nothing) or a remote PREFIX (no
  exclusive create on object stores): chosen by looking, as unused_prefix.
  tidy: folders that the body may create; any of them that did not exist before and is
  empty when the body fails is removed (a full disk leaves no empty folder behind).
  """
  if not reserve or is_remote(prefix):
    yield unused_prefix(prefix, also)
    return
  folder = os.path.dirname(os.path.abspath(prefix))
  tidy = [f for f in (folder, *tidy) if not os.path.exists(f)]
  marker, folder_fd = None, None   # the marker's name inside the folder held open
  try:
    make_dirs(folder)
    folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    outputs = _outputs(prefix, also)
    suffix, k = '', 1
    while marker is None:
      if not _taken(outputs, suffix):
        name = f'.{os.path.basename(prefix)}{suffix}{RESERVED}'
        with reporting_disk_full(os.path.join(folder, name)):
          try:
            os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644,
                             dir_fd=folder_fd))
            marker = name
          except FileExistsError:
            pass
        if marker is not None and _taken(outputs, suffix):   # finished meanwhile
          os.unlink(marker, dir_fd=folder_fd)
          marker = None
      if marker is None:
        k += 1
        suffix = f'-{k}'
    yield prefix + suffix
  except BaseException:
    if marker is not None:
      with contextlib.suppress(OSError):
        os.unlink(marker, dir_fd=folder_fd)
      marker = None
    for path in sorted(tidy, key=len, reverse=True):   # deepest first
      with contextlib.suppress(OSError):
        os.rmdir(path)   # only if empty
    raise
  finally:
    if marker is not None:
      with contextlib.suppress(OSError):
        os.unlink(marker, dir_fd=folder_fd)
    if folder_fd is not None:
      os.close(folder_fd)
