"""Small edges of the command line: a `..` in --workdir leaves no stray folder, and a resume
whose training.num_steps is at or below the run's step says in one line that there is
nothing to train (exit code 0: the run already reached the requested length)."""

import os

import pytest

from tests.helpers.cli_runs import TINY, env, run, snapshot

SHORT = (*TINY, '--config.training.num_steps=2', '--config.training.checkpoint_every=2',
         '--config.training.sample_every=0', '--config.eval.train_fid_every=0')


@pytest.mark.slow   # CLI subprocesses that train two steps
def test_dotdot_workdir_and_a_resume_below_the_run_step(tmp_path):
  e = env(str(tmp_path), jax_cache=str(tmp_path / 'jax_cache'))
  first = run(*SHORT, f'--workdir={tmp_path}/stray/../run', env=e)
  assert first.returncode == 0, first.stderr[-3000:]
  assert not (tmp_path / 'stray').exists()
  assert os.path.isdir(tmp_path / 'run' / 'checkpoints' / '2')
  before = snapshot(str(tmp_path / 'run'))

  again = run(*SHORT, f'--workdir={tmp_path}/run', '--config.training.num_steps=1', env=e)
  assert again.returncode == 0, again.stderr[-3000:]
  said = [l for l in again.stderr.splitlines() if 'nothing to train' in l]
  assert len(said) == 1, again.stderr[-3000:]
  assert 'is at step 2 and training.num_steps=1' in said[0], said[0]
  assert snapshot(str(tmp_path / 'run')) == before   # nothing written, nothing trained
