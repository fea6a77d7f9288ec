"""One cache root for every cache of the project, and one sha256_file (runtime/caches.py)."""

import hashlib
import os
import pathlib

from sparsediff_jax.metrics import classifier
from sparsediff_jax.metrics.fid import inception_weights
from sparsediff_jax.runtime import caches, compile_cache


def test_every_cache_lives_under_the_one_root(monkeypatch, tmp_path):
  monkeypatch.setenv('SPARSEDIFF_CACHE', str(tmp_path / 'root'))
  root = tmp_path / 'root'
  assert caches.cache_root() == root
  assert inception_weights.cache_dir() == root
  assert classifier.cache_folder('digits') == root / 'digits_classifier'
  monkeypatch.delenv('JAX_COMPILATION_CACHE_DIR', raising=False)
  assert compile_cache.resolve('default') == str(root / 'xla')
  # An explicit root wins over the environment; without either, the home folder.
  assert caches.cache_root(tmp_path / 'mine') == tmp_path / 'mine'
  mine = tmp_path / 'mine'
  assert classifier.cache_folder('mnist', mine) == mine / 'mnist_classifier'
  monkeypatch.delenv('SPARSEDIFF_CACHE')
  home = pathlib.Path(os.path.expanduser('~')) / '.cache' / 'sparsediff_jax'
  assert caches.cache_root() == inception_weights.cache_dir() == home
  assert compile_cache.resolve('default', environ={}) == str(home / 'xla')


def test_sha256_file_reads_large_files_in_chunks(tmp_path):
  data = os.urandom(3 * (1 << 20) + 17)   # more than one 1 MiB chunk, and a partial one
  path = tmp_path / 'blob'
  path.write_bytes(data)
  assert caches.sha256_file(path) == hashlib.sha256(data).hexdigest()
  assert inception_weights.sha256_file is caches.sha256_file
  assert classifier.sha256_file is caches.sha256_file
