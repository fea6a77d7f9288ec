"""--mode=sample says when its grid is the training grid of the same step byte for byte (the
same sampling.seed gives the same noise), and how to get new images."""

import shutil
import types

import pytest

from sparsediff_jax.modes import sample
from tests.helpers.eval_fakes import tiny_config, write_checkpoint


@pytest.mark.slow   # compiles the sampler three times (about 20-30 s on 2 cores)
def test_a_grid_equal_to_the_training_grid_says_how_to_get_new_images(tmp_path, monkeypatch):
  lines = []
  monkeypatch.setattr(sample, 'logging', types.SimpleNamespace(
      info=lambda fmt, *args: lines.append(fmt % args)))   # the mode's own lines
  config = tiny_config()
  workdir = str(tmp_path / 'run')
  write_checkpoint(config, workdir, step=3)
  (first,) = sample.run_sample_mode(config, workdir)
  assert not [l for l in lines if 'byte for byte' in l]   # no training grid there yet
  trained = tmp_path / 'run' / 'samples' / 'samples_0000003.png'
  shutil.copyfile(first, trained)   # what training wrote at step 3 with these settings
  (again,) = sample.run_sample_mode(config, workdir)
  assert again != first
  (line,) = [l for l in lines if 'byte for byte' in l]
  assert line == (f'this grid is {trained} byte for byte (the same noise: sampling.seed=0); '
                  'for new images set another seed, e.g. --config.sampling.seed=1')
  lines.clear()
  config.sampling.seed = 1
  sample.run_sample_mode(config, workdir)
  assert not [l for l in lines if 'byte for byte' in l]
