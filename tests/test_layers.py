"""The dependency rule (sparsediff_jax.LAYERS): every import of a package module runs down
the table of layers or stays in its own top-level package; an import that runs up fails
with the importing file and the imported name."""

import os

import sparsediff_jax
from tests.modes.test_modes import PACKAGE, imported_names, package_modules

# Imports that run up, each named with why it stays:
KNOWN_UPWARD = {
    # RunStart.check (deferred import) describes the dataset a run starts on, as the record.
    ('sparsediff_jax.runtime.run_dir', 'data'),
}


def layer_of() -> dict[str, int]:
  return {name: i for i, names in enumerate(sparsediff_jax.LAYERS) for name in names}


def upward_imports(module: str, file: str, layers: dict[str, int]) -> list[str]:
  """'file: imports name (layer a above layer b)' for every import of `module` that runs up."""
  own = module.split('.')[1]
  bad = []
  for name in sorted(imported_names(module, file)):
    parts = name.split('.')
    if parts[0] != 'sparsediff_jax' or len(parts) < 2 or parts[1] not in layers:
      continue   # another library, the package itself, or a name it exports (__version__)
    if parts[1] != own and layers[parts[1]] > layers[own] and (
        (module, parts[1]) not in KNOWN_UPWARD):
      bad.append(f'{os.path.relpath(file, os.path.dirname(PACKAGE))}: imports {name} '
                 f'(layer {layers[parts[1]]} {parts[1]!r} is above layer {layers[own]} {own!r})')
  return bad


def test_every_top_level_name_has_a_layer():
  layers = layer_of()
  tops = {module.split('.')[1] for module, _ in package_modules()}
  assert tops - set(layers) == set(), 'add the new module or package to sparsediff_jax.LAYERS'
  assert set(layers) - tops == set(), 'LAYERS names a module that is gone'
  assert sum(map(len, sparsediff_jax.LAYERS)) == len(layers)   # each name in one layer


def test_no_import_runs_up_a_layer():
  layers = layer_of()
  bad = [line for module, file in package_modules()
         for line in upward_imports(module, file, layers)]
  assert bad == []


def test_the_known_upward_imports_are_still_there():
  """Each exception is a real import of today: one that went is taken off the list."""
  found = {(module, name.split('.')[1]) for module, file in package_modules()
           for name in imported_names(module, file) if name.startswith('sparsediff_jax.')}
  assert KNOWN_UPWARD - found == set()


def test_an_upward_import_is_named_with_its_file(tmp_path):
  file = tmp_path / 'm.py'
  file.write_text('from sparsediff_jax import registry\n'
                  'def f():\n  from sparsediff_jax.modes import train\n'
                  'from ..data import load_train_images\n')
  bad = upward_imports('sparsediff_jax.metrics.m', str(file), layer_of())
  assert [b.split(': ', 1)[1].split(' (')[0] for b in bad] == [
      'imports sparsediff_jax.data', 'imports sparsediff_jax.data.load_train_images',
      'imports sparsediff_jax.modes', 'imports sparsediff_jax.modes.train']
  assert all(b.startswith(os.path.relpath(str(file), os.path.dirname(PACKAGE)))
             for b in bad)
  # Inside its own package and downward, nothing is reported; a listed exception neither.
  excepted = upward_imports('sparsediff_jax.runtime.run_dir', str(file), layer_of())
  assert [b.split(': ', 1)[1].split(' (')[0] for b in excepted] == [
      'imports sparsediff_jax.modes', 'imports sparsediff_jax.modes.train']
  assert upward_imports('sparsediff_jax.modes.m', str(file), layer_of()) == []


def test_metrics_hold_pure_measures():
  """metrics/ measures arrays: what restores a run's parameters to score it is scoring/."""
  restoring = ('sparsediff_jax.train_state', 'sparsediff_jax.runtime.checkpoints')
  found = [f'{module}: {name}' for module, file in package_modules()
           if module.startswith('sparsediff_jax.metrics.')
           for name in imported_names(module, file) if name.startswith(restoring)]
  assert found == []
