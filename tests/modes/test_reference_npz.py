"""A damaged reference .npz for --mode=eval is bad input (one line, exit 2), not a
BadZipFile traceback."""

import os

import numpy as np
import pytest

from sparsediff_jax import errors, main
from sparsediff_jax.metrics.fid import scoring
from sparsediff_jax.metrics.fid import fid


def _stats_file(path) -> str:
  rng = np.random.default_rng(0)
  features = rng.normal(size=(16, 8))
  stats = fid.FeatureStats(features.mean(0), np.cov(features, rowvar=False), 16)
  meta = fid.StatsMetadata(dataset='shapes', split='train', resolution=16, num_images=16,
                           preprocessing='pytorch', weights_sha256='0' * 64)
  fid.save_stats(path, stats, meta, features.astype(np.float32))
  return str(path)


@pytest.mark.parametrize('keep', [0.3, 0.7, 0.95])
def test_a_truncated_reference_is_an_eval_input_error(tiny_config, tmp_path, keep):
  path = _stats_file(tmp_path / 'ref.npz')
  config = tiny_config({'eval.reference_stats': path})
  scoring.load_reference(config, str(tmp_path))   # intact: readable (the check is sound)
  data = open(path, 'rb').read()
  with open(path, 'wb') as f:
    f.write(data[:int(len(data) * keep)])
  with pytest.raises(errors.EvalInputError, match='not readable as reference statistics') as e:
    scoring.load_reference(config, str(tmp_path))
  assert main.is_bad_input(e.value) and path in str(e.value)
  assert os.path.getsize(path) == int(len(data) * keep)   # left as it was
