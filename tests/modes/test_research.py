"""evaluate_run on a small saved checkpoint: every metric, the files, and refusals."""

import json
import os
import shutil

import numpy as np
import pytest
from clu import metric_writers

from sparsediff_jax.runtime import checkpoints, sharding
from sparsediff_jax import errors, main
from sparsediff_jax.train_state import init_state, make_optimizer
from sparsediff_jax.modes import research
from sparsediff_jax.sweeps import sweep_table

from tests.helpers import tiny
from tests.helpers.nets import perturbed_ema


def tiny_config():
  return tiny.research_config()


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """A workdir as training leaves it: checkpoint at step 7, config.json, logged losses."""
  config = tiny_config()
  workdir = str(tmp_path_factory.mktemp('run'))
  tx, _ = make_optimizer(config)
  state = perturbed_ema(init_state(config, tx, sharding.make_mesh()), 1)
  ckpt = checkpoints.Checkpointer(os.path.join(workdir, 'checkpoints'))
  ckpt.save(7, state, {'data': {}})
  ckpt.wait()
  ckpt.close()
  main.write_run_record(config, workdir)
  writer = metric_writers.create_default_writer(workdir)
  writer.write_scalars(5, {'loss': 1.0, 'dense_loss': 2.0})
  writer.write_scalars(7, {'loss': 0.5, 'dense_loss': 0.25})
  writer.close()
  return config, workdir


def test_evaluate_run_writes_every_metric(run_dir, caplog):
  config, workdir = run_dir
  caplog.set_level('INFO')
  caplog.set_level('INFO', logger='absl')   # whatever an import set absl's own level to
  metrics = research.evaluate_run(config, workdir)
  path = metrics.pop('metrics_file')   # where it wrote them: the summary line names it
  assert path == os.path.join(workdir, research.METRICS_FILE)
  with open(path) as f:
    assert json.load(f) == metrics
  assert metrics['step'] == 7 and metrics['num_samples'] == 6
  assert metrics['num_train_images'] == 16
  assert metrics['train_loss'] == 0.5 and metrics['train_dense_loss'] == 0.25
  for key in ('consistent_fraction', 'symmetry_error', 'count_abs_error',
              'pixel_memorized_fraction', 'pixel_nn_distance_mean', 'locality_radius90',
              'locality_far_fraction'):
    assert np.isfinite(metrics[key]), key
  # A random network copies nothing and obeys none of the rules; it reads neighbours.
  assert metrics['pixel_memorized_fraction'] == 0.0
  assert metrics['locality_radius90'] >= 1.0
  assert 0.0 <= metrics['reference_pixel_memorized_fraction'] <= 1.0
  assert metrics['consistent_fraction'] == 0.0
  for name in ('samples.png', 'memorization.png', 'locality.png'):
    assert os.path.getsize(os.path.join(workdir, 'research', name)) > 500
  # the sampler's settings, as they shape the samples, and whether other data was allowed
  assert (metrics['sampling_time_steps'], metrics['sampling_rho'], metrics['sampling_s_churn'],
          metrics['allow_other_data']) == (config.sampling.time_steps, config.sampling.rho,
                                           config.sampling.s_churn, False)
  logged = [r.getMessage() for r in caplog.records]
  assert not any(m.startswith('research metrics: {') for m in logged)   # no JSON line
  assert f'all {len(metrics)} metrics: {path}' in logged
  assert any(m.startswith('  pixel_memorized_fraction') for m in logged)
  assert not [n for n in os.listdir(os.path.join(workdir, 'research')) if n.endswith('.reserved')]


def test_the_console_shows_a_short_table_and_the_json_path(tiny_config):
  metrics = {'step': 40, 'num_samples': 6, 'sampler': 'euler', 'sampling_steps': 2,
             'pixel_memorized_fraction': 0.5, 'consistent_fraction': 0.123456, 'other': 1.0,
             'memorization_onset_note': 'unknown: ...', 'sampling_seed': 0}
  lines = research.headline_lines(tiny_config(), metrics, '/w/research_metrics-2.json')
  assert lines[0] == 'research metrics at step 40 (6 samples, euler, 2 steps):'
  assert '  consistent_fraction       0.1235' in lines   # shapes' headline, 4 digits
  assert '  pixel_memorized_fraction  0.5' in lines
  assert '  memorization_onset_note   unknown: ...' in lines
  assert not any('other' in line or 'sampling_seed' in line for line in lines)
  assert lines[-1] == 'all 9 metrics: /w/research_metrics-2.json'


