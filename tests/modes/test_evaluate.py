"""--mode=fid_stats and --mode=eval end to end on the shapes data with a tiny U-Net, seeded
Inception weights (a real torch-format file, so hashing, reading, conversion and caching
all run) and a handful of images; the refusals and user errors of the CLI.

The checkpoint holds seeded parameters rather than trained ones (tests/helpers/eval_fakes.py):
evaluation only needs fixed weights, and a real init + train step would cost about a
minute of CPU compilation here.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from tests.helpers.eval_fakes import seeded_inception_state_dict, tiny_config, write_checkpoint, write_torch_zip
from sparsediff_jax import data, errors, main, samplers
from sparsediff_jax.modes import evaluate, fid_stats, sample, train
from sparsediff_jax.train_state import abstract_model
from sparsediff_jax.runtime import sharding
from sparsediff_jax import formulations, validation
from sparsediff_jax.metrics.fid import features, fid, inception_weights
from sparsediff_jax.scoring import fid_scores, sample_scores

REPO = Path(__file__).parents[2]
STEP = 3
N = 6   # images on each side: batches of 4, the last one half padding


@pytest.fixture(scope='module')
def weights(tmp_path_factory):
  root = tmp_path_factory.mktemp('weights')
  path = write_torch_zip(root / 'seeded_inception.pth', seeded_inception_state_dict())
  return path, inception_weights.sha256_file(path)


def _overrides(weights_path, sha):
  return {'data.num_train_examples': N, 'eval.num_samples': N, 'eval.reference_features': 5,
          'eval.inception_weights': str(weights_path), 'eval.inception_sha256': sha,
          'sampling.save_npz': True, 'eval.train_fid_every': 1, 'eval.train_fid_samples': N}


def _mean_term(a, b):
  """||mu_a - mu_b||^2: a lower bound of the Frechet distance (its trace term is >= 0)."""
  return float(np.sum((a.mu - b.mu) ** 2))


@pytest.fixture(scope='module')
def run(tmp_path_factory, weights):
  """fid_stats, then eval and a training FID on checkpoint STEP, recording the statistics
  that reach fid_from_stats and what it returned: the FID is computed for real (the square
  root of a 2048 x 2048 matrix, tens of CPU seconds)."""
  root = tmp_path_factory.mktemp('eval')
  config = tiny_config(**_overrides(*weights))
  workdir = str(root / 'run')
  mesh = sharding.make_mesh()
  # Placed as training holds it, so the training FID reuses eval's compiled sampler.
  state = jax.device_put(write_checkpoint(config, workdir, step=STEP), sharding.replicated(mesh))
  recorded, real_fid = [], fid.fid_from_stats

  def recording_fid(a, b, eps=1e-6):
    value = real_fid(a, b, eps)
    recorded.append((a, b, value))
    return value

  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('SPARSEDIFF_CACHE', str(root / 'cache'))
    mp.setattr(fid, 'fid_from_stats', recording_fid)
    reference = fid_stats.run_fid_stats_mode(config, workdir)
    metrics = evaluate.run_eval_mode(config, workdir)
    graphdef, _ = abstract_model(config)
    train_fid = fid_scores.make_train_fid(config, graphdef, mesh, workdir)
    train_fid_out = train_fid(state)
  return dict(config=config, workdir=workdir, reference=reference, metrics=metrics,
              recorded=recorded, train_fid=train_fid_out, state=state, root=root)


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_reference_statistics(run):
  config = run['config']
  stats, meta = fid.load_stats(run['reference'])
  assert run['reference'] == os.path.join(run['workdir'], 'fid_stats', 'shapes_16px_pytorch.npz')
  assert meta == fid.StatsMetadata('shapes', 'train', 16, N, 'pytorch',
                                   config.eval.inception_sha256)
  # Streaming in batches of 4 with the last one half padding gives the statistics of all N.
  images = data.load_train_images(config)
  featurizer = features.Featurizer(config.eval, sharding.make_mesh())
  direct = np.concatenate([featurizer(images[:4]), featurizer(images[2:6])[2:]])
  want = fid.feature_stats(direct)
  np.testing.assert_allclose(stats.mu, want.mu, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(stats.sigma, want.sigma, rtol=1e-5, atol=1e-6)
  # The stored real features: a seeded random subset of 5 of the N, in index order.
  chosen = np.sort(np.random.default_rng(0).choice(N, 5, replace=False))
  np.testing.assert_allclose(fid.load_features(run['reference']), direct[chosen], rtol=1e-6)


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_eval_metrics_json(run):
  config, workdir = run['config'], run['workdir']
  with open(os.path.join(workdir, 'eval', f'metrics_{STEP}.json')) as f:
    metrics = json.load(f)
  assert metrics == json.loads(json.dumps(run['metrics']))
  nfe = samplers.num_evaluations(formulations.get_formulation(config.diffusion), 'heun', 2)
  assert metrics['nfe'] == nfe == 3
  expected = dict(step=STEP, num_samples=N, sampler='heun', num_steps=2, ema_index=0,
                  ema_decay=0.999, reference=os.path.abspath(run['reference']),
                  reference_dataset='shapes', reference_split='train', reference_num_images=N,
                  resolution=16, preprocessing='pytorch', time_steps='default', seed=0,
                  inception_weights_sha256=config.eval.inception_sha256,
                  num_kid_pr_features_generated=5, num_kid_pr_features_reference=5)
  assert {k: metrics[k] for k in expected} == expected
  generated, reference, value = run['recorded'][0]   # eval's; the training FID's is [1]
  assert generated.count == N
  np.testing.assert_array_equal(reference.mu, fid.load_stats(run['reference'])[0].mu)
  # The real Frechet distance of the recorded statistics, above its mean term.
  assert metrics['fid'] == value and np.isfinite(value)
  assert value >= _mean_term(generated, reference) * (1 - 1e-6) > 0
  assert np.isfinite(metrics['kid']) and metrics['kid_std'] >= 0
  assert 0 <= metrics['precision'] <= 1 and 0 <= metrics['recall'] <= 1
  grid, npz = metrics['samples']
  assert os.path.isfile(grid) and grid.endswith(f'eval/samples_{STEP}.png')
  # Memorization and consistency of the samples (seeded random weights: noise, so nothing
  # is memorized and no image has the right objects).
  assert metrics['memorization_samples'] == N
  for space in ('pixel', 'feature'):
    assert metrics[f'memorization_{space}_memorized_fraction'] == 0.0
    assert metrics[f'memorization_{space}_nn_distance_mean'] > 0
    assert 0 < metrics[f'memorization_{space}_nn_ratio_mean'] <= 1
  assert metrics['count_exact_fraction'] == 0.0
  assert os.path.isfile(metrics['memorization_grid'])
  with np.load(npz) as f:
    assert f['images'].shape == (N, 16, 16, 3) and f['images'].dtype == np.uint8
    assert int(f['nfe']) == 3 and int(f['step']) == STEP


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_training_fid_uses_the_same_samples_as_eval(run):
  (eval_gen, eval_ref, eval_fid), (train_gen, train_ref, train_fid) = run['recorded']
  assert run['train_fid'] == {f'fid_{N}': train_fid} and train_fid == eval_fid
  np.testing.assert_array_equal(train_ref.mu, eval_ref.mu)
  # The same EMA parameters, seed and batches: the same samples and features.
  assert train_gen.count == N
  np.testing.assert_array_equal(train_gen.mu, eval_gen.mu)
  np.testing.assert_array_equal(train_gen.sigma, eval_gen.sigma)


def test_sample_metrics_on_small_features():
  """The metric set on D = 16 features, where the matrix square root is cheap."""
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(40, 16)), rng.normal(size=(30, 16)) + 0.5
  out = fid_scores.sample_metrics(fid.feature_stats(fake), fake[:20], fid.feature_stats(real),
                               real[:25])
  want = fid.frechet_distance(fake.mean(0), np.cov(fake, rowvar=False), real.mean(0),
                              np.cov(real, rowvar=False))
  assert out['fid'] == pytest.approx(want) and 'fid_note' not in out
  assert (out['kid'], out['kid_std']) == fid.kernel_inception_distance(
      fake[:20], real[:25], num_subsets=100, subset_size=1000)
  assert (out['precision'], out['recall']) == fid.precision_recall(real[:25], fake[:20], k=3)
  few = fid_scores.sample_metrics(fid.feature_stats(fake[:10]), fake[:3],
                               fid.feature_stats(real), None)
  assert 'fewer than feature dimension' in few['fid_note']
  assert few['kid'] is few['precision'] is few['recall'] is None


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_sample_mode_writes_grid_and_npz(run):
  config = tiny_config(**_overrides(run['config'].eval.inception_weights,
                                    run['config'].eval.inception_sha256))
  config.sampling.num_samples = 5
  paths = sample.run_sample_mode(config, run['workdir'])
  assert paths[0].endswith(f'samples/sample_mode_{STEP:07d}.png') and os.path.isfile(paths[0])
  with np.load(paths[1]) as f, np.load(run['metrics']['samples'][1]) as e:
    np.testing.assert_array_equal(f['images'], e['images'][:5])


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_reference_of_another_resolution_or_weights_is_refused(run, tmp_path):
  config = tiny_config(**_overrides(run['config'].eval.inception_weights,
                                    run['config'].eval.inception_sha256))
  stats, meta = fid.load_stats(run['reference'])
  config.eval.reference_stats = str(tmp_path / 'other_weights.npz')
  fid.save_stats(config.eval.reference_stats, stats,
                 dataclasses.replace(meta, weights_sha256='0' * 64))
  with pytest.raises(fid.StatsMismatchError, match="field 'weights_sha256' differs"):
    evaluate.run_eval_mode(config, run['workdir'])
  config.eval.reference_stats = run['reference']
  config.data.image_size = 32
  with pytest.raises(fid.StatsMismatchError, match=r"field 'resolution' differs \(16 vs 32\)"):
    fid_scores.load_reference(config, run['workdir'])
  assert sorted(os.listdir(os.path.join(run['workdir'], 'eval'))) == [
      f'memorization_{STEP}.png', f'metrics_{STEP}.json', f'samples_{STEP}.npz',
      f'samples_{STEP}.png']


def _cli(args, tmp_path, cwd):
  """Runs the CLI with the tiny config (written as a config file) plus `args`."""
  cfg = tmp_path / 'tiny_cli.py'
  overrides = dict(_overrides('', 'pytorch-fid'), **{'eval.train_fid_every': 0})
  cfg.write_text(f'from tests.helpers.eval_fakes import tiny_config\n\ndef get_config():\n'
                 f'  return tiny_config(**{overrides!r})\n')
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', f'--config={cfg}', *args],
                        env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_cli_refuses_reference_made_with_another_preprocessing(run, tmp_path):
  stats, meta = fid.load_stats(run['reference'])
  other = tmp_path / 'tf_reference.npz'
  fid.save_stats(other, stats, dataclasses.replace(meta, preprocessing='tf'))
  before = sorted(os.listdir(os.path.join(run['workdir'], 'eval')))
  proc = _cli(['--mode=eval', f'--workdir={run["workdir"]}',
               f'--config.eval.reference_stats={other}'], tmp_path, tmp_path)
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: ') and str(other) in last
  assert "field 'preprocessing' differs ('tf' vs 'pytorch')" in last
  assert sorted(os.listdir(os.path.join(run['workdir'], 'eval'))) == before


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_cli_eval_without_checkpoint_exits_2(tmp_path):
  workdir = tmp_path / 'empty_run'
  proc = _cli(['--mode=eval', f'--workdir={workdir}'], tmp_path, tmp_path)
  assert proc.returncode == 2, proc.stderr[-2000:]
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: no checkpoint in ') and '--mode=train' in last
  assert not workdir.exists()


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_missing_reference_and_too_few_samples_are_user_errors(run, tmp_path):
  config = tiny_config(**_overrides(run['config'].eval.inception_weights,
                                    run['config'].eval.inception_sha256))
  config.eval.reference_stats = str(tmp_path / 'absent.npz')
  with pytest.raises(errors.EvalInputError, match='--mode=fid_stats'):
    evaluate.run_eval_mode(config, run['workdir'])
  # Training with a training FID needs the reference too, and says so before it starts.
  with pytest.raises(errors.EvalInputError, match='--mode=fid_stats'):
    train.train(config, str(tmp_path / 'new_run'), hooks=(fid_scores.train_fid_hook,))
  assert not (tmp_path / 'new_run').exists()
  config.data.num_train_examples = 1
  with pytest.raises(errors.EvalInputError, match='need at least 2'):
    fid_stats.run_fid_stats_mode(config, str(tmp_path))
  assert not (tmp_path / 'fid_stats').exists()
  config.eval.num_samples = 1
  with pytest.raises(validation.ConfigError, match=r'eval\.num_samples=1.*at least 2'):
    validation.validate_config(config, 1)
  assert main.is_bad_input(errors.EvalInputError('x'))


def test_bad_weights_file_is_a_user_error(weights, tmp_path):
  path, sha = weights
  cut = tmp_path / 'cut.pth'
  with open(path, 'rb') as src, open(cut, 'wb') as dst:
    dst.write(src.read(os.path.getsize(path) // 2))
  config = tiny_config(**_overrides(cut, sha))
  with pytest.raises(inception_weights.InceptionWeightsError, match='SHA-256 mismatch'):
    features.Featurizer(config.eval, sharding.make_mesh())
  config.eval.inception_sha256 = ''   # own weights: any hash, but the file must read
  with pytest.raises(inception_weights.InceptionWeightsError, match='cut.pth: cannot read'):
    features.Featurizer(config.eval, sharding.make_mesh())
  config.eval.inception_weights = str(tmp_path / 'absent.pth')
  with pytest.raises(inception_weights.InceptionWeightsError, match='no such file'):
    features.Featurizer(config.eval, sharding.make_mesh())
  assert main.is_bad_input(inception_weights.InceptionWeightsError('x'))


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_eval_research_metrics_find_copies_of_training_images(run, weights, tmp_path):
  """Samples that are training images are memorized in both spaces, and consistent."""
  config = run['config']
  mesh = sharding.make_mesh()
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('SPARSEDIFF_CACHE', str(run['root'] / 'cache'))
    featurizer = features.Featurizer(config.eval, mesh)
  copies = data.load_train_images(config)[:4]
  batches = [(sharding.global_batch(copies, mesh), np.arange(4))]
  _, copy_features = features.collect(featurizer, batches, keep=lambda idx: idx >= 0)
  out = sample_scores.research_metrics(config, featurizer, mesh, copies, copy_features,
                                       str(tmp_path), step=7)
  assert out['memorization_pixel_memorized_fraction'] == 1.0
  assert out['memorization_feature_memorized_fraction'] == 1.0
  assert out['memorization_pixel_nn_distance_mean'] < 1e-6
  assert out['count_exact_fraction'] == 1.0
  assert os.path.isfile(tmp_path / 'memorization_7.png')


@pytest.mark.slow   # the end-to-end evaluation (real FID of 2048-d features) or the CLI
def test_eval_refuses_a_sampler_too_big_for_the_device(run, monkeypatch):
  from sparsediff_jax.runtime import memory_check
  before = sorted(os.listdir(run['workdir']))
  monkeypatch.setenv(memory_check.LIMIT_ENV, '1024')   # a device of 1 KiB
  monkeypatch.setenv('SPARSEDIFF_CACHE', str(run['root'] / 'cache'))
  with pytest.raises(errors.ConfigError, match=r'the sampler \(\d+ images'):
    evaluate.run_eval_mode(run['config'], run['workdir'])
  assert sorted(os.listdir(run['workdir'])) == before   # nothing written
