"""The run directory: writability, which config changes a resume accepts, undoing the record."""

import json
import os

import pytest

from sparsediff_jax import config_base, errors
from sparsediff_jax.runtime import run_dir


def _saved(config) -> dict:
  return json.loads(config.to_json_best_effort(indent=2))


def test_fields_that_steer_logging_and_length_may_change():
  old, new = config_base.get_config(), config_base.get_config()
  new.training.num_steps *= 2
  new.training.log_every = 1
  new.training.checkpoint_every = 7
  new.training.on_nonfinite = 'stop'
  new.sampling.sampler = 'euler'
  new.sampling.num_steps = 3
  new.data.data_dir = 'gs://bucket/tfds'
  assert run_dir.config_differences(_saved(old), run_dir.config_dict(new)) == []


def test_fields_that_change_training_are_listed_with_both_values():
  old, new = config_base.get_config(), config_base.get_config()
  new.model.channel_mult = (1, 2)
  new.mask.ratio = 0.5
  new.diffusion.formulation = 'edm'
  new.training.seed = 1
  assert run_dir.config_differences(_saved(old), run_dir.config_dict(new)) == [
      "diffusion.formulation: 'flow_matching' -> 'edm'", 'mask.ratio: 0.9 -> 0.5',
      'model.channel_mult: [1, 2, 2] -> [1, 2]', 'training.seed: 0 -> 1']


def test_resume_may_change_lets_named_fields_and_sections_change():
  old, new = config_base.get_config(), config_base.get_config()
  new.optim.learning_rate = 1e-4
  new.optim.grad_clip = 0.5
  new.mask.ratio = 0.5
  new.training.resume_may_change = 'optim.learning_rate, mask.'
  assert run_dir.config_differences(_saved(old), run_dir.config_dict(new)) == [
      'optim.grad_clip: 1.0 -> 0.5']


def test_fields_only_one_side_has_are_not_compared():
  old, new = config_base.get_config(), config_base.get_config()
  saved = _saved(old)
  del saved['training']['on_nonfinite'], saved['mask']['patch_size']   # an older record
  new.eval = {'num_samples': 10}
  assert run_dir.config_differences(saved, run_dir.config_dict(new)) == []


def test_mismatch_error_names_the_workdir_and_the_way_out():
  config = config_base.get_config()
  saved = _saved(config)
  config.data.image_size = 64
  with pytest.raises(run_dir.ConfigMismatchError,
                     match=r'^/w holds a run trained with a different config '
                           r'\(data.image_size: 32 -> 64\); resume with the saved values, '
                           r'list the fields in --config.training.resume_may_change to change '
                           r'them knowingly, or use a new --workdir'):
    run_dir.check_same_run(saved, config, '/w')
  run_dir.check_same_run(None, config, '/w')   # nothing saved: nothing to compare


def test_config_json_is_compared_only_when_the_workdir_holds_checkpoints(tmp_path):
  config = config_base.get_config()
  (tmp_path / 'config.json').write_text(config.to_json_best_effort(indent=2))
  saved, config.model.channels = config.model.channels, 64
  run_dir.check_can_resume(config, str(tmp_path))   # a run that never saved: may restart
  (tmp_path / 'checkpoints' / '500').mkdir(parents=True)
  with pytest.raises(run_dir.ConfigMismatchError, match=f'model.channels: {saved} -> 64'):
    run_dir.check_can_resume(config, str(tmp_path))


def test_workdir_must_be_a_writable_directory(tmp_path):
  run_dir.check_writable(str(tmp_path / 'new' / 'deeper'))
  afile = tmp_path / 'afile'
  afile.write_text('')
  with pytest.raises(run_dir.WorkdirError, match='it is a file, not a directory'):
    run_dir.check_writable(str(afile))
  with pytest.raises(run_dir.WorkdirError, match=f'its ancestor {afile} is a file'):
    run_dir.check_writable(str(afile / 'run'))


def _write_record(workdir, text):
  os.makedirs(workdir, exist_ok=True)
  for name in run_dir.RECORD_FILES:
    with open(os.path.join(workdir, name), 'w') as f:
      f.write(text)


class BadInput(Exception):
  pass


