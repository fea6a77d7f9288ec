"""The command line end to end on the shapes config, and its answers to bad input."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO
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


@pytest.mark.parametrize('args,words', [
    (['--config.mask.ratio=1.0'], ['mask.ratio', '1.0', '[0, 1)']),
    (['--config.mask.ratio=-0.1'], ['mask.ratio', '-0.1']),
    (['--config.training.batch_size=0'], ['training.batch_size', '0']),
    (['--config.data.image_size=30', '--config.model.channel_mult=(1,2,2)'],
     ['data.image_size', '30', 'divisible by 4']),
    (['--config.data.name=imagenet9'], ['data.name', 'imagenet9', 'celeba']),
    (['--config.model.name=vit'], ['model.name', 'vit', 'unet', 'dit']),
    (['--config.diffusion.formulation=vp'], ['diffusion.formulation', 'flow_matching']),
    (['--config=configs/nope.py'], ['configs/nope.py', 'no such file']),
    (['--config.mask.ratio=abc'], ['mask.ratio']),
    (['--mode=fly'], ['--mode', 'fly']),
])
def test_bad_input_is_one_line_exit_2_and_no_workdir(tmp_path, args, words):
  workdir = tmp_path / 'run'
  out = run_cli(f'--workdir={workdir}', *args, timeout=300)
  assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
  lines = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1, out.stderr[-2000:]
  for w in words:
    assert w in lines[0]
  assert not workdir.exists()


def test_batch_not_divisible_by_devices(tmp_path):
  workdir = tmp_path / 'run'
  out = run_cli(f'--workdir={workdir}', '--config.training.batch_size=6', timeout=300,
                env={'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert out.returncode == 2
  assert 'training.batch_size=6' in out.stderr and '4 data shards' in out.stderr
  assert not workdir.exists()
