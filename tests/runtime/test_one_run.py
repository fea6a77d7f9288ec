"""A workdir holds one run: a new run over another run's records is refused unless
--start_over moves them into WORKDIR/previous-YYYYmmdd-HHMMSS/.

main.main runs in-process (default config) with the training replaced by a stand-in, so
that no step is compiled.
"""

import dataclasses
import json
import os
import re

import types

import pytest
from absl import flags

from sparsediff_jax import config_base, errors, main, modes
from sparsediff_jax.runtime import run_dir
from tests.helpers import tiny


def _snapshot(directory) -> dict:
  out = {}
  for root, dirs, files in os.walk(directory):
    for name in dirs:
      out[os.path.relpath(os.path.join(root, name), directory) + '/'] = None
    for name in files:
      if name != '.lock':
        with open(os.path.join(root, name), 'rb') as f:
          out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
  return out


def _old_run(workdir, config, last_step=1000):
  """The records a finished run leaves behind once its checkpoints/ is moved away."""
  os.makedirs(os.path.join(workdir, 'samples'))
  os.makedirs(os.path.join(workdir, 'research'))
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))
  with open(os.path.join(workdir, 'dataset.json'), 'w') as f:
    json.dump({'num_examples': 8}, f)
  with open(os.path.join(workdir, 'metrics.jsonl'), 'w') as f:
    f.writelines(json.dumps({'step': s, 'loss': 0.5}) + '\n' for s in range(1, last_step + 1))
  for name in ('samples/samples_0001000.png', 'research/samples.png', 'research_metrics.json'):
    with open(os.path.join(workdir, name), 'w') as f:
      f.write(name)


@pytest.fixture
def train_main(monkeypatch, tmp_path):
  """call(*flags) -> exit code of main.main in --mode=train (0: it returned)."""
  trained = []
  fake = lambda config, workdir: trained.append(workdir) or types.SimpleNamespace(step=0)
  monkeypatch.setitem(modes.MODES, 'train', dataclasses.replace(modes.MODES['train'], run=fake))

  def call(*extra):
    main.parse_flags(['prog', '--mode=train', f'--workdir={tmp_path}/run', *extra])
    try:
      main.main(['prog'])
      return 0, trained
    except SystemExit as e:
      return e.code, trained
    finally:
      flags.FLAGS.unparse_flags()

  return call


def test_a_new_run_over_another_runs_records_is_refused(train_main, tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  _old_run(workdir, config_base.get_config())   # the same config: its records reach 1000
  before = _snapshot(workdir)
  code, trained = train_main()
  assert code == 2 and not trained
  line, = capsys.readouterr().err.splitlines()
  assert line == (f'error: --workdir={workdir} holds the records of another run (config.json, '
                  'dataset.json, metrics.jsonl, research, research_metrics.json, samples) but '
                  'no checkpoint to resume, and a workdir holds one run: use a new --workdir, '
                  f'or add --start_over to move those records into {workdir}/previous-'
                  'YYYYmmdd-HHMMSS/ and start a new run there')
  assert _snapshot(workdir) == before


def test_start_over_moves_the_old_run_into_a_dated_folder(train_main, tmp_path):
  workdir = str(tmp_path / 'run')
  other = tiny.tiny_config({'mask.ratio': 0.5})
  _old_run(workdir, other)
  os.makedirs(os.path.join(workdir, 'checkpoints', '1000'))   # even checkpoints: it asked
  before = _snapshot(workdir)
  code, trained = train_main('--start_over')
  assert code == 0 and trained == [workdir]
  moved, = [n for n in os.listdir(workdir) if n.startswith('previous-')]
  assert re.fullmatch(r'previous-\d{8}-\d{6}', moved)
  assert _snapshot(os.path.join(workdir, moved)) == before
  assert sorted(os.listdir(workdir)) == ['config.json', 'dataset.json', moved]
  with open(os.path.join(workdir, 'config.json')) as f:
    assert json.load(f)['mask']['ratio'] == config_base.get_config().mask.ratio


def test_start_over_is_for_training_only(tmp_path, capsys):
  main.parse_flags(['prog', '--mode=sample', f'--workdir={tmp_path}/run', '--start_over'])
  try:
    with pytest.raises(SystemExit) as exit_info:
      main.main(['prog'])
  finally:
    flags.FLAGS.unparse_flags()
  assert exit_info.value.code == 2
  assert capsys.readouterr().err.startswith('error: --start_over is for --mode=train only')


def test_a_restart_of_the_same_run_before_its_first_checkpoint_is_allowed(tmp_path):
  """A run killed before its first checkpoint committed is restarted with the same command."""
  config = tiny.tiny_config({'training.checkpoint_every': 250})
  workdir = str(tmp_path)
  _old_run(workdir, config, last_step=500)   # step 250's write may not have committed
  os.remove(os.path.join(workdir, 'research_metrics.json'))
  for name in ('research', 'samples'):
    for f in os.listdir(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name, f))
    os.rmdir(os.path.join(workdir, name))
  run_dir.check_one_run(config, workdir)
  other = tiny.tiny_config({'training.checkpoint_every': 250, 'mask.ratio': 0.5})
  with pytest.raises(errors.WorkdirError, match='holds the records of another run'):
    run_dir.check_one_run(other, workdir)   # another config: another run
  _old_run(str(tmp_path / 'later'), config, last_step=501)   # it had a checkpoint
  with pytest.raises(errors.WorkdirError, match='holds the records of another run'):
    run_dir.check_one_run(config, str(tmp_path / 'later'))
