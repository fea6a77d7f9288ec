"""A bad config value is reported before jax or TensorFlow are imported.

Fails until validation runs before the heavy imports (validation importable without jax,
called in main before `import jax`); benchmarks/config_error_latency.py measures the time.
"""

import pytest

from tests.helpers.cli_runs import HEAVY, imported_modules


@pytest.mark.slow
@pytest.mark.parametrize('flag, field', [('--config.mask.ratio=1.5', 'mask.ratio'),
                                         ('--config.training.batch_size=0', 'batch_size'),
                                         ('--config.research.window_stop=nan',
                                          'research.window_stop'),
                                         ('--config.research.window_every=5000',
                                          'research.window_every')])
def test_bad_value_is_reported_without_importing_jax_or_tensorflow(tmp_path, flag, field):
  result, names = imported_modules(flag, cwd=tmp_path)
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert result.returncode == 2 and len(errors) == 1 and field in errors[0], result.stderr[-2000:]
  assert 'sparsediff_jax' in names   # the module list was read
  assert not names & set(HEAVY), sorted(names & set(HEAVY))
  assert not (tmp_path / 'runs').exists()


@pytest.mark.slow
@pytest.mark.parametrize('flags, field', [
    (('--config.model.name=dit', '--config.model.hidden_size=30'), 'model.hidden_size=30'),
    (('--config.model.name=dit', '--config.model.patch_size=3'), 'model.patch_size=3'),
    (('--config.diffusion.formulation=edm', '--config.diffusion.edm_sigma_data=0'),
     'diffusion.edm_sigma_data=0'),
    (('--config.mask.strategy=noise_schedule', '--config.mask.ratio_at_t0=0.9999999',
      '--config.mask.ratio_at_t1=0.9999999'), 'mask.ratio_at_t0=0.9999999'),
    (('--config.data.shapes_pairs=4',), 'data.shapes_pairs=4'),   # the datasets' own checks
    (('--config.data.name=digits', '--config.data.image_size=4'), 'data.image_size=4'),
])
def test_the_fields_of_registered_entries_are_checked_without_importing_jax(tmp_path, flags,
                                                                           field):
  result, names = imported_modules(*flags, cwd=tmp_path)
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert result.returncode == 2 and len(errors) == 1 and field in errors[0], result.stderr[-2000:]
  assert not names & set(HEAVY), sorted(names & set(HEAVY))
  assert not (tmp_path / 'runs').exists()
