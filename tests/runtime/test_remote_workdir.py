"""A gs:// workdir behaves as a local one: the run record, the resume checks, the read
modes' binding, metrics.jsonl, undoing the record and the lock, on a fake gs:// (fake_gcs.py:
epath's fsspec backend over a local folder)."""

import json
import os

import pytest

from tests.helpers import fake_gcs
from tests.helpers.cli_runs import TINY, assert_one_line_error, env, snapshot
from sparsediff_jax.runtime import atomic_io, run_dir, workdir_lock
from sparsediff_jax import errors
from sparsediff_jax.console import metrics_jsonl
from tests.helpers.tiny import tiny_config

WORKDIR = 'gs://bucket/runs/tiny'


@pytest.fixture
def gcs(tmp_path, monkeypatch):
  """The fake gs:// for this test, kept in tmp_path/gcs; the real choice comes back after."""
  monkeypatch.setenv('EPATH_USE_TF', 'false')
  root = str(tmp_path / 'gcs')
  fake_gcs.install(root)
  yield root
  monkeypatch.undo()
  fake_gcs.install_cleared()


def _a_run(config):
  """A finished run on the fake gs://: its record and one checkpoint folder."""
  atomic_io.write_text(f'{WORKDIR}/config.json', config.to_json_best_effort(indent=2))
  atomic_io.write_json(f'{WORKDIR}/dataset.json', {'num_examples': 64,
                                                  'selection_sha256': 'a' * 64,
                                                  'content_sha256': 'b' * 64})
  atomic_io.write_text(f'{WORKDIR}/checkpoints/4/done', '')


def test_the_run_record_is_read_from_gs(gcs):
  config = tiny_config()
  _a_run(config)
  assert os.path.isfile(fake_gcs.local(gcs, f'{WORKDIR}/config.json'))   # not a local gs:/
  assert not os.path.exists('gs:')
  assert run_dir.has_checkpoints(WORKDIR)
  assert run_dir.saved_config(WORKDIR) == run_dir.config_dict(config)
  run_dir.check_can_resume(config, WORKDIR)   # the same config continues


def test_resume_with_a_changed_field_is_refused_on_gs(gcs):
  _a_run(tiny_config())
  with pytest.raises(errors.ConfigMismatchError, match=r'gs://bucket/runs/tiny holds a run '
                     r'trained with a different config \(mask.ratio: 0.9 -> 0.5\)'):
    run_dir.check_can_resume(tiny_config({'mask.ratio': 0.5}), WORKDIR)
  with pytest.raises(errors.ConfigMismatchError, match='which examples changed'):
    run_dir.check_same_data({'selection_sha256': 'c' * 64, 'content_sha256': 'b' * 64},
                            WORKDIR)


def test_read_modes_take_the_runs_fields_from_gs(gcs):
  _a_run(tiny_config({'model.channels': 16}))
  config = tiny_config()
  assert run_dir.bind_to_run(config, WORKDIR) == ['model.channels']
  assert config.model.channels == 16
  with pytest.raises(errors.ConfigMismatchError, match='--config.mask.ratio=0.5 contradicts'):
    run_dir.bind_to_run(tiny_config({'mask.ratio': 0.5}), WORKDIR, overrides=['mask.ratio'])


def test_skipped_images_correct_dataset_json_on_gs(gcs):
  _a_run(tiny_config())
  run_dir.record_loaded_examples(WORKDIR, 60)
  record = json.loads(atomic_io.read_text(f'{WORKDIR}/dataset.json'))
  assert (record['num_examples'], record['num_examples_skipped']) == (60, 4)


def test_metrics_jsonl_appends_and_cuts_back_on_gs(gcs):
  path = f'{WORKDIR}/metrics.jsonl'
  writer = metrics_jsonl.JsonlWriter(path)
  for step in (1, 2, 3):
    writer.write_scalars(step, {'loss': step / 10})
  metrics_jsonl.JsonlWriter(path, resume_step=2).write_scalars(3, {'loss': 0.5})
  assert metrics_jsonl.read(path) == [{'step': 1, 'loss': 0.1}, {'step': 2, 'loss': 0.2},
                                      {'step': 3, 'loss': 0.5}]


def test_bad_input_undoes_the_record_on_gs(gcs):
  config = tiny_config()
  _a_run(config)
  before = atomic_io.read_bytes(f'{WORKDIR}/config.json')
  with pytest.raises(errors.ConfigError):
    with run_dir.undo_record_on(lambda e: isinstance(e, errors.UserError), WORKDIR):
      atomic_io.write_text(f'{WORKDIR}/config.json', '{"changed": 1}')
      atomic_io.write_text(f'{WORKDIR}/dataset.json', '{}')
      raise errors.ConfigError('bad value')
  assert atomic_io.read_bytes(f'{WORKDIR}/config.json') == before
  assert json.loads(atomic_io.read_text(f'{WORKDIR}/dataset.json'))['num_examples'] == 64


