"""Shared fixtures. The quick check is `python -m pytest -q -m "not slow" tests`; the full
suite (CI) runs everything. Tests marked slow start subprocesses of the CLI, several
processes, notebooks or soaks, or take more than about 20 s on 2 CPU cores."""

import os

import pytest

from tests.helpers import cli_runs, tiny


@pytest.fixture(scope='session', autouse=True)
def shared_compilation_cache(tmp_path_factory):
  """One persistent compilation cache for the whole session, in this process and in the CLI
  subprocesses of cli_runs.env: the programs many tests share (the tiny config's train
  step, sampler and initialiser) compile once and are read from disk after that. Programs
  that compile in under 0.1 s (eager operations) are not stored."""
  import jax
  path = str(tmp_path_factory.mktemp('jax_cache'))
  before = {name: getattr(jax.config, name) for name in (
      'jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs',
      'jax_persistent_cache_min_entry_size_bytes')}
  jax.config.update('jax_compilation_cache_dir', path)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.1)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  os.environ[cli_runs.SHARED_CACHE_ENV] = path
  yield path
  os.environ.pop(cli_runs.SHARED_CACHE_ENV, None)
  for name, value in before.items():
    jax.config.update(name, value)


@pytest.fixture
def tiny_config():
  """tiny.tiny_config: fn(overrides=None, **section__field) -> a fresh tiny ConfigDict."""
  return tiny.tiny_config
