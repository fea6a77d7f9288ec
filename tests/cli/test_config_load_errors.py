"""A config file that fails to load names the exception (its type and message), exit 2."""

import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _cli(*args, cwd):
  return subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', *args], cwd=cwd,
                        env={**os.environ, 'PYTHONPATH': REPO}, capture_output=True, text=True,
                        timeout=120)


@pytest.mark.slow   # CLI subprocesses (each about half a second: no JAX import)
@pytest.mark.parametrize('body, expected', [
    ('raise ValueError("the field table is broken")',
     'ValueError: the field table is broken'),
    ('def get_config():\n  raise KeyError("lost")', "KeyError: 'lost'"),
    ('def get_config():\n  return 1 / 0', 'ZeroDivisionError: division by zero'),
])
def test_a_config_raising_at_load_names_the_exception(tmp_path, body, expected):
  (tmp_path / 'bad.py').write_text(body + '\n')
  result = _cli(f'--config={tmp_path}/bad.py', f'--workdir={tmp_path}/run', cwd=tmp_path)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
  assert lines[0].startswith('error: --config=') and expected in lines[0], lines[0]
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_a_config_argument_get_config_does_not_take_is_named(tmp_path):
  result = _cli(f'--config={REPO}/configs/digits.py:foo', f'--workdir={tmp_path}/run',
                cwd=tmp_path)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
  assert 'TypeError: get_config() takes 0 positional arguments' in lines[0], lines[0]
