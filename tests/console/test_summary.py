"""The last two lines of each mode: what was done, how long, where, and what to run next."""

import types

import pytest

from sparsediff_jax.console import summary
from sparsediff_jax.modes import MODES, NAMES


def test_train_names_the_outputs_and_the_next_commands():
  done, after = summary.lines(MODES['train'], types.SimpleNamespace(step=1000), 'runs/shapes', 372.0)
  assert done == ('done: trained to step 1000 in 6.2 min; checkpoints, sample grids, '
                  'metrics.jsonl and TensorBoard events in runs/shapes')
  assert after == ('next: python -m sparsediff_jax.main --mode=sample --workdir=runs/shapes  '
                   '(or --mode=research); tensorboard --logdir runs/shapes')


def test_the_config_file_and_odd_paths_are_kept_in_the_next_command():
  _, after = summary.lines(MODES['fid_stats'], 'w/fid_stats/x.npz', 'my runs/a', 3.0,
                           'configs/digits.py')
  assert after == ("next: python -m sparsediff_jax.main --config=configs/digits.py "
                   "--mode=eval --workdir='my runs/a'")


@pytest.mark.parametrize('mode, result, expected', [
    ('sample', ['w/samples/a.png', 'w/samples/a.npz'],
     'done: sampled in 2.0 s; wrote w/samples/a.png, w/samples/a.npz'),
    ('research', {'step': 40}, 'done: research metrics of step 40 in 2.0 s; wrote '
     'w/research_metrics.json and w/research/'),
    ('eval', {'step': 40, 'fid': 12.3456, 'num_samples': 64},
     'done: FID 12.346 at step 40 over 64 samples in 2.0 s; wrote w/eval/'),
])
def test_each_read_mode_says_what_it_wrote(mode, result, expected):
  assert summary.lines(MODES[mode], result, 'w', 2.0)[0] == expected


def test_every_mode_says_its_two_lines():
  results = {'train': types.SimpleNamespace(step=3), 'sample': ['w/a.png'],
             'research': {'step': 3}, 'fid_stats': 'w/s.npz', 'eval': {'step': 3, 'fid': 1.0},
             'plan': 'w/plan.json'}
  assert set(results) == set(NAMES)
  for name in NAMES:
    done, after = summary.lines(MODES[name], results[name], 'w', 1.0)
    assert done.startswith('done: ') and after.startswith('next: ') and 'w' in done + after
