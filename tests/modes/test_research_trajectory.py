"""research.trajectory: every checkpoint scored in step order through the one restore path,
the onset of memorization, and the memorization floor of each dataset (DATASET_FRESH)."""

import json
import math
import os

import jax
import numpy as np
import pytest
from clu import metric_writers

from sparsediff_jax.runtime import checkpoints, sharding

from sparsediff_jax import train_state as state
from sparsediff_jax import errors, main, registry
from sparsediff_jax.train_state import init_state, make_optimizer
from sparsediff_jax.data import digits, shapes
from sparsediff_jax.scoring import sample_scores, trajectory
from sparsediff_jax.modes import research

from tests.helpers import tiny
from tests.helpers.nets import perturbed_ema

STEPS = (2, 4, 6, 8)            # more than training.keep_checkpoints=3: none may be trimmed
LOGGED = {1: 0.9, 3: 0.7, 5: 0.5, 7: 0.3}   # dense_loss by logged step


def trajectory_config():
  return tiny.research_config({'research.trajectory': True})


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A workdir with checkpoints at STEPS (each a differently perturbed EMA) and logged losses."""
  config = trajectory_config()
  workdir = str(tmp_path_factory.mktemp('run'))
  tx, _ = make_optimizer(config)
  initial = init_state(config, tx, sharding.make_mesh())
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=10)
  for step in STEPS:
    ckpt.save(step, perturbed_ema(initial, step), {'data': {}})
    ckpt.wait()
  ckpt.close()
  main.write_run_record(config, workdir)
  writer = metric_writers.create_default_writer(workdir)
  for step, value in LOGGED.items():
    writer.write_scalars(step, {'loss': 2 * value, 'dense_loss': value})
  writer.close()
  return config, workdir


@pytest.fixture(scope='module')
def evaluated(run_dir):
  config, workdir = run_dir
  return research.evaluate_run(config, workdir)


@pytest.mark.slow   # four checkpoints sampled and scored: about a minute on 2 CPU cores
def test_every_checkpoint_is_scored_in_step_order(run_dir, evaluated):
  config, workdir = run_dir
  metrics = evaluated
  with open(os.path.join(workdir, 'research', research.TRAJECTORY_FILE)) as f:
    trajectory = json.load(f)
  assert [e['step'] for e in trajectory] == list(STEPS)
  assert metrics['step'] == 8 and metrics['trajectory_length'] == len(STEPS)
  for entry in trajectory:
    for key in ('pixel_memorized_fraction', 'pixel_nn_distance_mean',
                'consistent_fraction', 'symmetry_error'):   # shapes' dataset metrics too
      assert np.isfinite(entry[key]), (entry['step'], key)
  # The losses logged at or before each checkpoint's step.
  assert [e['train_dense_loss'] for e in trajectory] == pytest.approx([0.9, 0.7, 0.5, 0.3])
  # Each step's own parameters generated the samples: every distance differs.
  assert len({e['pixel_nn_distance_mean'] for e in trajectory}) == len(STEPS)
  # The newest point is the full evaluation's own.
  for key in ('pixel_memorized_fraction', 'pixel_nn_distance_mean', 'consistent_fraction'):
    assert trajectory[-1][key] == metrics[key]
  # Random networks copy nothing: no onset.
  assert math.isnan(metrics['memorization_onset_step'])
  assert os.path.getsize(os.path.join(workdir, 'research', 'trajectory.png')) > 1000
  # Reading a run deletes none of its checkpoints.
  assert sorted(int(n) for n in os.listdir(os.path.join(workdir, 'checkpoints'))
                if n.isdigit()) == list(STEPS)
  with open(os.path.join(workdir, research.METRICS_FILE)) as f:
    assert math.isnan(json.load(f)['memorization_onset_step'])


@pytest.mark.slow
def test_restore_run_takes_the_given_step(run_dir, evaluated):
  config, workdir = run_dir
  at4 = state.restore_run(config, workdir, step=4)
  newest = state.restore_run(config, workdir)
  assert (at4.step, newest.step) == (4, 8)
  a, b = jax.tree.leaves(at4.params(config)), jax.tree.leaves(newest.params(config))
  assert any(not np.array_equal(x, y) for x, y in zip(a, b))
  with pytest.raises(errors.CheckpointError, match='checkpoint 5 is not in'):
    state.restore_run(config, workdir, step=5)
  # Restored against another step's arrays (as a trajectory does): the same state.
  like = state.restore_run(config, workdir, step=4, like=newest)
  assert like.step == 4 and like.graphdef == at4.graphdef
  for x, y in zip(jax.tree.leaves(like.state), jax.tree.leaves(at4.state)):
    np.testing.assert_array_equal(x, y)
    assert x.sharding == y.sharding


def test_onset_is_the_first_step_with_half_the_samples_memorized():
  onset = trajectory.memorization_onset_step
  assert onset([100, 200, 300], [0.1, 0.5, 0.9]) == 200.0
  assert onset([100, 200, 300], [0.6, 0.2, 0.9]) == 100.0      # the first, not a later one
  assert onset([100, 200], [0.49, 0.499]) != onset([100, 200], [0.49, 0.499])   # NaN
  assert math.isnan(onset([], []))
  assert onset([5, 10], [0.2, 0.3], threshold=0.25) == 10.0


def test_an_onset_that_missing_steps_could_hold_is_unknown_not_never():
  report = trajectory.onset_report
  full = report([2, 4, 6], [0.1, 0.2, 0.3])   # every listed step scored: never memorized
  assert full['trajectory_length'] == 3 and full['trajectory_missing_steps'] == 0
  assert math.isnan(full['memorization_onset_step']) and 'memorization_onset_note' not in full
  # a live trainer deleted 2 and 4 before they were read: only the newest was scored
  lost = report([6], [0.3], missing=[4, 2])
  assert 'memorization_onset_step' not in lost and lost['trajectory_missing_steps'] == 2
  assert lost['memorization_onset_note'].startswith('unknown: checkpoints [2, 4] were listed '
                                                    'but could not be read')
  assert 'memorization_onset_step' not in report([2, 6], [0.1, 0.9], missing=[4])
  after = report([2, 4], [0.1, 0.9], missing=[6])   # a missing step after the onset: known
  assert after['memorization_onset_step'] == 4.0 and 'memorization_onset_note' not in after


def test_logged_at_takes_the_newest_value_up_to_the_step():
  series = {'dense_loss': {10: 1.0, 20: 0.5}, 'loss': {20: 2.0}}
  assert trajectory.logged_at(series, 15) == {'train_dense_loss': 1.0}
  assert trajectory.logged_at(series, 20) == {'train_dense_loss': 0.5, 'train_loss': 2.0}
  assert trajectory.logged_at(series) == {'train_dense_loss': 0.5, 'train_loss': 2.0}
  assert trajectory.logged_at(series, 5) == {}


def test_logged_series_reads_metrics_jsonl_as_the_event_files(tmp_path):
  from sparsediff_jax.console import tb_writer
  writer = tb_writer.create_writer(str(tmp_path), process_index=0)
  for step, value in ((10, 0.123456789), (20, 0.5)):
    writer.write_scalars(step, {'loss': np.float32(value), 'dense_loss': np.float32(2 * value),
                                'grad_norm': np.float32(1.0)})
  writer.close()
  from_jsonl = trajectory.logged_series(str(tmp_path))
  os.remove(tmp_path / 'metrics.jsonl')
  from_events = trajectory.logged_series(str(tmp_path))
  assert from_jsonl == from_events == {'loss': {10: float(np.float32(0.123456789)), 20: 0.5},
                                       'dense_loss': {10: float(np.float32(0.246913578)),
                                                      20: 1.0}}


def test_fresh_shapes_are_the_images_past_the_training_subset(tiny_config):
  config = tiny_config()
  fresh = registry.DATASET_FRESH.get('shapes')(config, 5, 64)
  d = config.data
  np.testing.assert_array_equal(
      fresh, shapes.make_shapes(5, d.image_size, d.shapes_pairs, d.shapes_seed, start=64))


def test_digits_floor_uses_the_heldout_rows(tiny_config):
  config = tiny_config({'data.name': 'digits', 'data.image_size': 8})
  fresh = registry.DATASET_FRESH.get('digits')(config, 10, 32)
  np.testing.assert_array_equal(fresh, digits.load_split('heldout', 8)[0][:10])
  assert len(registry.DATASET_FRESH.get('digits')(config, 10_000, 32)) == digits.NUM_HELDOUT
  train_images = digits.load_split('train', 8)[0][:32]
  floor = sample_scores.memorization_floor(config, 50, train_images)
  assert set(floor) == {'reference_pixel_memorized_fraction',
                        'reference_pixel_nn_distance_mean', 'reference_pixel_nn_ratio_mean'}
  assert 0.0 <= floor['reference_pixel_memorized_fraction'] < 0.5
  assert floor['reference_pixel_nn_distance_mean'] > 0.1    # no held-out digit is a copy
  # Against a training set that holds the fresh images themselves, every one is memorized.
  with_copies = np.concatenate([train_images, fresh])
  copied = sample_scores.memorization_floor(config, 10, with_copies)
  assert copied['reference_pixel_memorized_fraction'] == 1.0
  assert copied['reference_pixel_nn_distance_mean'] == pytest.approx(0.0, abs=1e-5)


def test_a_dataset_without_fresh_images_has_no_floor(tiny_config):
  config = tiny_config({'data.name': 'folder'})
  assert 'folder' not in registry.DATASET_FRESH
  assert sample_scores.memorization_floor(config, 10, np.zeros((4, 16, 16, 3), np.uint8)) == {}


def test_trajectory_field_must_be_a_bool(tiny_config):
  from sparsediff_jax import validation
  config = tiny_config()
  with config.ignore_type():   # what a config file may hold; flags are type-checked earlier
    config.research.trajectory = 'yes'
  with pytest.raises(errors.ConfigError, match='research.trajectory'):
    validation.validate_fields(config)
  validation.validate_fields(tiny_config({'research.trajectory': True}))
