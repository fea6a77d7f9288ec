"""A workdir holds one run: a new run over another run's records is refused unless
--start_over moves them into WORKDIR/previous-YYYYmmdd-HHMMSS/.

main.main runs in-process (default config) with the training replaced by a stand-in, so
that no step is compiled.
"""

import contextlib
import dataclasses
import json
import os
import re
import sys

import types

import pytest
from absl import flags

from sparsediff_jax import config_base, errors, main, modes
from sparsediff_jax.runtime import run_dir
from tests.helpers import tiny
from tests.helpers.cli_runs import snapshot


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

  def fake(config, workdir, record):   # begins the record as train() does, trains nothing
    with record.provisional():
      record.check()
      record.begin()
      record.confirm()
    trained.append(workdir)
    return types.SimpleNamespace(step=0)

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
  assert line == (f'error: --workdir={workdir} holds the records of this run up to step 1000, '
                  'whose checkpoints/ folder is gone (a restart from step 0 would overwrite '
                  'steps that had checkpoints) (config.json, dataset.json, metrics.jsonl, research, research_metrics.json, samples) but '
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


def _killed_run(workdir, config, last_step):
  """The records of `config`'s run killed at `last_step` before a checkpoint committed: it
  made checkpoints/ before its first step; no reader read it."""
  _old_run(workdir, config, last_step=last_step)
  os.remove(os.path.join(workdir, 'research_metrics.json'))
  for name in ('research', 'samples'):
    for f in os.listdir(os.path.join(workdir, name)):
      os.remove(os.path.join(workdir, name, f))
    os.rmdir(os.path.join(workdir, name))
  os.makedirs(os.path.join(workdir, 'checkpoints'))


def test_a_restart_of_the_same_run_before_its_first_checkpoint_is_allowed(tmp_path):
  """A run killed before its first checkpoint committed is restarted with the same command."""
  config = tiny.tiny_config({'training.checkpoint_every': 250, 'training.num_steps': 1000})
  workdir = str(tmp_path / 'run')
  _killed_run(workdir, config, last_step=500)   # step 250's write may not have committed
  run_dir.check_one_run(config, workdir)
  other = tiny.tiny_config({'training.checkpoint_every': 250, 'training.num_steps': 1000,
                            'mask.ratio': 0.5})
  with pytest.raises(errors.WorkdirError, match='holds the records of another run'):
    run_dir.check_one_run(other, workdir)   # another config: another run
  _killed_run(str(tmp_path / 'later'), config, last_step=501)   # it had a checkpoint
  with pytest.raises(errors.WorkdirError, match=r'records of this run up to step 501, past '
                                                r'step 500 by which its saved schedule had '
                                                r'committed a checkpoint'):
    run_dir.check_one_run(config, str(tmp_path / 'later'))


def test_records_whose_checkpoints_were_moved_away_are_never_overwritten(tmp_path):
  """Checkpoints moved away, then a rerun that changes training.checkpoint_every (so that
  the new schedule would take the records for a restart's), or the same command for a
  finished run whose metrics end within 2 x checkpoint_every: both refused, records
  unchanged; --start_over is the way out."""
  saved = tiny.tiny_config({'training.num_steps': 8, 'training.checkpoint_every': 4})
  workdir = str(tmp_path / 'run')
  _killed_run(workdir, saved, last_step=8)
  os.rename(os.path.join(workdir, 'checkpoints'), str(tmp_path / 'moved'))
  before = _snapshot(workdir)
  for config in (saved, tiny.tiny_config({'training.num_steps': 8,
                                          'training.checkpoint_every': 100})):
    with pytest.raises(errors.WorkdirError) as e:
      run_dir.check_one_run(config, workdir)
    assert 'this run up to step 8, whose checkpoints/ folder is gone' in str(e.value)
    assert '--start_over' in str(e.value) and '\n' not in str(e.value)
  # Kept: records that end by the SAVED schedule's second checkpoint, with checkpoints/
  # there, even under a new checkpoint_every (the old records decide, not the new config).
  os.makedirs(os.path.join(workdir, 'checkpoints'))
  run_dir.check_one_run(tiny.tiny_config({'training.num_steps': 8,
                                          'training.checkpoint_every': 1}), workdir)
  # A new schedule cannot stretch the window: saved every 2, metrics to 8.
  _killed_run(str(tmp_path / 'b'), tiny.tiny_config({'training.num_steps': 8,
                                                     'training.checkpoint_every': 2}), 8)
  with pytest.raises(errors.WorkdirError, match=r'past step 4 by which'):
    run_dir.check_one_run(saved, str(tmp_path / 'b'))
  assert _snapshot(workdir) == {**before, 'checkpoints/': None}


def test_records_of_a_run_stopped_before_its_first_step_never_block_a_new_run(tmp_path):
  """config.json and dataset.json alone (a SIGKILL before the first step): any config."""
  workdir = str(tmp_path / 'run')
  os.makedirs(workdir)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(tiny.tiny_config({'mask.ratio': 0.5}).to_json_best_effort(indent=2))
  with open(os.path.join(workdir, 'dataset.json'), 'w') as f:
    json.dump({'num_examples': 8}, f)
  run_dir.check_one_run(tiny.tiny_config(), workdir)
  os.makedirs(os.path.join(workdir, 'samples'))
  open(os.path.join(workdir, 'samples', 'samples_0000002.png'), 'w').close()   # trained
  with pytest.raises(errors.WorkdirError, match='holds the records of another run'):
    run_dir.check_one_run(tiny.tiny_config(), workdir)


def _old_run_to_start_over(workdir) -> dict:
  _old_run(workdir, tiny.tiny_config({'mask.ratio': 0.5}))
  os.makedirs(os.path.join(workdir, 'checkpoints', '1000'))
  return snapshot(workdir)


@pytest.mark.parametrize('start_over', [False, True])
def test_the_cli_refusing_a_run_that_cannot_fit_leaves_the_workdir_byte_identical(
    tmp_path, capsys, monkeypatch, start_over):
  """The memory check in training's set-up comes before --start_over moves the old run and
  before config.json and dataset.json are written (main.main in-process, default config)."""
  monkeypatch.setenv('SPARSEDIFF_MEMORY_LIMIT_BYTES', '1000')
  workdir = str(tmp_path / 'run')
  before = _old_run_to_start_over(workdir) if start_over else {}
  main.parse_flags(['prog', '--mode=train', f'--workdir={workdir}',
                    *(['--start_over'] if start_over else [])])
  try:
    with pytest.raises(SystemExit) as exit_info:
      main.main(['prog'])
  finally:
    flags.FLAGS.unparse_flags()
  line, = [l for l in capsys.readouterr().err.splitlines() if l.startswith('error:')]
  assert exit_info.value.code == 2 and 'the training state needs' in line, line
  assert snapshot(workdir) == before and os.path.exists(workdir) == start_over


def test_a_refused_hook_leaves_the_workdir_byte_identical(tmp_path):
  """An evaluation hook's missing input (train FID without reference statistics) refuses
  the run as main.main runs it (locked, with its record), --start_over's move not made."""
  from sparsediff_jax.modes import train
  from sparsediff_jax.runtime import workdir_lock
  workdir = str(tmp_path / 'run')
  before = _old_run_to_start_over(workdir)
  config = tiny.tiny_config({'eval.train_fid_every': 2})
  with pytest.raises(errors.UserError, match='no reference statistics'):
    with workdir_lock.hold(workdir):
      train.MODE.run(config, workdir,
                     record=run_dir.RunRecord(config, workdir, start_over=True))
  assert snapshot(workdir) == before


def test_a_run_stopped_before_its_first_step_puts_the_workdir_back(tmp_path):
  """Between the record's begin and the first step: an exception, or a signal (its
  clean-up as interrupts.py's watcher runs it), undoes the record and --start_over's move."""
  from sparsediff_jax.runtime import interrupts
  workdir = str(tmp_path / 'run')
  _old_run(workdir, tiny.tiny_config({'mask.ratio': 0.5}))
  before = snapshot(workdir)
  config = tiny.tiny_config()
  for stop in ('exception', 'signal'):
    record = run_dir.RunRecord(config, workdir, start_over=True)
    with pytest.raises(RuntimeError) if stop == 'exception' else contextlib.nullcontext():
      with record.provisional():
        record.check()
        record.begin()
        os.makedirs(os.path.join(workdir, 'checkpoints'))   # what a run makes before a step
        open(os.path.join(workdir, 'events.out.tfevents.1.host'), 'w').close()
        assert sorted(n for n in os.listdir(workdir) if not n.startswith('previous-')) == [
            'checkpoints', 'config.json', 'dataset.json', 'events.out.tfevents.1.host']
        if stop == 'exception':
          raise RuntimeError('before the first step')
        interrupts._run_cleanups()
    assert snapshot(workdir) == before, stop   # the old run (another's) is back in place
  record = run_dir.RunRecord(config, workdir, start_over=True)
  with record.provisional():
    record.check()
    record.begin()
    record.confirm()   # a step trained: the records stay
  assert sorted(os.listdir(workdir))[:2] == ['config.json', 'dataset.json']
  assert record.undo not in interrupts._cleanups
