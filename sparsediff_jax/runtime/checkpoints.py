"""Orbax checkpoints of the training state, with fallback past damaged steps.

One file: saving, restoring and the fallback past damaged steps share the
step-folder rules; Orbax's log filters live in orbax_logs.py.

A checkpoint holds two items: `state` (parameters, EMA, optimiser state, step, RNG; arrays)
and `meta` (JSON: the data iterator's position and anything else host-side). Orbax's
`latest_step()` happily returns a step whose files are damaged (cut short by a full disk,
a kill during a write on a file system without atomic renames, a partial copy), so
restoring walks the steps newest first and takes the first that restores whole, with a
warning naming the ones passed over; when none does, CheckpointError says so rather than
training from scratch. Step folders that a killed write left half-made (Orbax's
`*.orbax-checkpoint-tmp-*`) are never listed as steps and are removed when the next
training run opens the directory. A state with NaN or inf values is never written
(NonFiniteError).

A reader (`Checkpointer(..., read_only=True)`: sample, eval and research modes) may open the
directory while a training run writes into it: it lists and restores committed steps only,
and never deletes, renames or trims anything (no clean-up of the trainer's in-flight
`N.orbax-checkpoint-tmp` folder, no setting aside of a damaged step: it reports the damage
and falls back; the trainer repairs).

A full disk (ENOSPC, however deeply Orbax wraps it) ends the run with one DiskFullError
naming the checkpoint whose write failed, the path and the newest intact checkpoint, which
a failed write never touches (Orbax commits a step by renaming it into place only when it is
complete, and deletes old steps only after that). The failure of an asynchronous write is
reported by the next `save()` or `wait()`, and Orbax's own error logs of it (several
tracebacks, from its writer threads) are dropped from the console (orbax_logs.py).
Any other write failure (permissions, an immutable or read-only folder, a path too long: see
atomic_io.write_failure_cause) ends the run the same way, once, as CheckpointWriteError;
before each save a folder is made and removed in the checkpoint folder, so that one that
cannot be written is found before Orbax starts, and when Orbax's own folder creation fails
its other writer threads are released at once instead of waiting 5 minutes for it (the
process could not end before them). WORKDIR/checkpoints that exists but is not a directory,
or cannot be created or written, or is so deep that its files would pass PATH_MAX, is refused
(CheckpointError) before anything is written.
"""

from absl import logging
import contextlib
import os
import weakref

from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from sparsediff_jax import errors
from sparsediff_jax.runtime import atomic_io, nonfinite, orbax_logs
from sparsediff_jax.runtime.atomic_io import (disk_full_cause, failure_reason, try_writing_in,
                                              write_failure_cause)

# Checkpoints exist but none of them can be restored, or the checkpoint folder is not one.
CheckpointError = errors.CheckpointError


class CheckpointWriteError(errors.RunFailedError):
  """A checkpoint could not be written for another reason than a full disk (permissions, an
  immutable or read-only folder, a path too long): one `error:` line, exit code 1."""


# Path bytes a checkpoint's files add below its folder, at most: '/STEP.orbax-checkpoint-tmp
# /state.orbax-checkpoint-tmp/ocdbt.process_N/d/<32 hex digits>.__lock' is about 130.
_DEEPEST_FILE = 160


_OPEN = weakref.WeakSet()   # Checkpointers not closed yet
_LIST_ATTEMPTS = 3          # a reader's listings of a folder whose steps a trainer deletes


