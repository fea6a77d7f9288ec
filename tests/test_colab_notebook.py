"""launch/colab.ipynb runs top to bottom, headless, on this checkout (so it cannot rot).

The notebook sees SPARSEDIFF_NOTEBOOK_CI (a scratch folder): it installs nothing, trains a
tiny configuration for 3 steps through the CLI, and must show the grids, the loss curves and
the sample-mode grid it produced.
"""

import os

import nbclient
import nbformat
import pytest

pytestmark = pytest.mark.slow   # executes the notebook

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, 'launch', 'colab.ipynb')


def outputs(cell, kind):
  return [o for o in cell.get('outputs', []) if o['output_type'] == kind]


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
  nbclient.NotebookClient(notebook, timeout=300, kernel_name='python3',
                          resources={'metadata': {'path': os.path.join(REPO, 'launch')}}).execute()

  code = [c for c in notebook.cells if c.cell_type == 'code']
  text = '\n'.join(o.get('text', '') for c in code for o in outputs(c, 'stream'))
  assert f'code from {REPO}' in text
  assert 'loss=' in text and 'samples_0000003.png' in text
  images = sum(len([o for o in c.outputs if 'image/png' in o.get('data', {})]) for c in code)
  assert images == 3   # the training grid, the loss curves, the sample-mode grid
  assert os.path.isfile(tmp_path / 'colab' / 'samples' / 'sample_mode_0000003.png')
  assert 'modes of this version: train, sample' in text