def test_a_different_network_is_refused(run_dir):
  config, workdir = run_dir
  other = tiny_config()
  other.model.channels = 16
  with pytest.raises(errors.ConfigMismatchError, match='model.channels: 8 -> 16'):
    research.evaluate_run(other, workdir)


def test_no_checkpoint_says_train_first(tmp_path):
  with pytest.raises(errors.MissingCheckpointError, match='train first'):
    research.evaluate_run(tiny_config(), str(tmp_path))
  assert os.listdir(tmp_path) == []    # nothing written into a wrong workdir


def test_locality_times_start_at_the_noise_end():
  from sparsediff_jax import formulations
  np.testing.assert_allclose(research.locality_times(formulations.FlowMatching(), 4),
                             [1.0, 0.75, 0.5, 0.25])
  edm = research.locality_times(formulations.EDM(), 3)
  assert edm[0] == pytest.approx(80.0) and edm[-1] == pytest.approx(0.002) and len(edm) == 3


def _tree(directory) -> dict:
  out = {}
  for root, _, files in os.walk(directory):
    for name in files:
      with open(os.path.join(root, name), 'rb') as f:
        out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
  return out


@pytest.mark.slow   # two research runs
def test_changed_data_is_refused_unless_allowed_and_reruns_never_overwrite(run_dir, tmp_path):
  config, source = run_dir
  workdir = str(tmp_path / 'run')
  shutil.copytree(source, workdir, ignore=shutil.ignore_patterns('research*'))
  path = os.path.join(workdir, 'dataset.json')
  with open(path) as f:
    record = json.load(f)
  record.update(num_examples=15, selection_sha256='0' * 64)   # trained on other examples
  with open(path, 'w') as f:
    json.dump(record, f)
  before = _tree(workdir)
  with pytest.raises(errors.ConfigMismatchError,
                     match=r'other data \(which examples changed, 15 -> 16 examples: .*'
                           r'research.allow_other_data=True to score anyway'):
    research.evaluate_run(config, workdir)
  assert _tree(workdir) == before

  allowed = tiny_config()
  allowed.research.allow_other_data = True
  first = research.evaluate_run(allowed, workdir)
  assert {k: first[k] for k in ('step', 'sampler', 'sampling_steps', 'sampling_seed',
                                'num_samples', 'ema_index', 'ema_decay')} == {
      'step': 7, 'sampler': 'euler', 'sampling_steps': 2, 'sampling_seed': 0,
      'num_samples': 6, 'ema_index': 0, 'ema_decay': config.optim.ema_decays[0]}
  written = _tree(workdir)
  allowed.sampling.seed = 5
  second = research.evaluate_run(allowed, workdir)
  assert second['sampling_seed'] == 5
  after = _tree(workdir)
  assert {k: after[k] for k in written} == written   # nothing overwritten
  assert sorted(set(after) - set(written)) == [
      'research/locality-2.png', 'research/memorization-2.png', 'research/samples-2.png',
      'research_metrics-2.json']
  assert second.pop('metrics_file') == os.path.join(workdir, 'research_metrics-2.json')
  assert json.loads(after['research_metrics-2.json']) == second
  assert sweep_table.newest_metrics_file(workdir).endswith('research_metrics-2.json')


def test_a_sampler_too_big_for_the_device_is_refused_before_sampling(run_dir, monkeypatch):
  from sparsediff_jax.runtime import memory_check
  config, workdir = run_dir
  monkeypatch.setenv(memory_check.LIMIT_ENV, '1024')   # a device of 1 KiB
  before = sorted(os.listdir(workdir))
  with pytest.raises(errors.ConfigError, match=r'the sampler \(\d+ images'):
    research.evaluate_run(config, workdir)
  assert sorted(os.listdir(workdir)) == before   # nothing written