def wait_for_saves() -> None:
  """Waits until every save in flight is on disk.

  Saves run on daemon threads that need Python's thread pools, which are shut down before
  atexit handlers run: a process that ends on an exception must call this first (the CLI
  does) or it loses the save in flight.
  """
  for checkpointer in list(_OPEN):
    if checkpointer.failed:   # already reported, by the error that ends the process
      continue
    try:
      checkpointer.wait()
    except Exception as e:  # noqa: BLE001 - the error that ends the process matters more
      logging.error('a checkpoint write in %s failed: %s', checkpointer.directory, e)


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True,
               read_only: bool = False):
    """keep: the newest steps kept (the rest deleted); read_only: a reader beside a possibly
    live trainer (nothing is written, deleted, renamed or trimmed; `keep` is unused)."""
    # gs:// and other URLs stay as they are; local paths become absolute for Orbax.
    self.directory = directory if '://' in directory else os.path.abspath(directory)
    _check_is_directory(self.directory)
    self.keep, self.read_only = keep, read_only
    self.failed = False      # a write failed and was reported; nothing more is waited for
    self._pending = None     # the step of the asynchronous write in flight, if any
    orbax_logs.quiet_write_failure_logs()
    if not read_only:   # before Orbax creates it: a folder that cannot be written, said once
      _check_path_length(self.directory)
      with self._reporting_write_failure(None):
        _try_writing_into(self.directory)
    if read_only:   # each option Orbax's read_only would otherwise override with a warning
      options = ocp.CheckpointManagerOptions(read_only=True, max_to_keep=None, create=False,
                                             save_interval_steps=0,
                                             enable_async_checkpointing=False,
                                             cleanup_tmp_directories=False)
    else:
      options = ocp.CheckpointManagerOptions(max_to_keep=keep,
                                             enable_async_checkpointing=async_save,
                                             cleanup_tmp_directories=True)
    for attempt in range(_LIST_ATTEMPTS):
      try:
        with orbax_logs.without_read_only_notice():
          self.manager = ocp.CheckpointManager(self.directory, options=options,
                                               item_names=('state', 'meta'))
        break
      except FileNotFoundError as e:
        # Orbax reads each listed step's metadata when it opens the folder: a live trainer
        # may delete the oldest step in between. A reader lists again (and falls back).
        if not read_only or attempt == _LIST_ATTEMPTS - 1:
          raise
        logging.warning('a checkpoint in %s went away while it was listed (%s); listing '
                        'again', self.directory, e)
    _OPEN.add(self)

  def save(self, step: int, state, meta: dict) -> None:
    """Starts writing `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`.

    Raises NonFiniteError, writing nothing, if a float in `state` is NaN or inf.
    """
    if self.read_only:
      raise ValueError(f'a read-only Checkpointer of {self.directory} cannot save')
    nonfinite.check_state_finite(state, f'the state of step {step}')
    self.wait()   # a failure of the write in flight is reported as that step's, not this one's
    with self._reporting_write_failure(step):
      # Orbax reports a folder it cannot create from a writer thread, while its other
      # threads wait 5 minutes for that folder: found here, nothing is started.
      _try_writing_into(self.directory)
      self.manager.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    self._pending = step

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state, check_meta=None, _relisted=False):
    """Restores the newest intact checkpoint onto `abstract_state`'s shapes and shardings.

    `check_meta(meta)`, if given, sees each candidate's meta before its state is read and
    may raise to refuse the run (such errors propagate; they are not taken for damage).
    Returns (step, state, meta), or None when there is no checkpoint at all. Raises
    CheckpointError when checkpoints exist but none restores. Damaged steps are renamed to
    STEP.damaged and steps beyond `keep` deleted, unless read_only (then only reported, and
    when none restores the steps are listed again once: a live trainer may have replaced
    them meanwhile).
    """
    steps, damaged, newest_error = self.all_steps(), [], None
    for step in reversed(steps):
      state, meta, error = self._restore_one(step, abstract_state, check_meta)
      if error is not None:
        logging.warning('checkpoint %d in %s cannot be restored (%s); trying an older one',
                        step, self.directory, error)
        damaged.append(step)
        newest_error = newest_error or error
        continue
      if damaged and self.read_only:
        logging.warning('restored checkpoint %d of %s; the newer %s could not be read (left '
                        'as they are: the next training run sets them aside)', step,
                        self.directory, damaged)
      elif damaged:
        self._set_aside(damaged)
        logging.warning('restored checkpoint %d of %s; the newer %s could not be read and '
                        'were renamed to STEP.damaged', step, self.directory, damaged)
      # Orbax commits a new step before it deletes the oldest (so that a kill between the
      # two never leaves fewer intact ones); a kill there leaves keep + 1 steps behind.
      for old in ([] if self.read_only else self.all_steps()[:-self.keep]):
        self.manager.delete(old)
      return step, state['state'], meta['meta']
    if steps and self.read_only and not _relisted:
      self.manager.reload()
      if self.all_steps() != steps:
        return self.restore_latest(abstract_state, check_meta, _relisted=True)
    if steps:
      raise CheckpointError(
          f'none of the checkpoints {steps} in {self.directory} can be restored (step '
          f'{steps[-1]}: {newest_error}); ' + (
              'if a training run is writing them, try again' if self.read_only else
              'resume with the config they were written with, or start from scratch with '
              '--start_over (moves the run into a previous-* folder)'))
    return None

  def restore_step(self, step: int, abstract_state, check_meta=None):
    """Restores checkpoint `step` (and only it) onto `abstract_state`'s shapes and shardings.

    For reading a run's history (e.g. every checkpoint of a trajectory); nothing is set
    aside or deleted. `check_meta(meta)` as in restore_latest. Returns (step, state, meta).
    Raises CheckpointError when `step` is not on disk or cannot be read, and
    ConfigMismatchError when it holds arrays of another network.
    """
    steps = self.all_steps()
    if step not in steps:
      raise CheckpointError(f'checkpoint {step} is not in {self.directory} (steps on disk: '
                            f'{steps or "none"})')
    state, meta, error = self._restore_one(step, abstract_state, check_meta)
    if error is not None:
      raise CheckpointError(f'checkpoint {step} in {self.directory} cannot be restored '
                            f'({error})')
    return step, state['state'], meta['meta']

  def _set_aside(self, steps) -> None:
    """Renames damaged steps to STEP.damaged (not a step name to Orbax), since Orbax skips
    saves at or below its newest listed step, damaged or not."""
    if jax.process_index() == 0:
      for step in steps:
        path = epath.Path(self.directory) / str(step)
        target = path.with_name(f'{step}.damaged')
        if target.exists():
          target.rmtree()
        path.rename(target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('sparsediff_jax checkpoints set aside')
    self.manager.reload()

  def _restore_one(self, step: int, abstract_state, check_meta):
    """(restored items, None) or (None, None, 'ErrorType: first line') for damaged files;
    `check_meta` sees the meta first. Arrays of other shapes are intact files of another
    network, not damage: ConfigMismatchError (setting them aside would be wrong advice)."""
    meta, error = self._try_restore(step, meta=ocp.args.JsonRestore())
    if error is None and check_meta is not None:
      check_meta(meta['meta'])
    state = None
    if error is None:
      state, error = self._try_restore(step, state=ocp.args.StandardRestore(abstract_state))
    if error is not None and _is_shape_mismatch(error):
      raise errors.ConfigMismatchError(
          f'checkpoint {step} in {self.directory} holds arrays of other shapes than this '
          f'config\'s model ({error}); the config differs from the one the run was trained '
          'with (e.g. a model field): use that config, or another --workdir')
    return state, meta, error

  def _try_restore(self, step: int, **items):
    """(restored items, None), or (None, 'ErrorType: first line') for damaged files."""
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items)), None
    except Exception as e:  # Orbax raises many types for damaged files
      return None, f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'

  def wait(self) -> None:
    """Waits until the write in flight is on disk. Raises DiskFullError if it ran out of
    space, CheckpointWriteError if it failed otherwise (permissions, an immutable folder, a
    path too long); once: after a reported failure this returns at once."""
    if self.failed:
      return
    with self._reporting_write_failure(self._pending):
      self.manager.wait_until_finished()
    self._pending = None

  @contextlib.contextmanager
  def _reporting_write_failure(self, step: int | None):
    """Turns a write failure raised in the body, however wrapped, into one DiskFullError
    (ENOSPC) or CheckpointWriteError naming the step, the path and the last intact step."""
    try:
      yield
    except Exception as e:
      cause = write_failure_cause(e)
      if cause is None:
        raise
      self.failed, self._pending = True, None
      orbax_logs.note_write_failure()
      _release_orbax_writers()
      if disk_full_cause(e) is not None:
        raise errors.DiskFullError(
            'no space left on device (ENOSPC) writing ' + self._failure_message(
                step, cause, '', 'free space there') + _free_space(self.directory)) from e
      raise CheckpointWriteError('cannot write ' + self._failure_message(
          step, cause, f' ({failure_reason(cause)})',
          'make that folder writable (or use another --workdir)')) from e

  def _failure_message(self, step: int | None, cause: BaseException, why: str,
                       remedy: str) -> str:
    """'checkpoint S to PATH{why}; the last intact checkpoint is ...; {remedy} and run ...'"""
    what = 'a checkpoint' if step is None else f'checkpoint {step}'
    where = getattr(cause, 'filename', None)
    if where in (None, self.directory) and step is not None:   # the probe before a save
      where = _step_folder(self.directory, step)
    where = where or self.directory
    intact = [s for s in _steps_on_disk(self.directory) if s != step]
    last = (f'the last intact checkpoint is step {intact[-1]} in {self.directory}' if intact
            else f'no checkpoint in {self.directory} is complete yet')
    return (f'{what} to {where}{why}; {last}; {remedy} and run the same command again to '
            'resume (the half-written folder is removed at the next start)')

  def close(self) -> None:
    _OPEN.discard(self)
    self.manager.close()


