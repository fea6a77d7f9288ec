"""The command line end to end on the shapes config; small edges: a `..` in --workdir leaves no
stray folder, and a resume whose training.num_steps is at or below the run's step says in one
line that there is nothing to train (exit code 0: the run already reached the requested
length). Its answers to bad input are in test_errors*.py."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
from tests.helpers.cli_runs import TINY, env, run, snapshot
from tests.helpers.tiny import TINY_FLAGS

pytestmark = pytest.mark.slow   # CLI subprocesses


def run_cli(*args, timeout=900, env=None):
  return subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', *args],
                        capture_output=True, text=True, timeout=timeout, cwd=REPO,
                        env=dict(os.environ, **(env or {})))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('cli') / 'run'
  out = run_cli('--config=configs/shapes.py', f'--workdir={workdir}', *TINY_FLAGS,
                '--config.training.num_steps=2')
  assert out.returncode == 0, out.stderr[-3000:]
  return workdir, out


def test_train_writes_the_run_directory(trained):
  workdir, out = trained
  assert json.load(open(workdir / 'config.json'))['mask']['ratio'] == 0.9
  assert json.load(open(workdir / 'dataset.json'))['name'] == 'shapes'
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2']
  assert os.listdir(workdir / 'samples') == ['samples_0000002.png']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(workdir))
  assert 'parameters' in out.stderr and 'steps/s' in out.stderr
  assert 'images_per_sec' in (workdir / 'metrics.jsonl').read_text()   # every metric there


def test_rerun_resumes_and_sample_mode_writes_a_grid(trained):
  workdir, _ = trained
  out = run_cli(f'--workdir={workdir}', *TINY_FLAGS, '--config.training.num_steps=4')
  assert out.returncode == 0, out.stderr[-3000:]
  assert 'resumed from step 2' in out.stderr
  assert sorted(os.listdir(workdir / 'checkpoints'), key=int) == ['2', '4']
  out = run_cli('--mode=sample', f'--workdir={workdir}', *TINY_FLAGS)
  assert out.returncode == 0, out.stderr[-3000:]
  assert (workdir / 'samples' / 'sample_mode_0000004.png').exists()


SHORT = (*TINY, '--config.training.num_steps=2', '--config.training.checkpoint_every=2',
         '--config.training.sample_every=0', '--config.eval.train_fid_every=0')


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
