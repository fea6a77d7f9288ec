"""launch/experiments/*_window.sh share their flags (window_flags.sh): each still resolves
every run to the config of its committed result, so that a change to the shared flags can
never silently rerun (or, worse, mix settings in) the committed experiments."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.helpers import REPO

RESULTS = os.path.join(REPO, 'docs', 'results')


def print_runs(tmp_path, script, committed, names, changed=0, output=None, **settings):
  """Runs SCRIPT with launch/sweep.py --print against a copy of the committed results NAMES
  (so the tables it rebuilds land in tmp_path); returns (kept, commands) counts. CHANGED:
  how many kept results must be reported as made with another config."""
  kept_dir = tmp_path / 'results' / 'runs'
  for name in names:
    shutil.copytree(os.path.join(committed, name), kept_dir / name)
  env = dict(os.environ, RESULTS=str(kept_dir), PYTHON=sys.executable,
             PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''), **settings)
  out = subprocess.run(['bash', os.path.join(REPO, 'launch', 'experiments', script),
                        str(tmp_path / 'root'), '--print'], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert sum('differs in' in l for l in lines) == changed, out.stdout
  if output is not None:
    output.extend(lines)
  return (sum('kept in' in l for l in lines), sum(l.startswith('cd ') for l in lines))


def committed_runs(folder, *parts):
  return sorted(n for n in os.listdir(folder) if all(p in n for p in parts))


def test_memorization_window_still_resolves_its_committed_runs(tmp_path):
  committed = os.path.join(RESULTS, 'memorization_window', 'runs')
  names = committed_runs(committed, 'num_train_examples=16__')
  assert len(names) == 24
  assert print_runs(tmp_path, 'memorization_window.sh', committed, names,
                    N_LIST='16') == (24, 0)


def test_dit_window_still_resolves_its_committed_runs(tmp_path):
  committed = os.path.join(RESULTS, 'memorization_window', 'runs')
  names = committed_runs(committed, 'model.name=dit')
  assert len(names) == 6
  assert print_runs(tmp_path, 'dit_window.sh', committed, names, PHASE='window', LR='4e-3',
                    WARMUP='100') == (6, 0)


def test_fashion_mnist_window_still_resolves_its_committed_runs(tmp_path):
  committed = os.path.join(RESULTS, 'fashion_mnist_window', 'runs')
  names = committed_runs(committed, '')
  assert len(names) >= 8
  assert print_runs(tmp_path, 'fashion_mnist_window.sh', committed, names) == (
      len(names), 12 - len(names))


@pytest.mark.parametrize('setting, value', [('SAMPLER_STEPS', '10'), ('SAMPLES', '64')])
def test_a_changed_shared_flag_reruns_instead_of_reusing(tmp_path, setting, value):
  committed = os.path.join(RESULTS, 'memorization_window', 'runs')
  names = committed_runs(committed, 'num_train_examples=16__', 'training.seed=0')[:2]
  assert print_runs(tmp_path, 'memorization_window.sh', committed, names, changed=2,
                    N_LIST='16', **{setting: value}) == (0, 24)


@pytest.mark.slow   # 6 sweep invocations
def test_window_decisive_reruns_the_committed_n64_runs_with_caps_per_run(tmp_path):
  """The committed n=64 seed-0 runs had a cap from the dense run: under the caps per run
  (research.window_cap_factor) each of the decisive settings runs again, and the
  batch-matched controls are capped by images: 40000 x 16 / their batch steps."""
  committed = os.path.join(RESULTS, 'memorization_window', 'runs')
  names = committed_runs(committed, 'num_train_examples=64__', 'training.seed=0')
  lines = []
  # --print runs nothing, so the dense run is printed again with the dropout baseline.
  assert print_runs(tmp_path, 'window_decisive.sh', committed, names, changed=7,
                    output=lines, SEEDS_FIRST='0', SEEDS_THEN='', SEEDS_128='') == (0, 7)
  commands = [l for l in lines if l.startswith('cd ')]
  assert all('--config.research.window_cap_factor=4' in c for c in commands)
  caps = {os.path.basename(c.split('--workdir=')[1].split()[0]).split('__')[0]:
          c.split('--config.training.num_steps=')[1].split()[0] for c in commands}
  assert caps == {'grid': '40000', 'batch_matched0.9': '320000',
                  'batch_matched0.5': '80000', 'dropout': '40000'}