def _is_bad(e):
  return isinstance(e, BadInput)


def test_bad_input_removes_a_new_workdir_and_its_new_parents(tmp_path):
  workdir = tmp_path / 'runs' / 'x'
  with pytest.raises(BadInput):
    with run_dir.undo_record_on(_is_bad, str(workdir)):
      _write_record(workdir, 'new')
      os.makedirs(workdir / 'checkpoints')   # Orbax made it, empty
      raise BadInput
  assert os.listdir(tmp_path) == []


def test_bad_input_puts_back_the_previous_record(tmp_path):
  _write_record(tmp_path, 'old')
  (tmp_path / 'checkpoints' / '5').mkdir(parents=True)
  with pytest.raises(BadInput):
    with run_dir.undo_record_on(_is_bad, str(tmp_path)):
      _write_record(tmp_path, 'new')
      raise BadInput
  assert all((tmp_path / n).read_text() == 'old' for n in run_dir.RECORD_FILES)
  assert sorted(os.listdir(tmp_path)) == ['checkpoints', *run_dir.RECORD_FILES]


@pytest.mark.parametrize('error', [BadInput, RuntimeError])
def test_a_run_that_wrote_anything_else_keeps_its_record(tmp_path, error):
  workdir = tmp_path / 'w'
  with pytest.raises(error):
    with run_dir.undo_record_on(_is_bad, str(workdir)):
      _write_record(workdir, 'new')
      if error is BadInput:
        (workdir / 'metrics.jsonl').write_text('{}')
      raise error
  assert all((workdir / n).read_text() == 'new' for n in run_dir.RECORD_FILES)


def test_bad_input_before_the_record_was_written_changes_nothing(tmp_path):
  with pytest.raises(BadInput):
    with run_dir.undo_record_on(_is_bad, str(tmp_path / 'runs' / 'x')):
      raise BadInput
  assert os.listdir(tmp_path) == []


def test_bind_to_run_takes_the_saved_run_defining_fields(tmp_path):
  """The modes that read a run take its run-defining fields and keep the others; an
  explicit override that contradicts the run is refused naming the field."""
  saved = config_base.get_config()
  saved.model.channels, saved.model.channel_mult = 8, (1, 2)
  saved.diffusion.formulation = 'edm'
  (tmp_path / 'config.json').write_text(saved.to_json_best_effort())
  config = config_base.get_config()
  config.sampling.num_steps = 3          # may differ: not run-defining
  taken = run_dir.bind_to_run(config, str(tmp_path), overrides={'sampling.num_steps'})
  assert set(taken) == {'model.channels', 'model.channel_mult', 'diffusion.formulation'}
  assert config.model.channel_mult == (1, 2) and config.diffusion.formulation == 'edm'
  assert config.sampling.num_steps == 3
  other = config_base.get_config()
  other.diffusion.formulation = 'flow_matching'
  with pytest.raises(errors.ConfigMismatchError,
                     match="--config.diffusion.formulation='flow_matching' contradicts"):
    run_dir.bind_to_run(other, str(tmp_path), overrides={'diffusion.formulation'})
  assert run_dir.bind_to_run(config_base.get_config(), str(tmp_path / 'none')) == []


def test_changed_training_data_is_refused_on_resume(tmp_path):
  (tmp_path / 'checkpoints' / '4').mkdir(parents=True)
  (tmp_path / 'dataset.json').write_text('{"selection_sha256": "a", "content_sha256": "b"}')
  run_dir.check_same_data({'selection_sha256': 'a', 'content_sha256': 'b'}, str(tmp_path))
  with pytest.raises(errors.ConfigMismatchError, match='contents of the examples changed'):
    run_dir.check_same_data({'selection_sha256': 'a', 'content_sha256': 'c'}, str(tmp_path))


def test_dataset_json_counts_only_the_examples_trained_on(tmp_path):
  (tmp_path / 'dataset.json').write_text(json.dumps({'num_examples': 5, 'name': 'folder'}))
  run_dir.record_loaded_examples(str(tmp_path), 5)   # nothing skipped: unchanged
  assert json.loads((tmp_path / 'dataset.json').read_text()) == {'num_examples': 5,
                                                                  'name': 'folder'}
  run_dir.record_loaded_examples(str(tmp_path), 3)
  record = json.loads((tmp_path / 'dataset.json').read_text())
  assert (record['num_examples'], record['num_examples_selected'],
          record['num_examples_skipped']) == (3, 5, 2)


