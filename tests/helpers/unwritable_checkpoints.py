"""A checkpoint folder that becomes unwritable mid-run, for tests: `refuse_from(step)` makes
Orbax's creation of the folder of every checkpoint from `step` on fail with EPERM, as in a
folder made immutable (chattr +i) or read-only while the run trains (what root cannot be
refused by chmod, so the tests inject it).

As a program, `python unwritable_checkpoints.py STEP ARGS...` runs the command line
(sparsediff_jax.main) with ARGS so.
"""

import errno
import os
import re
import sys


def refuse_from(step: int, setattr_fn=None) -> None:
  """Patches orbax's async_path.mkdir (through `setattr_fn`, e.g. pytest's monkeypatch)."""
  from orbax.checkpoint._src.path import async_path
  real = async_path.mkdir

  async def mkdir(path, *args, **kwargs):
    found = re.search(r'/(\d+)\.orbax-checkpoint-tmp', str(path))
    if found and int(found[1]) >= step:
      raise PermissionError(errno.EPERM, os.strerror(errno.EPERM), str(path))
    return await real(path, *args, **kwargs)

  (setattr_fn or setattr)(async_path, 'mkdir', mkdir)


if __name__ == '__main__':
  refuse_from(int(sys.argv.pop(1)))
  from sparsediff_jax import main
  sys.argv[0] = main.__file__
  main.run()
