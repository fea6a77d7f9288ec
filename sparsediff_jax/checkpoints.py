"""Orbax checkpoints of the training state, with fallback past damaged steps.

A checkpoint holds two items: `state` (parameters, EMA, optimiser state, step, RNG; arrays)
and `meta` (JSON: the data iterator's position and anything else host-side). Orbax's
`latest_step()` happily returns a step whose files are damaged (cut short by a full disk,
a kill during a write on a file system without atomic renames, a partial copy), so
restoring walks the steps newest first and takes the first that restores whole, with a
warning naming the ones passed over; when none does, CheckpointError says so rather than
training from scratch. Step folders that a killed write left half-made (Orbax's
`*.orbax-checkpoint-tmp-*`) are never listed as steps and are removed when the next manager
opens the directory. A state with NaN or inf values is never written (NonFiniteError).
"""

from absl import logging
import os
import weakref

from etils import epath
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from sparsediff_jax import nonfinite
from sparsediff_jax import errors


# Checkpoints exist but none of them can be restored.
CheckpointError = errors.CheckpointError


_OPEN = weakref.WeakSet()   # Checkpointers not closed yet


def wait_for_saves() -> None:
  """Waits until every save in flight is on disk.

  Saves run on daemon threads that need Python's thread pools, which are shut down before
  atexit handlers run: a process that ends on an exception must call this first (the CLI
  does) or it loses the save in flight.
  """
  for checkpointer in list(_OPEN):
    try:
      checkpointer.wait()
    except Exception as e:  # noqa: BLE001 - the error that ends the process matters more
      logging.error('a checkpoint write in %s failed: %s', checkpointer.directory, e)


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    # gs:// and other URLs stay as they are; local paths become absolute for Orbax.
    self.directory = directory if '://' in directory else os.path.abspath(directory)
    self.keep = keep
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                             enable_async_checkpointing=async_save,
                                             cleanup_tmp_directories=True),
        item_names=('state', 'meta'))
    _OPEN.add(self)

  def save(self, step: int, state, meta: dict) -> None:
    """Starts writing `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`.

    Raises NonFiniteError, writing nothing, if a float in `state` is NaN or inf.
    """
    nonfinite.check_state_finite(state, f'the state of step {step}')
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state, check_meta=None):
    """Restores the newest intact checkpoint onto `abstract_state`'s shapes and shardings.

    `check_meta(meta)`, if given, sees each candidate's meta before its state is read and
    may raise to refuse the run (such errors propagate; they are not taken for damage).
    Returns (step, state, meta), or None when there is no checkpoint at all. Raises
    CheckpointError when checkpoints exist but none restores.
    """
    steps, damaged, newest_error = self.all_steps(), [], None
    for step in reversed(steps):
      meta, error = self._try_restore(step, meta=ocp.args.JsonRestore())
      if error is None and check_meta is not None:
        check_meta(meta['meta'])
      if error is None:
        state, error = self._try_restore(step, state=ocp.args.StandardRestore(abstract_state))
      if error is not None and _is_shape_mismatch(error):
        # Intact files of another network, not damage: a config that differs from the one
        # the run was written with. Setting the checkpoints aside would be wrong advice.
        raise errors.ConfigMismatchError(
            f'checkpoint {step} in {self.directory} holds arrays of other shapes than this '
            f'config\'s model ({error}); the config differs from the one the run was trained '
            'with (e.g. a model field): use that config, or another --workdir')
      if error is not None:
        logging.warning('checkpoint %d in %s cannot be restored (%s); trying an older one',
                        step, self.directory, error)
        damaged.append(step)
        newest_error = newest_error or error
        continue
      if damaged:
        self._set_aside(damaged)
        logging.warning('restored checkpoint %d of %s; the newer %s could not be read and '
                        'were renamed to STEP.damaged', step, self.directory, damaged)
      # Orbax commits a new step before it deletes the oldest (so that a kill between the
      # two never leaves fewer intact ones); a kill there leaves keep + 1 steps behind.
      for old in self.all_steps()[:-self.keep]:
        self.manager.delete(old)
      return step, state['state'], meta['meta']
    if steps:
      raise CheckpointError(
          f'none of the checkpoints {steps} in {self.directory} can be restored (step '
          f'{steps[-1]}: {newest_error}); move the directory away to start from scratch, or '
          'resume with the config they were written with')
    return None

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

  def _try_restore(self, step: int, **items):
    """(restored items, None), or (None, 'ErrorType: first line') for damaged files."""
    try:
      return self.manager.restore(step, args=ocp.args.Composite(**items)), None
    except Exception as e:  # Orbax raises many types for damaged files
      return None, f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:200]}'

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    _OPEN.discard(self)
    self.manager.close()


def _is_shape_mismatch(error: str) -> bool:
  """Whether a restore error says the stored arrays have other shapes or structure."""
  return ('not compatible with the stored shape' in error
          or 'Requested shape' in error or 'tree structures do not match' in error.lower())


def abstract_like(tree, sharding):
  """ShapeDtypeStructs of `tree` placed with `sharding` (the restore target).

  `sharding`: one Sharding for every leaf, or a pytree of them matching `tree`.
  """
  if isinstance(sharding, jax.sharding.Sharding):
    sharding = jax.tree.map(lambda _: sharding, tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding)
