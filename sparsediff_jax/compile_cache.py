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

from absl import logging

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
    root = environ.get('SPARSEDIFF_CACHE') or os.path.join(os.path.expanduser('~'), '.cache',
                                                           'sparsediff_jax')
    return os.path.join(root, 'xla')
  return setting if '://' in setting else os.path.expanduser(setting)


def enable(setting: str, environ=None) -> str | None:
  """Points jax's persistent cache at `resolve(setting)` (before the first compile);
  returns the directory, or None when off. A directory that cannot be created turns the
  cache off with a warning: a run never fails for want of a cache."""
  import jax
  path = resolve(setting, environ)
  if path is None:
    jax.config.update('jax_compilation_cache_dir', None)
    return None
  if '://' not in path:
    try:
      os.makedirs(path, exist_ok=True)
    except OSError as e:
      logging.warning('compilation cache off: cannot create %s (%s); set '
                      'training.compilation_cache to a writable directory or ""', path, e)
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