def _is_shape_mismatch(error: str) -> bool:
  """Whether a restore error says the stored arrays have other shapes or structure."""
  return ('not compatible with the stored shape' in error
          or 'Requested shape' in error or 'tree structures do not match' in error.lower())


def check_checkpoint_dir(workdir: str) -> None:
  """Raises CheckpointError when WORKDIR/checkpoints exists but is not a directory, or
  cannot be created or written (a file or a dangling link in its way, an immutable or
  read-only folder, a path so long that the checkpoint files would pass PATH_MAX).

  Orbax would fail on it deep inside, after training up to the first checkpoint, or a run
  could take it for "no checkpoints" and train from scratch; the CLI calls this before it
  writes anything (and it leaves nothing behind).
  """
  directory = (os.path.join(workdir, 'checkpoints') if '://' not in workdir
               else f'{workdir.rstrip("/")}/checkpoints')
  _check_is_directory(directory)
  _check_path_length(directory)
  if '://' in directory or not os.path.isdir(workdir):   # a new workdir: its creation says
    return
  real = os.path.realpath(directory)
  try:
    try_writing_in(real)
  except OSError as e:
    raise CheckpointError(
        f'{directory} cannot be written ({failure_reason(e)}: {e.filename}'
        + (f', where it leads to {real}' if real != os.path.abspath(directory) else '') +
        '); make it a writable folder, or choose another --workdir') from e


