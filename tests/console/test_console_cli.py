"""The CLI's console in a non-terminal: no library noise, plain lines (a time, no absl
prefix), phase and progress lines, the short metric line, the summary and the next command;
--verbosity=1 keeps absl's format and every metric; the persistent compilation cache filled by one run and hit by the next (slow: two CLI runs)."""

import os
import re
import subprocess
import sys

import pytest

from tests.helpers.tiny import TINY_FLAGS
from tests.helpers import REPO

NOISE = ('Unable to initialize backend', 'All log messages before absl::InitializeLog',
         'oneDNN custom operations', '[Hyperparameters]', 'Very slow compile')


def run_cli(workdir, cache, *extra):
  env = {k: v for k, v in os.environ.items()
         if k not in ('TF_CPP_MIN_LOG_LEVEL', 'JAX_PLATFORMS', 'JAX_COMPILATION_CACHE_DIR')}
  env.update(PYTHONPATH=REPO, SPARSEDIFF_CACHE=str(cache))
  return subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', f'--workdir={workdir}',
                         '--config.training.num_steps=4', *TINY_FLAGS, *extra],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)


def entries(cache):
  return {n for n in os.listdir(cache / 'xla') if n.endswith('-cache')}


@pytest.fixture(scope='module')
def two_runs(tmp_path_factory):
  tmp = tmp_path_factory.mktemp('console')
  cache = tmp / 'cache'
  first = run_cli(tmp / 'a', cache)
  after_first = entries(cache)
  second = run_cli(tmp / 'b', cache, '--verbosity=1')
  return first, after_first, second, entries(cache)


@pytest.mark.slow
def test_quiet_console_shows_phases_and_progress(two_runs):
  first = two_runs[0]
  assert first.returncode == 0, first.stderr[-3000:]
  for noise in NOISE:
    assert noise not in first.stderr, noise
  time = r'^\d\d:\d\d:\d\d '
  assert not re.search(r'^[IWEF]\d{4} ', first.stderr, re.M)   # no absl prefix
  for phase in ('loading data', 'compiling the train step and the sampler'):
    assert re.search(rf'{time}{phase}: [\d.]+ (s|min)$', first.stderr, re.M), phase
  assert re.search(rf'{time}step 4/4  loss [\d.]+  [\d.]+ (steps/s|s/step)  ETA ', first.stderr,
                   re.M)
  assert re.search(rf'{time}step 4: loss [\d.e-]+, dense loss [\d.e-]+, [\d.e+]+ steps/s, '
                   rf'lr [\d.e-]+$', first.stderr, re.M)
  assert 'grad_norm' not in first.stderr   # in metrics.jsonl and TensorBoard only
  workdir = re.escape(str(first.args[3].split('=', 1)[1]))
  last = first.stderr.rstrip().splitlines()[-2:]
  assert re.match(rf'{time}done: trained to step 4 in [\d.]+ (s|min); checkpoints, sample '
                  rf'grids, metrics.jsonl and TensorBoard events in {workdir}$', last[0]), last
  assert re.match(rf'{time}next: python -m sparsediff_jax.main --mode=sample '
                  rf'--workdir={workdir}  \(or --mode=research\); tensorboard --logdir '
                  rf'{workdir}$', last[1]), last


@pytest.mark.slow
def test_verbosity_shows_absl_prefix_and_every_metric(two_runs):
  second = two_runs[2]
  assert re.search(r'^I\d{4} .*\] \[4\] dense_loss=[\d.e-]+, .*grad_norm=', second.stderr,
                   re.M)


@pytest.mark.slow
def test_compilation_cache_is_filled_then_hit(two_runs):
  first, after_first, second, after_second = two_runs
  assert second.returncode == 0, second.stderr[-3000:]
  steps = {n for n in after_first if n.startswith(('jit_step_fn', 'jit_init'))}
  assert len(steps) == 2, after_first
  assert {n for n in after_second if n.startswith(('jit_step_fn', 'jit_init'))} == steps
  # --verbosity=1 shows jax's debug lines, the cache hits among them.
  assert re.search(r"Persistent compilation cache hit for 'jit_step_fn'", second.stderr)
