"""The one cache root of the project, and the SHA-256 of a file.

Everything computed once and kept between runs lives under CACHE_ROOT: the domain
classifiers (`<dataset>_classifier/`, metrics/classifier.py), the converted Inception
weights (metrics/fid/inception_weights.py) and JAX's compilation cache (`xla/`,
runtime/compile_cache.py). CACHE_ROOT is `$SPARSEDIFF_CACHE` when set and not empty, else
`~/.cache/sparsediff_jax`; a caller may pass its own root instead.
"""

import hashlib
import os
import pathlib

ENV_VAR = 'SPARSEDIFF_CACHE'
DEFAULT_ROOT = os.path.join('~', '.cache', 'sparsediff_jax')


def cache_root(root=None, environ=None) -> pathlib.Path:
  """`root` if given, else $SPARSEDIFF_CACHE, else ~/.cache/sparsediff_jax (~ expanded)."""
  environ = os.environ if environ is None else environ
  return pathlib.Path(root or environ.get(ENV_VAR) or DEFAULT_ROOT).expanduser()


def sha256_file(path) -> str:
  """Hex SHA-256 of the file at `path`, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()
