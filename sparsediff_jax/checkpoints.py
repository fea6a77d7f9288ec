"""Orbax checkpoints of the training state, with fallback past damaged steps.

A checkpoint holds two items: `state` (parameters, EMA, optimiser state, step, RNG; arrays)
and `meta` (JSON: the data iterator's position and anything else host-side). Orbax's
`latest_step()` happily returns a step whose files are damaged, so restoring walks the
steps newest first and takes the first that restores whole.
"""

from absl import logging
import os

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """Checkpoints exist but none of them can be restored."""


class Checkpointer:

  def __init__(self, directory: str, *, keep: int = 3, async_save: bool = True):
    # gs:// and other URLs stay as they are; local paths become absolute for Orbax.
    self.directory = directory if '://' in directory else os.path.abspath(directory)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                             enable_async_checkpointing=async_save),
        item_names=('state', 'meta'))

  def save(self, step: int, state, meta: dict) -> None:
    """Starts writing `state` (a pytree of arrays) and `meta` (JSON) as checkpoint `step`."""
    self.manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  def restore_latest(self, abstract_state):
    """Restores the newest intact checkpoint onto `abstract_state`'s shapes and shardings.

    Returns (step, state, meta), or None when there is no checkpoint at all. Raises
    CheckpointError when checkpoints exist but none restores.
    """
    steps = self.all_steps()
    for step in reversed(steps):
      try:
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()))
      except Exception as e:  # orbax raises many types for damaged files
        logging.warning('checkpoint %d in %s cannot be restored (%s: %s); trying an older one',
                        step, self.directory, type(e).__name__, str(e).splitlines()[0][:200])
        continue
      return step, restored['state'], restored['meta']
    if steps:
      raise CheckpointError(
          f'none of the checkpoints {steps} in {self.directory} can be restored; move the '
          'directory away to start from scratch')
    return None

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def abstract_like(tree, sharding):
  """ShapeDtypeStructs of `tree` placed with `sharding` (the restore target).

  `sharding`: one Sharding for every leaf, or a pytree of them matching `tree`.
  """
  if isinstance(sharding, jax.sharding.Sharding):
    sharding = jax.tree.map(lambda _: sharding, tree)
  return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                      tree, sharding)
