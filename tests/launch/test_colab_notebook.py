"""launch/colab.ipynb runs top to bottom, headless, on this checkout (so it cannot rot).

The notebook sees SPARSEDIFF_NOTEBOOK_CI (a scratch folder): it installs nothing, trains a
tiny configuration for 3 steps through the CLI, and must show the grids, the loss curves and
the sample-mode grid it produced. CI runs it in the `lowest` environment too, Colab's
preinstalled versions (.ci/lowest-constraints.txt), as well as with the newest.
"""

import ast
import glob
import importlib.metadata
import importlib.util
import os
import re
import sys
import tomllib

import nbclient
import nbformat
import pytest

from tests.helpers import REPO

NOTEBOOK = os.path.join(REPO, 'launch', 'colab.ipynb')


def outputs(cell, kind):
  return [o for o in cell.get('outputs', []) if o['output_type'] == kind]


# Run after the notebook, in its kernel: it never started a JAX backend (which would hold a
# TPU), and use_storage() signs in and brings gcsfs for gs:// only, gcsfs only where TF and
# it are absent.
AFTER = """
import sys, types
if 'jax' in sys.modules:   # TensorBoard's reader imports TF, and TF imports jax
    from jax._src import xla_bridge
    print('backend started by the notebook:', xla_bridge.backends_are_initialized())
else:
    print('backend started by the notebook: False')
calls = []
colab = types.ModuleType('google.colab')
colab.auth = types.SimpleNamespace(authenticate_user=lambda: calls.append('auth'))
sys.modules['google.colab'] = colab
use_storage('/content/runs/x')
print('local:', calls)
find_spec, run = importlib.util.find_spec, subprocess.run
importlib.util.find_spec = lambda n: None if n in ('tensorflow', 'gcsfs') else find_spec(n)
subprocess.run = lambda command, check: calls.append(command[-1])
try:
    use_storage('gs://bucket/runs/x')
finally:
    importlib.util.find_spec, subprocess.run = find_spec, run
print('gs:', calls)
"""


@pytest.mark.slow   # executes the notebook
def test_colab_notebook_runs_headless(tmp_path, monkeypatch):
  monkeypatch.setenv('SPARSEDIFF_NOTEBOOK_CI', str(tmp_path))
  monkeypatch.setenv('TMPDIR', str(tmp_path))
  monkeypatch.setenv('JAX_PLATFORMS', 'cpu')
  # Cheaper XLA:CPU compilation for the CLI runs the notebook starts.
  monkeypatch.setenv('XLA_FLAGS', '--xla_backend_optimization_level=0 '
                                  '--xla_llvm_disable_expensive_passes=true')
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  assert not any(c.get('outputs') for c in notebook.cells if c.cell_type == 'code'), (
      'commit the notebook without outputs')
  notebook.cells.append(nbformat.v4.new_code_cell(AFTER))
  nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': os.path.join(REPO, 'launch')}}).execute()

  code = [c for c in notebook.cells if c.cell_type == 'code']
  text = '\n'.join(o.get('text', '') for c in code for o in outputs(c, 'stream'))
  assert f'code from {REPO}' in text
  versions = ', '.join(f'{name} {importlib.metadata.version(name)}'
                       for name in ('jax', 'flax', 'optax', 'orbax-checkpoint'))
  assert versions in text   # the environment's own versions, untouched
  assert 'backend started by the notebook: False' in text
  fsspec = importlib.metadata.version('fsspec')
  assert "local: []" in text and f"gs: ['auth', 'gcsfs=={fsspec}']" in text
  assert re.search(r'step \d+: loss [\d.e-]+, dense loss ', text) and 'samples_0000003.png' in text
  images = sum(len([o for o in c.outputs if 'image/png' in o.get('data', {})]) for c in code)
  assert images == 3   # the training grid, the loss curves, the sample-mode grid
  assert os.path.isfile(tmp_path / 'colab' / 'samples' / 'sample_mode_0000003.png')
  # --mode=sample with training's settings draws training's last grid again, and says so.
  assert 'samples_0000003.png byte for byte' in text and '--config.sampling.seed=1' in text
  assert 'modes of this version: train, sample' in text
  # The embedded run needs no TensorFlow: the project alone, Colab's packages pinned.
  assert re.search(rf'^\$ pip install --quiet -c \S+\.txt -e {re.escape(REPO)}$', text, re.M)


# ---- the install cell's choice, on each Colab runtime (its functions, without running it) ----

def install_cell() -> dict:
  """The install cell's constants and functions (not its statements), in a namespace."""
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  source = next(c for c in notebook.cells if c.cell_type == 'code').source
  tree = ast.parse(source)
  tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom, ast.FunctionDef))
               or isinstance(n, ast.Assign)
               and getattr(n.targets[0], 'id', None) in ('TFDS_CONFIGS', 'KEEP')]
  namespace = {}
  exec(compile(tree, 'install cell', 'exec'), namespace)
  return namespace