@pytest.mark.parametrize('damage', ['{"model": {"chan', '[]', ''])
def test_a_reader_with_a_damaged_config_json_takes_the_checkpoint_record(tmp_path, caplog,
                                                                        damage):
  """A damaged config.json: the modes that read a run take the fields from the config the
  newest committed checkpoint records, and say so; nothing is advised about new runs."""
  saved = config_base.get_config()
  saved.model.channels = 8
  (tmp_path / 'config.json').write_text(damage)
  for step, meta in ((4, {'config': _saved(saved)}), (6, None)):   # 6: its meta is damaged
    (tmp_path / 'checkpoints' / str(step) / 'meta').mkdir(parents=True)
    (tmp_path / 'checkpoints' / str(step) / 'meta' / 'metadata').write_text(
        json.dumps(meta) if meta else '{"conf')
  (tmp_path / 'checkpoints' / '8.orbax-checkpoint-tmp-1' / 'meta').mkdir(parents=True)
  config = config_base.get_config()
  assert run_dir.bind_to_run(config, str(tmp_path)) == ['model.channels']
  assert config.model.channels == 8
  warnings = [r.getMessage() for r in caplog.records if r.levelname == 'WARNING']
  assert warnings == [f'cannot read {tmp_path}/config.json; the run\'s fields are taken from '
                      'the config that checkpoint 4 records (a training run in this workdir '
                      f'writes {tmp_path}/config.json again)']


def test_a_reader_is_advised_as_a_reader():
  saved, config = config_base.get_config(), config_base.get_config()
  config.model.channels = saved.model.channels + 8
  with pytest.raises(errors.ConfigMismatchError) as refused:
    run_dir.check_same_run(_saved(saved), config, '/w', run_dir.READER_ADVICE)
  assert str(refused.value).endswith('; ' + run_dir.READER_ADVICE)
  assert 'resume' not in str(refused.value) and 'new --workdir' not in str(refused.value)


def test_a_workdir_name_that_is_not_utf8_is_refused_up_front(tmp_path):
  """Not at the first checkpoint after training, in ~450 lines of traceback."""
  name = os.fsdecode(os.fsencode(str(tmp_path)) + b'/run-\xff')
  with pytest.raises(errors.WorkdirError) as e:
    run_dir.check_writable(name)
  message = str(e.value)
  assert message == (f'--workdir={tmp_path}/run-\\xff: its path is not valid UTF-8 (the '
                     'bytes shown as \\xNN); checkpoints and TensorBoard events need '
                     'UTF-8 file names: rename it or choose another --workdir'), message
  message.encode('utf-8')   # printable as it is


def test_nothing_to_train_counts_only_a_checkpoint_that_looks_whole(tmp_path):
  """A damaged newest step (its meta cut short, or no state files) is not a trained step:
  the run goes on to its restore, which passes over it."""
  from sparsediff_jax.modes import train
  from tests.helpers.tiny import tiny_config
  for step, meta, state in ((2, '{"config": {}}', True), (4, '{"con', True),
                            (6, '{"config": {}}', False)):
    folder = tmp_path / 'checkpoints' / str(step)
    (folder / 'meta').mkdir(parents=True)
    (folder / 'meta' / 'metadata').write_text(meta)
    (folder / 'state').mkdir()
    if state:
      (folder / 'state' / 'array').write_bytes(b'x')
  assert run_dir.checkpoint_steps(str(tmp_path)) == [2, 4, 6]   # the names say 6
  assert run_dir.newest_intact_step(str(tmp_path)) == 2
  assert train.finished_run_message(tiny_config({'training.num_steps': 4}), str(tmp_path)) is None
  assert train.finished_run_message(tiny_config({'training.num_steps': 2}),
                                    str(tmp_path)).startswith(
      f'nothing to train: the run in {tmp_path} is at step 2 and training.num_steps=2')
