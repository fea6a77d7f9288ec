"""The Fashion-MNIST memorization window: the regime script's pure parts
(benchmarks/fashion_regime.py) and the fashion columns of sweeps/window_table."""

import importlib.util
import json
import os

import pytest

from sparsediff_jax.metrics import window
from sparsediff_jax.scoring import window_scoring
from sparsediff_jax.sweeps import window_table
from tests.helpers import REPO



def _regime():
  path = os.path.join(REPO, 'benchmarks', 'fashion_regime.py')
  spec = importlib.util.spec_from_file_location('fashion_regime', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _entry(step, memorized, fd, confidence, asym=0.2):
  return {'step': step, 'pixel_memorized_fraction': memorized,
          'pixel_nn_distance_mean': 1.0 - memorized, 'pixel_nn_ratio_mean': 0.5,
          'fashion_mnist_fd': fd, 'fashion_mnist_confidence': confidence,
          'fashion_mnist_asymmetric_rate': asym}


def test_regime_flags_put_the_command_line_last_so_it_wins():
  regime = _regime()
  flags = regime.cli_flags(16, 32, 3000, 250, 0.9, 1, ['mask.ratio=0.9'])
  assert flags.index('--config.mask.ratio=0') < flags.index('--config.mask.ratio=0.9')
  for flag in ('--config.data.num_train_examples=32', '--config.data.image_size=16',
               '--config.research.window_every=250', '--config.research.window_stop=0.9',
               '--config.training.seed=1', '--config.data.class_balanced=True'):
    assert flag in flags


def test_regime_rows_and_table_from_a_trajectory():
  regime = _regime()
  trajectory = [_entry(250, 0.0, 6.0, 0.5), _entry(500, 0.625, 3.25, 0.7)]
  rows = regime.trajectory_rows(trajectory, 'fashion_mnist', label='dense', image_size=16,
                                num_train=16, seed=0)
  assert [r['step'] for r in rows] == [250, 500]
  assert rows[1]['memorized_fraction'] == 0.625 and rows[1]['fd'] == 3.25
  assert rows[1]['confidence'] == 0.7 and rows[0]['nn_distance_mean'] == 1.0
  # Through the CSV and back, as --plot reads it.
  table = regime.table([{k: str(v) for k, v in r.items()} for r in rows])
  assert '| dense | 16x16 | 16 | 0.00 (6.0) | 0.62 (3.2) |' in table


def test_fashion_quality_targets_apply_to_fashion_runs_only():
  targets = window_scoring.quality_targets('fashion_mnist')
  assert list(targets) == ['novel_fashion_mnist_confidence', 'fashion_mnist_confidence']
  assert window_scoring.quality_targets('digits') == {
      'novel_digits_confidence': 0.815, 'digits_fd': 9.5, 'digits_confidence': 0.815}
  gen = window.tau_gen([_entry(200, 0, 5.0, 0.5), _entry(400, 0, 2.0, 0.7)],
                       'fashion_mnist_confidence', 0.66)
  assert gen.step == pytest.approx(200 + 200 * 0.16 / 0.2) and not gen.censored


def _kept(results, name, group, seed, ratio, batch, trajectory, x=None):
  folder = results / name
  folder.mkdir(parents=True)
  config = {'data': {'name': 'fashion_mnist', 'num_train_examples': 16, 'image_size': 16},
            'training': {'seed': seed, 'batch_size': batch, 'num_steps': 800},
            'mask': {'ratio': ratio}, 'model': {'dropout': 0.0}}
  (folder / 'config.json').write_text(json.dumps(config))
  (folder / 'sweep_run.json').write_text(json.dumps({'group': group, 'x': x}))
  (folder / 'window_trajectory.json').write_text(json.dumps(trajectory))


def test_window_table_reads_fashion_runs_with_their_own_targets(tmp_path):
  """Dense memorizes (0.5 at step 300); mask 0.9 never does. Both reach confidence 0.66 at
  step 300 (0.56 -> 0.76), where the dense run's fd is 3 and its asymmetric rate 0.3."""
  steps = [200, 400, 600, 800]
  conf = [0.56, 0.76, 0.8, 0.8]
  for seed in range(2):
    dense = [_entry(s, m, f, c, a) for s, m, f, c, a in
             zip(steps, [0.25, 0.75, 1, 1], [4, 2, 2, 2], conf, [0.4, 0.2, 0.2, 0.2])]
    masked = [_entry(s, 0.0, 5.0, c) for s, c in zip(steps, conf)]
    _kept(tmp_path / 'runs', f'dense_s{seed}', 'grid', seed, 0.0, 16, dense)
    _kept(tmp_path / 'runs', f'mask_s{seed}', 'grid', seed, 0.9, 16, masked)
  # The default targets: the copy-proof one first, which these runs did not record.
  assert window_table.main([f'--results={tmp_path / "runs"}', '--levels=0.5',
                            f'--out={tmp_path / "default"}']) == 0
  md = (tmp_path / 'default' / 'window.md').read_text()
  assert ('Quality targets: fashion_mnist_confidence >= 0.66, '
          'novel_fashion_mnist_confidence >= 0.66;') in md
  assert '| 300 ± 0 | not recorded | 300 ± 0 | 1.00 ± 0.00 | not recorded |' in md
  rc = window_table.main([f'--results={tmp_path / "runs"}', '--planned=12', '--levels=0.5',
                          '--command=launch/experiments/fashion_mnist_window.sh',
                          '--quality=fashion_mnist_confidence=0.66'])
  assert rc == 0
  md = (tmp_path / 'window.md').read_text()
  assert md.startswith('# The memorization window: fashion_mnist 16x16')
  assert '4 runs of the 12 planned (launch/experiments/fashion_mnist_window.sh)' in md
  assert 'Quality targets: fashion_mnist_confidence >= 0.66;' in md
  assert '| dense | 16 | 2 | 200 | 300 ± 0 | 300 ± 0 | 1.00 ± 0.00 | 0.50 ± 0.00 |' in md
  assert ('| dense | 16 | 2 of 2 | 3.000 ± 0.000 | 0.660 ± 0.000 | 0.300 ± 0.000 | '
          '0.500 ± 0.000 |') in md
  assert '| mask 0.9 | 16 | 2 of 2 | 5.000 ± 0.000 | 0.660 ± 0.000 | 0.200 ± 0.000 | 0.000 ± 0.000 |' in md
  assert (tmp_path / 'trajectories_n16.png').stat().st_size > 0


def test_window_table_refuses_a_digits_target_for_fashion_runs(tmp_path, capsys):
  _kept(tmp_path / 'runs', 'dense_s0', 'grid', 0, 0.0, 16, [_entry(200, 0.0, 4.0, 0.5)])
  assert window_table.main([f'--results={tmp_path / "runs"}',
                            '--quality=digits_fd=16']) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: --quality') and "data.name='fashion_mnist'" in err
  assert sorted(os.listdir(tmp_path)) == ['runs']


def test_sample_grid_rows_are_the_nearest_scored_steps_and_the_last():
  path = os.path.join(REPO, 'benchmarks', 'window_sample_grids.py')
  spec = importlib.util.spec_from_file_location('window_sample_grids', path)
  grids = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(grids)
  assert grids.rows_to_show([200, 400, 600, 2200], [400, 1000, 2000]) == [400, 600, 2200]
  assert grids.rows_to_show([200, 400], [300]) == [200, 400]     # a tie takes the earlier
  assert grids.rows_to_show([], [400]) == []


@pytest.mark.slow   # a small classifier trained on Fashion-MNIST-like files the test writes
def test_the_training_set_sampled_back_fails_the_copy_proof_fashion_target(
    tmp_path_factory, monkeypatch):
  """n=64 class-balanced training garments at 16x16, repeated into 128 samples: all copies,
  so no novel sample and the headline target fails (while the plain confidence passes);
  128 test garments pass it."""
  import ml_collections
  import numpy as np
  from sparsediff_jax import data
  from sparsediff_jax.data.fashion_mnist import classifier as fashion_classifier
  from sparsediff_jax.data.fashion_mnist import metrics as fashion_metrics
  from sparsediff_jax.data.fashion_mnist import source as fashion_mnist
  from sparsediff_jax.metrics import classifier, memorization
  from tests.helpers.idx_fakes import write_idx_folder
  from tests.helpers.tiny import tiny_config
  folder = tmp_path_factory.mktemp('fmnist')
  write_idx_folder(folder, n_train=200, n_test=200)
  data_config = ml_collections.ConfigDict({'name': 'fashion_mnist', 'data_dir': str(folder),
                                           'source': 'files', 'download': False})
  spec = fashion_classifier.make_spec('fashion_mnist', data_config)
  spec = classifier.Spec(**{**spec.__dict__, 'feature_dim': 16,
                            'recipe': {**spec.recipe, 'steps': 120, 'batch_size': 16}})
  model = classifier.load_or_train('fashion_mnist', tmp_path_factory.mktemp('cache'),
                                   spec=spec)
  monkeypatch.setattr(fashion_metrics, '_classifier', lambda *args: model)
  config = tiny_config({'data.name': 'fashion_mnist', 'data.data_dir': str(folder),
                        'data.source': 'files', 'data.download': False,
                        'data.image_size': 16, 'data.class_balanced': True,
                        'data.num_train_examples': 64})
  train_images = data.load_train_images(config)
  target = window.DEFAULT_TARGETS['novel_fashion_mnist_confidence']
  for name, samples in (('train', np.resize(train_images, (128, 16, 16, 3))),
                        ('test', fashion_mnist.load_split(data_config, 'test', 16)[0][:128])):
    _, neighbours = memorization.memorization_report(samples, train_images)
    novel = window_scoring.novel_quality(config, samples, train_images, neighbours)
    plain = fashion_metrics.sample_metrics(config, samples, train_images)
    if name == 'train':
      assert novel['novel_count'] == 0 and novel['novel_fashion_mnist_confidence'] is None
      assert plain['fashion_mnist_confidence'] >= target   # copies pass the plain one
    else:
      assert novel['novel_count'] >= 120
      assert novel['novel_fashion_mnist_confidence'] >= target
