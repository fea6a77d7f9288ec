"""A fake gs:// for tests: etils.epath's fsspec backend, with gs://BUCKET/... kept in a local
folder, so that code which handles gs:// paths runs without a network.

Without TensorFlow, epath serves gs:// through fsspec's 'gcs' file system (gcsfs); here a
local file system stands in for it (`install(root)`; EPATH_USE_TF=false makes epath choose
fsspec where TensorFlow is installed). Paths keep their gs:// form everywhere epath is
used. Orbax writes arrays through tensorstore's own gs:// driver, which is no part of this
project: `map_orbax(root)` points the Checkpointer at the same local folder.

As a program, `python fake_gcs.py ROOT ARGS...` runs the command line
(sparsediff_jax.main) with ARGS on a fake gs:// kept in ROOT.
"""

import os
import sys

import fsspec
from fsspec.implementations.local import LocalFileSystem

PREFIX = 'gs://'


def install(root: str) -> None:
  """gs://B/P -> ROOT/B/P for every epath.Path from now on."""
  os.environ['EPATH_USE_TF'] = 'false'
  root = os.path.abspath(root)

  class FolderGCS(LocalFileSystem):
    protocol = ('gs', 'gcs')

    def __init__(self, *args, finalize_on_close=None, **kwargs):
      super().__init__(*args, **kwargs)

    @classmethod
    def _strip_protocol(cls, path):
      path = os.fspath(path)
      if path.startswith(PREFIX):
        path = f'{root}/{path[len(PREFIX):]}'
      return super()._strip_protocol(path)

    def glob(self, path, **kwargs):   # gcsfs answers BUCKET/P, without the protocol
      return [p[len(root) + 1:] if p.startswith(root + '/') else p
              for p in super().glob(path, **kwargs)]

  for name in FolderGCS.protocol:
    fsspec.register_implementation(name, FolderGCS, clobber=True)
  install_cleared()


def install_cleared() -> None:
  """Makes epath choose its backend and file system again (after EPATH_USE_TF changed)."""
  from etils.epath import backend, gpath
  gpath._is_tf_installed.cache_clear()
  backend.fsspec_backend._get_filesystem.cache_clear()


def local(root: str, url: str) -> str:
  """The local path under ROOT that holds gs:// `url`."""
  assert url.startswith(PREFIX), url
  return os.path.join(os.path.abspath(root), url[len(PREFIX):])


def map_orbax(root: str) -> None:
  from sparsediff_jax.runtime import checkpoints
  init = checkpoints.Checkpointer.__init__

  def mapped_init(self, directory, *args, **kwargs):
    if str(directory).startswith(PREFIX):
      directory = local(root, str(directory))
    init(self, directory, *args, **kwargs)

  checkpoints.Checkpointer.__init__ = mapped_init


if __name__ == '__main__':
  fake_root = sys.argv.pop(1)
  install(fake_root)
  map_orbax(fake_root)
  from sparsediff_jax import main
  sys.argv[0] = main.__file__
  main.run()
