"""Every data path and remote path works after the base install or stops with one line
naming what to install: CLI subprocesses in which tensorflow, tensorflow_datasets, gcsfs or
importlib_resources look uninstalled (helpers/missing_packages.py). Data paths stop before
JAX is imported; nothing is written."""

import os

import pytest

from tests.helpers import REPO
from tests.helpers.cli_runs import HEAVY, assert_one_line_error, env, imported_modules, run
from tests.helpers.missing_packages import env_without

pytestmark = pytest.mark.slow   # CLI subprocesses

TF = ('tensorflow', 'tensorflow_datasets')
EXTRA = "pip install -e '.[tf]'"


@pytest.mark.parametrize('args, hidden, words', [
    ((f'--config={REPO}/configs/celeba.py',), TF, "config.data.name='celeba' needs tensorflow, "
                                          'tensorflow_datasets, not installed'),
    ((f'--config={REPO}/configs/cifar10.py', '--mode=research'), TF,
     "config.data.name='cifar10' needs tensorflow, tensorflow_datasets"),
    ((f'--config={REPO}/configs/fashion_mnist.py', '--config.data.source=tfds'), TF,
     "config.data.name='fashion_mnist' with data.source='tfds' needs tensorflow, "
     'tensorflow_datasets'),
    ((f'--config={REPO}/configs/cifar10.py', '--config.data.download=True'), ('importlib_resources',),
     "config.data.name='cifar10' and data.download=True needs importlib_resources"),
    (('--config.data.name=folder', '--config.data.folder=/tmp'), ('tensorflow',),
     "config.data.name='folder' needs tensorflow,"),
    (('--config.eval.reference_stats=gs://bucket/ref.npz',), (*TF, 'gcsfs'),
     "config.eval.reference_stats='gs://bucket/ref.npz': gs:// paths need TensorFlow"),
])
def test_a_missing_package_is_one_line_before_jax_naming_the_extra(tmp_path, args, hidden,
                                                                   words):
  e = env_without({'PYTHONPATH': ''}, str(tmp_path / 'hook'), hidden)
  result, names = imported_modules(*args, f'--workdir={tmp_path}/run', cwd=tmp_path,
                                   extra_path=e['PYTHONPATH'].rstrip(os.pathsep))
  line = assert_one_line_error(result)
  assert words in line and ('pip install' in line), line
  assert EXTRA in line, line
  assert not names & set(HEAVY), sorted(names & set(HEAVY))
  assert not (tmp_path / 'run').exists()


def test_a_gs_workdir_without_its_file_system_is_one_line(tmp_path):
  e = env_without(env(str(tmp_path)), str(tmp_path / 'hook'), (*TF, 'gcsfs'))
  line = assert_one_line_error(run('--workdir=gs://bucket/run', env=e, timeout=300))
  assert line == ('error: --workdir=gs://bucket/run: gs:// paths need TensorFlow '
                  f"({EXTRA}) or gcsfs (pip install gcsfs), neither of which is installed"), line


@pytest.mark.parametrize('value', ['abc', '1.5'])
def test_a_bad_memory_limit_is_one_line_before_jax_and_writes_nothing(tmp_path, monkeypatch,
                                                                      value):
  monkeypatch.setenv('SPARSEDIFF_MEMORY_LIMIT_BYTES', value)
  result, names = imported_modules(f'--workdir={tmp_path}/run', cwd=tmp_path)
  line = assert_one_line_error(result)
  assert line.startswith(f"error: $SPARSEDIFF_MEMORY_LIMIT_BYTES='{value}' is invalid: a "
                         'whole number of bytes > 0 (e.g. 8000000000 or 8e9)'), line
  assert not names & set(HEAVY) and not (tmp_path / 'run').exists()
