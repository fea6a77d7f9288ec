"""JAX's persistent compilation cache, on by default (config training.compilation_cache).

Compiling the train step, the initialiser and the sampler takes minutes on a CPU and tens
of seconds on accelerators, and used to be paid by every rerun: a resume, a --mode=sample,
the same config in another workdir. With the cache each compiled program is stored under
its key (the program, the compile options and XLA flags, the jax/jaxlib version and the
devices), and a later process with the same key loads it instead of compiling
(benchmarks/warm_start.py measures the time to the first step, cold against warm).

'default' = $SPARSEDIFF_CACHE/xla, or ~/.cache/sparsediff_jax/xla; '' = off; any other
value is the directory (a local path or gs://, which jax's cache supports). An
explicit JAX_COMPILATION_CACHE_DIR in the environment wins over 'default'.
"""

import os
import tempfile

from absl import logging

from sparsediff_jax.runtime import caches

# Programs that compiled faster than this are not stored: the cache's own read costs
# about as much (s).
MIN_COMPILE_SECONDS = 0.5


def resolve(setting: str, environ=None) -> str | None:
  """The cache directory `setting` (the config value) means, or None for off."""
  environ = os.environ if environ is None else environ
  if not setting:
    return None
  if setting == 'default':
    if environ.get('JAX_COMPILATION_CACHE_DIR'):
      return environ['JAX_COMPILATION_CACHE_DIR']
    return str(caches.cache_root(environ=environ) / 'xla')
  return setting if '://' in setting else os.path.expanduser(setting)


def unwritable_reason(path: str) -> str | None:
  """Why files cannot be written in the local directory `path`, or None when they can.

  Creates nothing that stays: a folder that does not exist yet is judged by its nearest
  existing parent (JAX creates the folder at its first write, after a config was
  accepted), and a probe file is removed at once. Read-only folders and file systems, and
  a file in the folder's place, are caught (permissions alone would miss them for root).
  """
  probe_dir = path
  while not os.path.exists(probe_dir):
    parent = os.path.dirname(probe_dir)
    if parent == probe_dir:
      break
    probe_dir = parent
  if not os.path.isdir(probe_dir):
    return f'{probe_dir} is not a directory'
  try:
    fd, probe = tempfile.mkstemp(prefix='.write-probe-', dir=probe_dir)
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    return f'{probe_dir} is not writable ({e.strerror or e})'
  return None


def enable(setting: str, environ=None) -> str | None:
  """Points jax's persistent cache at `resolve(setting)` (before the first compile);
  returns the directory, or None when off. A directory that cannot be written turns the
  cache off with ONE warning (checked here once, rather than JAX warning at every
  compile): a run never fails for want of a cache. Nothing is created here."""
  import jax
  path = resolve(setting, environ)
  if path is None:
    jax.config.update('jax_compilation_cache_dir', None)
    return None
  if '://' not in path and (why := unwritable_reason(path)):
    logging.warning('compilation cache off: %s; set training.compilation_cache to a writable '
                    'directory, or "" to silence this', why)
    jax.config.update('jax_compilation_cache_dir', None)
    return None
  environ = os.environ if environ is None else environ
  jax.config.update('jax_compilation_cache_dir', path)
  # The user's own thresholds (environment) stay.
  if 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS' not in environ:
    jax.config.update('jax_persistent_cache_min_compile_time_secs', MIN_COMPILE_SECONDS)
  if 'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES' not in environ:
    jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  logging.info('compilation cache: %s', path)
  return path