def test_the_lock_on_gs_is_an_advisory_file_that_goes_away(gcs):
  lock_file = fake_gcs.local(gcs, f'{WORKDIR}/{workdir_lock.LOCK_NAME}')
  with workdir_lock.hold(WORKDIR):
    assert os.path.isfile(lock_file)
    with pytest.raises(errors.WorkdirError, match='in use by another run'):
      with workdir_lock.hold(WORKDIR):
        pass
  assert not os.path.exists(lock_file)


@pytest.mark.slow
def test_a_run_on_gs_refuses_a_changed_config_as_on_local_disk(tmp_path):
  """The CLI on a fake gs:// workdir: a run, then a rerun with a changed run-defining field
  is refused with one line and exit code 2, nothing changed; a sample run binds to it."""
  import subprocess
  import sys
  root = str(tmp_path / 'gcs')
  cli_env = {**env(str(tmp_path)), 'EPATH_USE_TF': 'false'}
  args = (*TINY, '--config.training.num_steps=2', '--config.training.checkpoint_every=2')

  def cli(*extra):
    return subprocess.run([sys.executable, fake_gcs.__file__, root, *args, *extra,
                           f'--workdir={WORKDIR}'], env=cli_env, capture_output=True,
                          text=True, timeout=600)

  first = cli()
  assert first.returncode == 0, first.stderr[-3000:]
  local = fake_gcs.local(root, WORKDIR)
  assert {'config.json', 'dataset.json', 'metrics.jsonl', 'checkpoints'} <= set(
      os.listdir(local))
  assert [r['step'] for r in metrics_jsonl.read(os.path.join(local, 'metrics.jsonl'))] == [1, 2]
  before = snapshot(local)
  refused = cli('--config.mask.ratio=0.5')
  line = assert_one_line_error(refused)
  assert line.startswith(f'error: {WORKDIR} holds a run trained with a different config '
                         '(mask.ratio: 0.9 -> 0.5)')
  assert snapshot(local) == before
  sampled = cli('--mode=sample', '--config.mask.ratio=0.5')
  line = assert_one_line_error(sampled)
  assert '--config.mask.ratio=0.5 contradicts the run in gs://bucket/runs/tiny' in line
  assert snapshot(local) == before


@pytest.mark.parametrize('how', ['refuses', 'never answers'])
def test_an_unreachable_gs_workdir_is_one_line_naming_the_way_out(gcs, monkeypatch, how):
  """No network or no credentials: the first look at the workdir (training's, and a
  reader's before it reads the record) is refused with one line after at most
  run_dir.REMOTE_TIMEOUT_S, not a retrying library's traceback."""
  import threading
  import fsspec
  from fsspec.implementations.local import LocalFileSystem
  release = threading.Event()

  class Unreachable(LocalFileSystem):
    protocol = ('gs', 'gcs')

    def __init__(self, *args, finalize_on_close=None, **kwargs):
      super().__init__(*args, **kwargs)

    def exists(self, path, **kwargs):
      if how == 'never answers':
        release.wait(60)
      raise PermissionError('Anonymous caller does not have storage.objects.list access to '
                            'the Google Cloud Storage bucket.\nsecond line')

  for name in Unreachable.protocol:
    fsspec.register_implementation(name, Unreachable, clobber=True)
  fake_gcs.install_cleared()
  monkeypatch.setattr(run_dir, 'REMOTE_TIMEOUT_S', 0.5)
  try:
    for check in (run_dir.check_writable, lambda w: run_dir.bind_to_run(tiny_config(), w)):
      with pytest.raises(errors.WorkdirError) as e:
        check(WORKDIR)
      message = str(e.value)
      assert '\n' not in message and message.startswith(f'--workdir={WORKDIR}: ')
      assert message.endswith('check the network and the credentials (gcloud auth '
                              'application-default login), or use a local --workdir')
      assert ('no answer within 0.5 s' in message if how == 'never answers' else
              'cannot be reached (PermissionError: Anonymous caller does not have storage.'
              'objects.list access to the Google Cloud Storage bucket.)' in message), message
  finally:
    release.set()


def test_start_over_on_gs_is_refused_when_the_record_is_checked(gcs):
  """Before training's set-up (compiling), not when the record begins: nothing moved."""
  _a_run(tiny_config())
  before = snapshot(gcs)
  record = run_dir.RunRecord(tiny_config(), WORKDIR, start_over=True)
  with pytest.raises(errors.WorkdirError, match=r'^--start_over cannot move records on '
                                                rf'--workdir={WORKDIR} \(a remote'):
    record.check()
  assert snapshot(gcs) == before
