"""compile_cache.enable: checks once that the cache folder can be written (one warning, then
the cache is off, instead of a warning at every compile) and creates nothing itself, so a
rejected config leaves no cache folder behind."""

import logging
import os

import jax
import pytest

from tests.helpers.cli_runs import env, run
from sparsediff_jax.runtime import compile_cache


@pytest.fixture
def restore_jax_cache_dir():
  before = jax.config.jax_compilation_cache_dir
  yield
  jax.config.update('jax_compilation_cache_dir', before)


def _warnings(caplog):
  return [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_cache_folder_that_cannot_be_written_is_one_warning_then_off(
    tmp_path, caplog, restore_jax_cache_dir):
  (tmp_path / 'blocked').write_text('a file where the cache folder would go')
  with caplog.at_level(logging.WARNING):
    assert compile_cache.enable(str(tmp_path / 'blocked' / 'xla')) is None
  warnings = _warnings(caplog)
  assert len(warnings) == 1 and 'compilation cache off' in warnings[0].getMessage()
  assert f'{tmp_path}/blocked is not a directory' in warnings[0].getMessage()
  assert jax.config.jax_compilation_cache_dir is None
  jax.jit(lambda x: x * 3.0)(1.0)   # compiling now logs nothing more
  assert len(_warnings(caplog)) == 1


def test_an_unwritable_folder_is_found_by_a_probe_not_by_permissions(tmp_path, monkeypatch):
  def refuse(*args, **kwargs):
    raise PermissionError(13, 'Read-only file system')
  monkeypatch.setattr(compile_cache.tempfile, 'mkstemp', refuse)
  assert compile_cache.unwritable_reason(str(tmp_path)) == (
      f'{tmp_path} is not writable (Read-only file system)')


def test_enable_creates_nothing_and_leaves_no_probe(tmp_path, restore_jax_cache_dir):
  path = tmp_path / 'cache' / 'xla'
  assert compile_cache.enable(str(path)) == str(path)
  assert jax.config.jax_compilation_cache_dir == str(path)
  assert os.listdir(tmp_path) == []


@pytest.mark.slow   # a CLI subprocess
def test_a_rejected_config_creates_no_cache_folder(tmp_path):
  (tmp_path / 'afile').write_text('not a workdir')
  e = env(str(tmp_path))
  e.pop('JAX_COMPILATION_CACHE_DIR', None)
  e['SPARSEDIFF_CACHE'] = str(tmp_path / 'cache')
  result = run(f'--workdir={tmp_path}/afile', env=e)   # refused after JAX is imported
  assert result.returncode == 2, result.stderr[-2000:]
  assert not (tmp_path / 'cache').exists()