def run_identity(workdir: str) -> tuple | None:
  """What identifies the run in WORKDIR for a mode that reads it: the checkpoint folder
  itself (device and inode). A resumed or restarted run keeps it (and may rewrite
  config.json with a longer training.num_steps: still the same run); --start_over moves it
  into previous-*/ and the new run makes a new one. None on gs:// (no inodes) or without a
  checkpoint folder."""
  if atomic_io.is_remote(workdir):
    return None
  try:
    st = os.stat(os.path.join(workdir, 'checkpoints'))
  except OSError:
    return None
  return st.st_dev, st.st_ino


def check_run_unchanged(workdir: str, identity: tuple | None, mode: str) -> None:
  """WorkdirError (one line, exit 2) when the run in WORKDIR is no longer the one whose
  identity (run_identity) a reader took before it read: called before each write, so that
  results of the old run are never written into a new one (--start_over meanwhile)."""
  if identity is None or run_identity(workdir) == identity:
    return
  raise errors.WorkdirError(
      f'--mode={mode}: the run in {workdir} changed while this mode read it (its checkpoint '
      f'folder was replaced, e.g. by --start_over, which moves the old run into '
      f'{workdir}/previous-*/); nothing was written; run it again on the run you mean')


def _check_path_length(directory: str) -> None:
  """CheckpointError when the files of a checkpoint in `directory` would pass PATH_MAX."""
  if '://' in directory:
    return
  limit = _path_max()
  length = len(os.fsencode(os.path.abspath(directory))) + _DEEPEST_FILE
  if length >= limit:
    raise CheckpointError(
        f'{directory} is too deep for checkpoints: the paths of their files would be about '
        f'{length} bytes long, over this system\'s limit of {limit} (PATH_MAX); choose a '
        '--workdir with a shorter path')


