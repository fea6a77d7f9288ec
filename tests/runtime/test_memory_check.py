"""Memory is checked before any work: the train state from shapes (before initialising), the
compiled train step and sampler from XLA's memory analysis (before the first step). A run
that cannot fit is one ConfigError line (exit 2) naming the estimate, the limit and the
remedies, with nothing written. SPARSEDIFF_MEMORY_LIMIT_BYTES fakes a small device."""

import os

import pytest

from tests.helpers.cli_runs import TINY, assert_one_line_error, env, run
from sparsediff_jax import errors
from sparsediff_jax.runtime import memory_check


def test_the_limit_override_and_the_peak_formula(monkeypatch):
  monkeypatch.setenv(memory_check.LIMIT_ENV, '12345')
  assert memory_check.memory_limit() == (12345, f'${memory_check.LIMIT_ENV}', 1)
  sizes = {'arguments': 100, 'outputs': 100, 'temporaries': 50, 'aliased': 90}
  assert memory_check.compiled_need(sizes) == 160   # donated outputs counted once
  monkeypatch.delenv(memory_check.LIMIT_ENV)
  limit, where, sharing = memory_check.memory_limit()   # CPU: the host's available memory
  assert where == 'available host memory' and limit > 2**26 and sharing >= 1


def test_sizes_read_in_their_unit_and_the_limit_override_is_checked(monkeypatch):
  """'0.00 GiB' said nothing: small sizes in MiB/KiB/B. The override is a whole number of
  bytes (8e9 accepted); anything else is one ConfigError, asked before JAX by main."""
  assert [memory_check.readable(b) for b in (640, 1536, 5 * 2**20, 3.5 * 2**30, 300 * 2**30)] == [
      '640 B', '1.5 KiB', '5 MiB', '3.5 GiB', '300 GiB']
  for good, value in (('1e9', 10**9), ('123', 123), (' 8E9 ', 8 * 10**9)):
    monkeypatch.setenv(memory_check.LIMIT_ENV, good)
    assert memory_check.memory_limit()[0] == value
  for bad in ('abc', '0', '-5', '1.5', 'inf', 'nan', '1e30'):
    monkeypatch.setenv(memory_check.LIMIT_ENV, bad)
    with pytest.raises(errors.ConfigError, match=rf'^\$SPARSEDIFF_MEMORY_LIMIT_BYTES={bad!r} '
                                                 'is invalid: a whole number of bytes > 0'):
      memory_check.memory_limit()


def test_a_dit_of_hidden_size_1048576_is_refused_from_shapes_at_once(tiny_config, tmp_path):
  """82 trillion parameters: jax.eval_shape of the initialiser sizes it without allocating."""
  from sparsediff_jax.modes import train
  config = tiny_config({'model.name': 'dit', 'model.hidden_size': 1048576,
                        'model.num_heads': 1, 'model.depth': 1, 'model.patch_size': 4})
  with pytest.raises(errors.ConfigError) as e:
    train.train(config, str(tmp_path / 'run'))
  message = str(e.value)
  assert message.startswith('the training state needs an estimated ') and (
      'GiB per device' in message), message
  # The state does not shrink with the batch: split it, or a smaller model.
  assert 'more than the' in message and 'a smaller model' in message, message
  assert 'sharding.fsdp' in message and 'batch_size' not in message, message
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow   # compiles the tiny train step
def test_a_step_too_big_for_the_fake_limit_is_refused_before_any_step(
    tiny_config, tmp_path, monkeypatch):
  from sparsediff_jax.runtime import sharding
  from sparsediff_jax.train_state import abstract_state, make_optimizer
  from sparsediff_jax.modes import train
  config = tiny_config()
  tx, _ = make_optimizer(config)
  state_bytes = sharding.bytes_per_device(abstract_state(config, tx,
                                                               sharding.make_mesh(config)))
  monkeypatch.setenv(memory_check.LIMIT_ENV, str(state_bytes + 1024))   # state fits, step not
  with pytest.raises(errors.ConfigError,
                     match=r'^the train step \(batch 8 of 16x16\) needs an estimated .* [KMG]iB '
                           r'per device \(arguments .*temporaries .*\), more than the .* [KMG]iB '
                           rf'of \${memory_check.LIMIT_ENV}; lower training.batch_size'):
    train.train(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow   # CLI subprocesses; each compiles a step from shapes (1-2 min on 2 cores)
@pytest.mark.parametrize('flags, what', [
    (('--config.data.image_size=4096', '--config.data.num_train_examples=64'),
     'the train step (batch 4 of 4096x4096)'),
    (('--config.data.image_size=1000', '--config.data.num_train_examples=8'),
     'the train step (batch 4 of 1000x1000)'),
    (('--config.model.name=dit', '--config.model.hidden_size=1048576',
      '--config.model.num_heads=1'), 'the training state'),
])
def test_the_cli_refuses_what_cannot_fit_with_one_line_and_writes_nothing(tmp_path, flags, what):
  e = env(str(tmp_path))
  e['SPARSEDIFF_CACHE'] = str(tmp_path / 'cache')
  result = run(*TINY, *flags, f'--workdir={tmp_path}/run', env=e)
  line = assert_one_line_error(result, code=2)
  assert line.startswith(f'error: {what} needs an estimated '), line
  assert not os.path.exists(tmp_path / 'run')
