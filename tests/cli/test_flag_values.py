"""Flags and config overrides the parser refuses in one line, in-process (no subprocess, no
JAX): a flag given without its value, a mistyped config field (with the closest field), and
a config file whose get_config() fails while overrides are given (the file is blamed, not
the override). The same errors end to end are in test_errors.py's CASES."""

import os
import sys

import pytest
from absl import flags

from sparsediff_jax import main
from tests.helpers import REPO

DIGITS = os.path.join(REPO, 'configs', 'digits.py')


@pytest.fixture
def parse(monkeypatch, tmp_path, capsys):
  """parse(*args) -> the one stderr line of parse_flags' refusal (asserting exit code 2), run
  in an empty current directory that must stay empty."""
  monkeypatch.chdir(tmp_path)

  def call(*args):
    monkeypatch.setattr(sys, 'argv', ['prog', *args])   # ml_collections reads overrides there
    with pytest.raises(SystemExit) as exit_info:
      main.parse_flags(['prog', *args])
    lines = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(lines) == 1, lines
    assert os.listdir(tmp_path) == []
    return lines[0]

  yield call
  flags.FLAGS.unparse_flags()


@pytest.mark.parametrize('args, line', [
    (('--config.mask.ratoi=0.3',), "error: unknown config field 'mask.ratoi'; did you mean "
                                   "'mask.ratio'?"),
    (('--config.maskk.ratio=0.3',), "error: unknown config field 'maskk.ratio'; did you mean "
                                    "'mask.ratio'?"),
    ((f'--config={DIGITS}', '--config.data.nme=x'),
     "error: unknown config field 'data.nme'; did you mean 'data.name'?"),
    (('--config.training.nosuch=1',), "error: unknown config field 'training.nosuch'; the "
                                      'fields are listed in sparsediff_jax/config_base.py'),
    (('--config.training.seed.low=1',), "error: unknown config field 'training.seed.low': "
                                        'config.training.seed is a value, not a section'),
])
def test_a_mistyped_field_is_named_with_the_closest_one(parse, args, line):
  assert parse(*args) == line


@pytest.mark.parametrize('raises, expected', [
    ('raise KeyError("lost")', "KeyError: 'lost'"),
    ('return {}.missing', "AttributeError: 'dict' object has no attribute 'missing'"),
])
def test_a_get_config_that_fails_is_blamed_even_with_overrides(parse, tmp_path, raises,
                                                               expected):
  config = tmp_path.parent / f'{tmp_path.name}_bad.py'
  config.write_text(f'def get_config():\n  {raises}\n')
  line = parse(f'--config={config}', '--config.mask.ratio=0.3')
  assert line == (f'error: --config={config}: cannot load it ({expected}); it must define '
                  'get_config()'), line


def test_a_config_returning_none_is_named_even_with_overrides(parse, tmp_path):
  config = tmp_path.parent / f'{tmp_path.name}_none.py'
  config.write_text('def get_config():\n  return None\n')
  line = parse(f'--config={config}', '--config.mask.ratio=0.3')
  assert line.startswith(f'error: --config={config}: get_config() returned NoneType, not a '
                         'ConfigDict'), line


@pytest.mark.parametrize('args, line', [
    (('--workdir', f'--config={DIGITS}'),
     f"error: --workdir needs a value: --workdir=VALUE (the next argument, "
     f"'--config={DIGITS}', is a flag)"),
    (('--workdir', '--workdir=run'), "error: --workdir needs a value: --workdir=VALUE (the "
                                     "next argument, '--workdir=run', is a flag)"),
    (('--mode=sample', '--workdir'), 'error: --workdir needs a value: --workdir=VALUE'),
    (('--workdir=--config=x',), "error: --workdir='--config=x' is refused: a value of "
                                "--workdir cannot start with '--'"),
    (('--config', '--workdir=run'), "error: --config needs a value: --config=VALUE (the next "
                                    "argument, '--workdir=run', is a flag)"),
    (('--mode', '--start_over'), "error: --mode needs a value: --mode=VALUE (the next "
                                 "argument, '--start_over', is a flag)"),
])
def test_a_flag_without_its_value_is_named(parse, args, line):
  assert parse(*args) == line


def test_values_of_flags_and_switches_are_left_alone(monkeypatch, tmp_path):
  """A value after a space, a negative number and a boolean switch still parse."""
  monkeypatch.chdir(tmp_path)
  argv = ['prog', '--workdir', 'run', '--start_over', '--mode', 'sample', '--process_id=-1',
          '--config.training.seed=-1']
  monkeypatch.setattr(sys, 'argv', argv)
  try:
    main.parse_flags(argv)
    assert (flags.FLAGS.workdir, flags.FLAGS.mode, flags.FLAGS.start_over,
            flags.FLAGS.process_id, flags.FLAGS.config.training.seed) == ('run', 'sample', True,
                                                                          -1, -1)
  finally:
    flags.FLAGS.unparse_flags()
  assert os.listdir(tmp_path) == []