def _path_max() -> int:
  try:
    return os.pathconf('/', 'PC_PATH_MAX')
  except (OSError, ValueError):
    return 4096


def _try_writing_into(directory: str) -> None:
  """Creates `directory` if needed and a folder in it (removed at once): raises the OSError
  that a checkpoint write there would meet. Local paths only (on gs:// there are no
  folders to create; a failed upload is reported by the write itself)."""
  if '://' in directory:
    return
  os.makedirs(directory, exist_ok=True)
  try_writing_in(directory)


def _release_orbax_writers() -> None:
  """After a failed write, Orbax's other writer threads of that save go on waiting for a
  'folder created' signal for its coordination timeout (5 minutes), and the process cannot
  end before they do (nor does it honour SIGTERM meanwhile). Sending the signals lets them
  run on, fail at once on the missing folder (logs dropped by orbax_logs) and end. Orbax
  internals: where they differ, nothing is done (the process then waits as before)."""
  try:
    from orbax.checkpoint._src.futures import future, synchronization
    signals = synchronization.HandlerAwaitableSignal
    future.set_signals(
        [signals.STEP_DIRECTORY_CREATION, signals.ITEM_DIRECTORY_CREATION],
        operation_id=synchronization.OperationIdGenerator.get_current_operation_id())
  except Exception as e:  # noqa: BLE001 - best effort
    logging.debug('could not release Orbax\'s writer threads: %s', e)


def _check_is_directory(directory: str) -> None:
  path = epath.Path(directory)
  if path.exists() and not path.is_dir():
    kind = 'a file' if path.is_file() else 'not a directory'
    raise CheckpointError(
        f'{directory} is {kind}, not a folder of checkpoints; move it away (training would '
        'otherwise start from scratch next to it) or choose another --workdir')


def _steps_on_disk(directory: str) -> list[int]:
  """Committed steps (folders named by a number), read from disk, not Orbax's cache."""
  try:
    return sorted(int(p.name) for p in epath.Path(directory).iterdir() if p.name.isdigit())
  except OSError:
    return []


def _step_folder(directory: str, step: int | None) -> str:
  """The folder being written for `step`: Orbax's temporary one if it is there."""
  if step is None:
    return directory
  try:
    for path in epath.Path(directory).iterdir():
      if path.name.startswith(f'{step}.orbax-checkpoint-tmp'):
        return str(path)
  except OSError:
    pass
  return f'{directory}/{step}'


def _free_space(directory: str) -> str:
  if '://' in directory:
    return ''
  try:
    st = os.statvfs(directory)
  except OSError:
    return ''
  return f' ({st.f_bavail * st.f_frsize / 2**10:.0f} KiB free now)'


def abstract_like(tree, sharding):
  """ShapeDtypeStructs of `tree` placed with `sharding` (the restore target).

  `sharding`: one Sharding for every leaf, or a pytree of them matching `tree`.
  """
  if isinstance(sharding, jax.sharding.Sharding):
    sharding = jax.tree.map(lambda _: sharding, tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding)
