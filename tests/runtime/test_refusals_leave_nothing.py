"""A refused training run leaves its workdir byte for byte as it was, whatever refuses it
and when: the real CLI refused after compiling (a data error with --start_over over a
trained run; a checkpoint of another config found on restore). The refusals of the set-up
before compiling are tested in-process in test_one_run.py."""

import pytest

from tests.helpers.cli_runs import TINY, assert_one_line_error, env, run, snapshot

pytestmark = pytest.mark.slow   # CLI subprocesses that compile the tiny step

SHORT = (*TINY, '--config.training.num_steps=2', '--config.training.checkpoint_every=2',
         '--config.training.sample_every=0', '--config.eval.train_fid_every=0')


def test_refusals_after_compiling_leave_the_workdir_byte_identical(tmp_path):
  e = env(str(tmp_path), jax_cache=str(tmp_path / 'jax_cache'))
  workdir = tmp_path / 'run'
  result = run(*SHORT, f'--workdir={workdir}', env=e)
  assert result.returncode == 0, result.stderr[-3000:]
  before = snapshot(str(workdir))
  # The data breaks while loading (after compiling): --start_over has moved nothing yet.
  images = tmp_path / 'images'
  images.mkdir()
  for i in range(8):
    (images / f'{i}.png').write_bytes(b'not a png')
  line = assert_one_line_error(run(*SHORT, f'--workdir={workdir}', '--start_over',
                                   '--config.data.name=folder', f'--config.data.folder={images}',
                                   '--config.data.num_train_examples=8', env=e))
  assert 'cannot decode image' in line, line
  assert snapshot(str(workdir)) == before
  # The checkpoint's own record refuses another config (config.json gone, so only the
  # restore can tell): refused before the record is written.
  (workdir / 'config.json').unlink()
  before = snapshot(str(workdir))
  line = assert_one_line_error(run(*SHORT, f'--workdir={workdir}', '--config.mask.ratio=0.25',
                                   '--config.training.num_steps=4', env=e))
  assert 'holds a run trained with a different config (mask.ratio' in line, line
  assert snapshot(str(workdir)) == before
