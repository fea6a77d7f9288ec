"""A damaged or malformed reference .npz for --mode=eval is bad input (one line, exit 2),
reported before any sampling: not a BadZipFile traceback, not a hang in the FID's matrix
square root (a NaN), not a shape error after all the sampling."""

import os

import numpy as np
import pytest

from sparsediff_jax import errors, main
from sparsediff_jax.metrics.fid import features, fid
from sparsediff_jax.scoring import fid_scores

D = features.FEATURE_DIM


def _stats_file(path, mu=None, sigma=None, features_=None, dim=D) -> str:
  rng = np.random.default_rng(0)
  feats = rng.normal(size=(16, dim))
  stats = fid.FeatureStats(feats.mean(0) if mu is None else mu,
                           np.cov(feats, rowvar=False) if sigma is None else sigma, 16)
  meta = fid.StatsMetadata(dataset='shapes', split='train', resolution=16, num_images=16,
                           preprocessing='pytorch', weights_sha256='0' * 64)
  fid.save_stats(path, stats, meta, feats.astype(np.float32) if features_ is None
                 else features_)
  return str(path)


@pytest.mark.parametrize('keep', [0.3, 0.7, 0.95])
def test_a_truncated_reference_is_an_eval_input_error(tiny_config, tmp_path, keep):
  path = _stats_file(tmp_path / 'ref.npz')
  config = tiny_config({'eval.reference_stats': path})
  fid_scores.load_reference(config, str(tmp_path))   # intact: readable (the check is sound)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * keep)])
  with pytest.raises(errors.EvalInputError, match='not readable as reference statistics') as e:
    fid_scores.load_reference(config, str(tmp_path))
  assert main.is_bad_input(e.value) and path in str(e.value)
  assert os.path.getsize(path) == int(len(data) * keep)   # left as it was


def _nan_sigma():
  sigma = np.eye(D)
  sigma[5, 7] = np.nan
  return sigma


@pytest.mark.parametrize('arrays, message', [
    (dict(sigma=_nan_sigma()), "array 'sigma' holds 1 NaN or inf values"),
    (dict(mu=np.full(D, np.inf)), f"array 'mu' holds {D} NaN or inf values"),
    (dict(mu=np.zeros(7)), r"array 'mu' has shape \[7\], expected \[2048\] \(Inception "
                           r"pool3 features have 2048 dimensions\)"),
    (dict(mu=np.zeros((D, 1))), r"array 'mu' has shape \[2048, 1\], expected \[2048\]"),
    (dict(sigma=np.eye(D)[:-1]), r"array 'sigma' has shape \[2047, 2048\], expected "
                                 r"\[2048, 2048\]"),
    (dict(dim=8), r"array 'mu' has shape \[8\], expected \[2048\]"),
    (dict(features_=np.zeros((4, 9), np.float32)),
     r"array 'features' has shape \[4, 9\], expected \[4, 2048\]"),
    (dict(features_=np.full((4, D), np.nan, np.float32)),
     r"array 'features' holds 8192 NaN or inf values"),
])
def test_misshapen_or_nonfinite_statistics_are_refused_by_name(tiny_config, tmp_path, arrays,
                                                               message):
  path = _stats_file(tmp_path / 'ref.npz', **arrays)
  config = tiny_config({'eval.reference_stats': path})
  with pytest.raises(errors.EvalInputError, match=message) as e:
    fid_scores.load_reference(config, str(tmp_path))
  assert main.is_bad_input(e.value) and str(e.value).startswith(f'{path}: reference statistics')
  assert str(e.value).endswith('make the file again with --mode=fid_stats')


@pytest.mark.slow   # the CLI in a subprocess
def test_cli_eval_with_a_nan_reference_exits_2_before_sampling(tmp_path):
  from tests.helpers import cli_runs
  from tests.helpers.eval_fakes import tiny_config, write_checkpoint
  config = tiny_config()
  workdir = str(tmp_path / 'run')
  write_checkpoint(config, workdir)
  ref = _stats_file(tmp_path / 'nan.npz', sigma=_nan_sigma())
  cfg = tmp_path / 'tiny_cli.py'
  cfg.write_text('from tests.helpers.eval_fakes import tiny_config\n\n'
                 'def get_config():\n  return tiny_config()\n')
  before = cli_runs.snapshot(workdir)
  result = cli_runs.run(f'--config={cfg}', '--mode=eval', f'--workdir={workdir}',
                        f'--config.eval.reference_stats={ref}',
                        env=cli_runs.env(str(tmp_path)), timeout=300)
  line = cli_runs.assert_one_line_error(result, 2)
  assert f"{ref}: reference statistics array 'sigma' holds 1 NaN or inf values" in line
  assert 'sampl' not in result.stderr.replace(line, '')   # no sampler compiled or run
  assert cli_runs.snapshot(workdir) == before