# Colab's runtimes by the modules they have: CPU and GPU ship TensorFlow and TFDS, TPU only TFDS.
RUNTIMES = {'cpu_gpu': {'tensorflow', 'tensorflow_datasets'}, 'tpu': {'tensorflow_datasets'},
            'tf_without_tfds': {'tensorflow'}}


@pytest.mark.parametrize('config, runtime, target, more', [
    ('', 'tpu', '/c', []),
    ('configs/digits.py', 'tpu', '/c', []),
    ('configs/fashion_mnist.py', 'cpu_gpu', '/c', []),
    ('configs/celeba.py', 'cpu_gpu', '/c', []),                # nothing to add, no second TF
    ('configs/celeba.py', 'tpu', '/c[tf]', []),                # TF and TFDS from the extra
    ('configs/cifar10.py', 'tpu', '/c[tf]', []),
    ('configs/celeba.py', 'tf_without_tfds', '/c', ['tensorflow-datasets>=4.9.10,<5']),
])
def test_the_install_cell_adds_what_the_config_needs_and_pins_colabs_jax(config, runtime,
                                                                        target, more):
  cell = install_cell()
  command = cell['install_command']('/c', config, '/keep.txt', RUNTIMES[runtime].__contains__)
  assert command == [sys.executable, '-m', 'pip', 'install', '--quiet', '-c', '/keep.txt',
                     '-e', target, *more]
  pins = cell['kept_versions']()
  assert f'jax=={importlib.metadata.version("jax")}' in pins
  assert f'jaxlib=={importlib.metadata.version("jaxlib")}' in pins
  assert f'flax=={importlib.metadata.version("flax")}' in pins


def test_the_install_cell_knows_which_configs_read_tfds():
  """TFDS_CONFIGS are exactly the configs whose dataset is a TFDS one, and the TFDS it adds
  beside an installed TensorFlow is the [tf] extra's."""
  from sparsediff_jax.data import tfds_sources
  cell = install_cell()
  reads_tfds = set()
  for path in sorted(glob.glob(os.path.join(REPO, 'configs', '*.py'))):
    spec = importlib.util.spec_from_file_location('config_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = module.get_config().data
    if data.name in tfds_sources.SOURCES or data.get('source') == 'tfds':
      reads_tfds.add(os.path.relpath(path, REPO))
  assert reads_tfds and set(cell['TFDS_CONFIGS']) == reads_tfds
  extra = tomllib.load(open(os.path.join(REPO, 'pyproject.toml'), 'rb'))['project'][
      'optional-dependencies']['tf']
  command = cell['install_command']('/c', 'configs/celeba.py', '/k', {'tensorflow'}.__contains__)
  assert command[-2:-1] == ['/c'] and command[-1] in extra


@pytest.mark.slow   # a Jupyter kernel
def test_an_old_python_is_one_error_line(tmp_path, monkeypatch):
  """The install cell's first statement: Python < 3.11 stops with one line (faked here)."""
  monkeypatch.delenv('SPARSEDIFF_NOTEBOOK_CI', raising=False)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  install = next(c for c in notebook.cells if c.cell_type == 'code')
  install.source = install.source.replace('sys.version_info < (3, 11)', 'True')
  notebook.cells = [install]
  nbclient.NotebookClient(notebook, timeout=120, kernel_name='python3', allow_errors=True,
                          resources={'metadata': {'path': str(tmp_path)}}).execute()
  (error,) = outputs(install, 'error')
  version = '.'.join(map(str, sys.version_info[:3]))
  assert error['traceback'] == [f'error: sparsediff_jax needs Python >= 3.11; this runtime has '
                                f'Python {version}']
  assert os.listdir(tmp_path) == []


@pytest.mark.slow   # a Jupyter kernel
def test_an_unset_repository_url_is_one_error_line(tmp_path, monkeypatch):
  """Opened outside a checkout (as on Colab) with REPO_URL left empty: the install cell stops
  with one line naming the form field, and clones or installs nothing."""
  monkeypatch.delenv('SPARSEDIFF_NOTEBOOK_CI', raising=False)
  notebook = nbformat.read(NOTEBOOK, as_version=4)
  install = next(c for c in notebook.cells if c.cell_type == 'code')
  assert "REPO_URL = ''  # @param {type:\"string\"}" in install.source   # a Colab form field
  notebook.cells = [install]
  client = nbclient.NotebookClient(notebook, timeout=120, kernel_name='python3',
                                   allow_errors=True,
                                   resources={'metadata': {'path': str(tmp_path)}})
  client.execute()
  (error,) = outputs(install, 'error')
  assert error['traceback'] == [
      'error: set REPO_URL (the form field of this cell) to the git URL of your copy of '
      'sparsediff_jax, e.g. https://github.com/ACCOUNT/sparsediff_jax.git, and run the cell '
      'again']
  assert os.listdir(tmp_path) == []
