"""The --mode table (modes/__init__.py), who may import a mode, and the training loop's one
rule for periodic work (modes/train.Periodic)."""

import ast
import os
import pkgutil
import subprocess
import sys
import types

import numpy as np
import pytest

import sparsediff_jax
from sparsediff_jax import modes

PACKAGE = os.path.dirname(sparsediff_jax.__file__)
MODE_MODULES = {'train', 'sample', 'research', 'fid_stats', 'evaluate', 'plan'}


def package_modules(path=PACKAGE, prefix='sparsediff_jax'):
  """(dotted name, file) of every module of the package, found without importing any."""
  for info in pkgutil.iter_modules([path]):
    name, where = f'{prefix}.{info.name}', os.path.join(path, info.name)
    if info.ispkg:
      yield name, os.path.join(where, '__init__.py')
      yield from package_modules(where, name)
    else:
      yield name, where + '.py'


def imported_names(module: str, file: str) -> set[str]:
  """Every dotted name the module imports, `from a import b` giving both a and a.b."""
  tree = ast.parse(open(file).read(), file)
  package = module if file.endswith('__init__.py') else module.rsplit('.', 1)[0]
  names = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:   # relative: resolved against the importing module's package
        parent = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
        base = f'{parent}.{base}' if base else parent
      names.add(base)
      names.update(f'{base}.{alias.name}' for alias in node.names)
  return names


def imports_a_mode(names: set[str]) -> list[str]:
  return sorted(n for n in names if n == 'sparsediff_jax.modes' or (
      n.startswith('sparsediff_jax.modes.') and n.split('.')[2] in MODE_MODULES))


def test_the_module_walk_sees_the_whole_package():
  found = dict(package_modules())
  assert {'sparsediff_jax.main', 'sparsediff_jax.modes.train', 'sparsediff_jax.train_step',
          'sparsediff_jax.scoring.fid_scores'} <= found.keys()
  assert all(os.path.isfile(f) for f in found.values())


def test_the_import_parser_catches_every_form(tmp_path):
  file = tmp_path / 'm.py'
  file.write_text('import sparsediff_jax.modes.train\n'
                  'from sparsediff_jax.modes import research as r\n'
                  'from ..modes.sample import run_sample_mode\n'
                  'from sparsediff_jax import modes\n'
                  'from sparsediff_jax.modes.base import Mode\n'
                  'def f():\n  from . import evaluate\n')
  names = imported_names('sparsediff_jax.metrics.m', str(file))
  assert imports_a_mode(names) == [
      'sparsediff_jax.modes', 'sparsediff_jax.modes.research', 'sparsediff_jax.modes.sample',
      'sparsediff_jax.modes.sample.run_sample_mode', 'sparsediff_jax.modes.train']
  inside = imported_names('sparsediff_jax.modes.fid_stats', str(file))
  assert 'sparsediff_jax.modes.evaluate' in imports_a_mode(inside)   # `from . import`


def test_no_module_but_main_imports_a_mode():
  offenders = {}
  for module, file in package_modules():
    if module == 'sparsediff_jax.main':
      continue
    if bad := imports_a_mode(imported_names(module, file)):
      offenders[module] = bad
  assert not offenders, offenders


def test_naming_the_modes_imports_no_jax():
  code = ('import sys; from sparsediff_jax import modes; '
          'heavy = {"jax", "tensorflow", "flax"} & {m.split(".")[0] for m in sys.modules}; '
          'print(modes.NAMES, sorted(heavy))')
  out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                       check=True, env={**os.environ, 'PYTHONPATH': os.path.dirname(PACKAGE)})
  assert out.stdout.strip() == "('train', 'sample', 'research', 'fid_stats', 'eval', 'plan') []"


def test_each_mode_is_its_modules_one_mode():
  table = {name: modes.MODES[name] for name in modes.NAMES}
  assert {n: (m.reads_run, m.writes_record) for n, m in table.items()} == {
      'train': (False, True), 'sample': (True, False), 'research': (True, False),
      'fid_stats': (False, False), 'eval': (True, False), 'plan': (False, False)}
  assert all(m.name == n and callable(m.run) for n, m in table.items())
  assert table['train'].nothing_to_do is not None
  assert all(m.nothing_to_do is None for n, m in table.items() if n != 'train')
  with pytest.raises(KeyError):
    modes.MODES['evaluate_everything']


# ---- periodic work in the training loop ------------------------------------------------

def fired(action, steps, num_steps, stop_at=None):
  from sparsediff_jax.modes.train import Periodic
  assert isinstance(action, Periodic)
  return [s for s in steps if action.due(s, s == num_steps, s == stop_at)]


def test_periodic_work_is_due_at_multiples_and_at_the_last_step():
  from sparsediff_jax.modes.train import Periodic
  every3 = Periodic(3, print)
  assert fired(every3, range(1, 11), 10) == [3, 6, 9, 10]
  assert fired(Periodic(0, print), range(1, 11), 10) == [10]   # 0: the last step only
  # steps_per_call=2: only the last step of each call is asked
  assert fired(Periodic(3, print), range(2, 11, 2), 10) == [6, 10]


def test_a_stop_skips_samples_keeps_scheduled_logs_and_always_checkpoints():
  from sparsediff_jax.modes.train import Periodic
  steps = range(1, 11)
  assert fired(Periodic(4, print), steps, 10, stop_at=4) == [8, 10]           # skipped
  assert fired(Periodic(4, print, 'scheduled'), steps, 10, stop_at=4) == [4, 8, 10]
  assert fired(Periodic(4, print, 'scheduled'), steps, 10, stop_at=5) == [4, 8, 10]
  assert fired(Periodic(4, print, 'always'), steps, 10, stop_at=5) == [4, 5, 8, 10]


def test_the_metric_line_takes_its_rate_and_eta_from_the_progress_bar():
  from sparsediff_jax.console import progress
  from sparsediff_jax.modes.train import MetricWindow, Tick
  now = [0.0]
  bar = progress.TrainProgress(100, 0, enabled=False, clock=lambda: now[0])
  written = []
  writer = types.SimpleNamespace(write_scalars=lambda step, s: written.append((step, s)))
  monitor = types.SimpleNamespace(check=lambda: None, skipped_steps=0)
  window = MetricWindow(writer, bar, monitor, batch_size=8, unlogged=[])
  bar.update(1)                                   # the first call (compile) is not timed
  window.history.append({'loss': np.float32(2.0)})
  window.log(Tick(1, None, {}))
  assert written[-1][1] == {'loss': 2.0, 'skipped_steps': 0}   # no rate yet
  for step in (2, 3):
    now[0] += 0.5
    bar.update(step)
    window.history.append({'loss': np.float32(step)})
  with bar.excluded():
    now[0] += 10.0                                # a sample grid: not training time
  window.log(Tick(3, None, {}))
  step, scalars = written[-1]
  assert step == 3 and scalars['loss'] == 2.5 and window.history == []
  assert scalars['steps_per_sec'] == pytest.approx(2.0) == bar.steps_per_second()
  assert scalars['images_per_sec'] == pytest.approx(16.0)
  assert scalars['eta_minutes'] == pytest.approx(97 / 2.0 / 60)
