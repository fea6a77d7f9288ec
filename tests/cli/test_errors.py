"""Every bad input to the CLI: one 'error:' line, exit code 2, nothing changed on disk.

All of these fail before anything is compiled. The processes of CASES start together (four at
a time) when the module's first test asks for its result. Elsewhere in tests/cli/: bad values
reported before jax is imported (test_errors_before_jax.py) and a hostile workdir
(test_errors_hostile_workdir.py); bad inputs that need a trained run (a workdir holding
another run, checkpoints that are all damaged) are in tests/runtime/test_resume.py. The
evaluation errors that main turns into exit code 2 are tested in-process at the end.
"""

import concurrent.futures
import dataclasses
import os
import re

import numpy as np
import PIL.Image
import pytest

from tests.helpers import REPO
from tests.helpers.cli_runs import TINY, assert_one_line_error, env, run


def _write_folder(path) -> str:
  os.makedirs(path)
  for i in range(3):
    PIL.Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8)).save(os.path.join(path,
                                                                                  f'{i}.png'))
  with open(os.path.join(path, 'broken.png'), 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + bytes(range(200)))   # a PNG signature, then garbage
  return path


# name -> (extra arguments given tmp path root, devices, a regular expression of the line).
CASES = {
    'unknown_flag': (lambda t: ['--foo=1'], 1, r"Unknown command line flag 'foo'"),
    'unknown_field': (lambda t: ['--config.training.nosuch=1'], 1,
                      r"unknown config field 'training.nosuch'; the fields are listed in "
                      r'sparsediff_jax/config_base.py'),
    'mistyped_field': (lambda t: ['--config.mask.ratoi=0.3'], 1,
                       r"^error: unknown config field 'mask.ratoi'; did you mean "
                       r"'mask.ratio'\?$"),
    'flag_without_value': (lambda t: ['--workdir', f'--workdir={t}/run'], 1,
                           r'--workdir needs a value: --workdir=VALUE \(the next argument'),
    'wrong_type': (lambda t: ['--config.training.num_steps=abc'], 1,
                   r'flag --config.training.num_steps=abc: invalid literal for int'),
    'no_config_file': (lambda t: [f'--config={t}/nope.py'], 1,
                       r'--config=.*/nope.py: no such file \(expected a Python file with '
                       r'get_config\(\)'),
    'broken_config_file': (lambda t: [f'--config={t}/broken.py'], 1,
                           r'--config=.*/broken.py: cannot load it \(.*\); it must define '
                           r'get_config\(\)'),
    'unknown_mode': (lambda t: ['--mode=evaluate_everything'], 1,
                     r"--mode='evaluate_everything' is unknown; choose one of train"),
    'out_of_range': (lambda t: ['--config.mask.ratio=1.5'], 1,
                     r'config.mask.ratio=1.5 is invalid: the fraction of pixels dropped from '
                     r'the loss must be in \[0, 1\)'),
    'unknown_dataset': (lambda t: ['--config.data.name=svhn'], 1,
                        r"config.data.name='svhn' is invalid: choose one of 'shapes'"),
    'batch_not_divisible': (lambda t: ['--config.training.batch_size=12'], 8,
                            r'config.training.batch_size=12 is invalid: the global batch must '
                            r'divide evenly over the 8 data shards'),
    'workdir_is_a_file': (lambda t: [f'--workdir={t}/afile/run'], 1,
                          r'--workdir=.*/afile/run: its ancestor .*/afile is a file, not a '
                          r'directory; choose another --workdir'),
    'dataset_missing': (lambda t: ['--config.data.name=cifar10', f'--config.data.data_dir={t}'],
                        1, r"TFDS dataset 'cifar10' .* is not prepared in .*; prepare it with "
                           r'`tfds build cifar10 --data_dir=.*`.* or set '
                           r'config.data.download=True'),
    'folder_missing': (lambda t: ['--config.data.name=folder', f'--config.data.folder={t}/no'],
                       1, r"config.data.folder='.*/no' is neither a directory nor a .zip file"),
    'too_many_examples': (lambda t: ['--config.data.name=folder',
                                     f'--config.data.folder={t}/imgs',
                                     '--config.data.num_train_examples=32'], 1,
                          r'config.data.num_train_examples=32 but folder has only 4 training '
                          r'examples'),
    'corrupt_image': (lambda t: [*TINY, '--config.data.name=folder',
                                 f'--config.data.folder={t}/imgs',
                                 '--config.data.num_train_examples=0'], 1,
                      r"cannot decode image .*/imgs/broken.png: .*set "
                      r"config.data.on_bad_image='skip'"),
    'sample_without_checkpoints': (lambda t: ['--mode=sample', f'--workdir={t}'], 1,
                                   r'no checkpoint in .*/checkpoints; train first with '
                                   r'--mode=train'),
    'config_returns_none': (lambda t: [f'--config={t}/none.py'], 1,
                            r'--config=.*/none.py: get_config\(\) returned NoneType, not a '
                            r'ConfigDict'),
    'config_lacks_a_section': (lambda t: [f'--config={t}/no_optim.py'], 1,
                               r'--config=.*/no_optim.py: the config lacks the section\(s\) '
                               r'optim'),
    'two_config_files': (lambda t: [f'--config={t}/none.py', f'--config={t}/no_optim.py'], 1,
                         r'--config is given 2 times \(.*none.py, .*no_optim.py\)'),
    'removed_field': (lambda t: ['--config.data.num_channels=3'], 1,
                      r'--config.data.num_channels was removed: every dataset is RGB'),
    'negative_grad_clip': (lambda t: ['--config.optim.grad_clip=-1.0'], 1,
                           r'config.optim.grad_clip=-1.0 is invalid: .*>= 0 \(0 = off\)'),
    'beta1_above_one': (lambda t: ['--config.optim.beta1=1.5'], 1,
                        r'config.optim.beta1=1.5 is invalid: an Adam decay rate must be in'),
    'infinite_learning_rate': (lambda t: ['--config.optim.learning_rate=inf'], 1,
                               r'config.optim.learning_rate=inf is invalid: must be a finite'),
    'no_res_blocks': (lambda t: ['--config.model.num_res_blocks=0'], 1,
                      r'config.model.num_res_blocks=0 is invalid: must be an integer >= 1'),
    'no_levels': (lambda t: ['--config.model.channel_mult=()'], 1,
                  r'config.model.channel_mult=\(\) is invalid: a non-empty tuple'),
    'seed_past_32_bits': (lambda t: [f'--config.training.seed={2**40}'], 1,
                          r'config.training.seed=1099511627776 is invalid: .*<= 2147483647'),
    'mask_keeps_nothing': (lambda t: ['--config.mask.ratio=0.99999999',
                                      '--config.training.batch_size=1',
                                      '--config.data.image_size=16'], 1,
                           r'config.mask.ratio=0.99999999 is invalid: keeps .* of the 256 '
                           r'mask draws of a batch'),
    'dataset_larger_than_memory': (lambda t: ['--config.data.image_size=4096'], 1,
                                   r'config.data.image_size=4096 is invalid: 4096 images of '
                                   r'4096x4096x3 need 192.0 GiB of host memory'),
}


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  """name -> future of (CompletedProcess, tmp root, the workdir's listing before/after)."""
  root = tmp_path_factory.mktemp('cli_errors')

  def one(name):
    args, devices, _ = CASES[name]
    t = root / name
    t.mkdir()
    (t / 'broken.py').write_text('def get_config(:\n')
    (t / 'none.py').write_text('def get_config():\n  return None\n')
    (t / 'no_optim.py').write_text('from sparsediff_jax import config_base\n\n'
                                   'def get_config():\n  c = config_base.get_config()\n'
                                   '  del c.optim\n  return c\n')
    (t / 'afile').write_text('')
    _write_folder(str(t / 'imgs'))
    extra = args(str(t))
    workdir = [] if any(a.startswith('--workdir') for a in extra) else [f'--workdir={t}/run']
    environment = env(str(t), devices=devices)
    before = sorted(os.listdir(t))
    result = run(*extra, *workdir, env=environment, timeout=300)
    return result, sorted(os.listdir(t)), before

  pool = concurrent.futures.ThreadPoolExecutor(4)
  futures = {name: pool.submit(one, name) for name in CASES}
  yield futures
  pool.shutdown(cancel_futures=True)


@pytest.mark.slow   # CLI subprocesses
@pytest.mark.parametrize('name', list(CASES))
def test_bad_input_is_one_line_exit_2_and_changes_nothing(results, name):
  result, after, before = results[name].result()
  line = assert_one_line_error(result)
  assert re.search(CASES[name][2], line), line
  assert after == before   # no workdir was created, nothing else appeared


# ---- the same, one test each (each about half a second: no JAX import) ----

@pytest.mark.slow   # CLI subprocesses
@pytest.mark.parametrize('args,words', [
    (['--config.mask.ratio=1.0'], ['mask.ratio', '1.0', '[0, 1)']),
    (['--config.mask.ratio=-0.1'], ['mask.ratio', '-0.1']),
    (['--config.training.batch_size=0'], ['training.batch_size', '0']),
    (['--config.data.image_size=30', '--config.model.channel_mult=(1,2,2)'],
     ['data.image_size', '30', 'divisible by 4']),
    (['--config.data.name=imagenet9'], ['data.name', 'imagenet9', 'celeba']),
    (['--config.model.name=vit'], ['model.name', 'vit', 'unet', 'dit']),
    (['--config.diffusion.formulation=vp'], ['diffusion.formulation', 'flow_matching']),
    (['--config=configs/nope.py'], ['configs/nope.py', 'no such file']),
    (['--config.mask.ratio=abc'], ['mask.ratio']),
    (['--mode=fly'], ['--mode', 'fly']),
])
def test_bad_input_is_one_line_exit_2_and_no_workdir(tmp_path, args, words):
  workdir = tmp_path / 'run'
  out = run(f'--workdir={workdir}', *args, env=env(str(tmp_path)), timeout=300)
  assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
  lines = [l for l in out.stderr.splitlines() if l.startswith('error:')]
  assert len(lines) == 1, out.stderr[-2000:]
  for w in words:
    assert w in lines[0]
  assert not workdir.exists()


@pytest.mark.slow
def test_batch_not_divisible_by_devices(tmp_path):
  workdir = tmp_path / 'run'
  out = run(f'--workdir={workdir}', '--config.training.batch_size=6', timeout=300,
            env=env(str(tmp_path), devices=4))
  assert out.returncode == 2
  assert 'training.batch_size=6' in out.stderr and '4 data shards' in out.stderr
  assert not workdir.exists()


# A config file that fails to load names the exception (its type and message), exit 2.
@pytest.mark.slow   # CLI subprocesses (each about half a second: no JAX import)
@pytest.mark.parametrize('body, expected', [
    ('raise ValueError("the field table is broken")',
     'ValueError: the field table is broken'),
    ('def get_config():\n  raise KeyError("lost")', "KeyError: 'lost'"),
    ('def get_config():\n  return 1 / 0', 'ZeroDivisionError: division by zero'),
])
def test_a_config_raising_at_load_names_the_exception(tmp_path, body, expected):
  (tmp_path / 'bad.py').write_text(body + '\n')
  result = run(f'--config={tmp_path}/bad.py', f'--workdir={tmp_path}/run', env=env(str(tmp_path)),
               timeout=120)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
  assert lines[0].startswith('error: --config=') and expected in lines[0], lines[0]
  assert not (tmp_path / 'run').exists()


@pytest.mark.slow
def test_a_config_argument_get_config_does_not_take_is_named(tmp_path):
  result = run(f'--config={REPO}/configs/digits.py:foo', f'--workdir={tmp_path}/run',
               env=env(str(tmp_path)), timeout=120)
  lines = [l for l in result.stderr.splitlines() if l.strip()]
  assert result.returncode == 2 and len(lines) == 1, result.stderr[-2000:]
  assert 'TypeError: get_config() takes 0 positional arguments' in lines[0], lines[0]


# ---- errors of the evaluation modes, raised inside a mode: main's handling, in-process ----

@pytest.fixture
def main_with_mode(monkeypatch, tmp_path):
  """main.main with --mode=sample replaced by a function raising a given error."""
  from absl import flags
  from sparsediff_jax import main, modes, validation
  monkeypatch.setattr(validation, 'validate_config', lambda config, devices: None)
  main.parse_flags(['prog', '--mode=sample', f'--workdir={tmp_path}/run'])

  def call(error):
    def mode(config, workdir):
      raise error
    monkeypatch.setitem(modes.MODES, 'sample', dataclasses.replace(modes.MODES['sample'],
                                                                   run=mode))
    with pytest.raises(SystemExit) as exit_info:
      main.main(['prog'])
    return exit_info.value.code

  yield call
  flags.FLAGS.unparse_flags()
  assert not os.path.exists(tmp_path / 'run')


def test_wrong_inception_weights_are_exit_2_with_the_way_out(main_with_mode, tmp_path, capsys):
  from sparsediff_jax.metrics.fid import inception_weights
  fake = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  fake.write_bytes(b'not the weights')
  with pytest.raises(inception_weights.InceptionWeightsError) as info:
    inception_weights.verify_sha256(fake, inception_weights.PT_INCEPTION_SHA256)
  assert main_with_mode(info.value) == 2
  line, = capsys.readouterr().err.splitlines()
  assert line.startswith(f'error: {fake}: SHA-256 mismatch (expected 6726825d')
  assert 'delete it to download it again from https://github.com/mseitzer/pytorch-fid' in line


def test_mismatched_reference_statistics_are_exit_2_with_advice(main_with_mode, capsys):
  from sparsediff_jax.metrics.fid import fid
  meta = dict(dataset='cifar10', split='train', resolution=32, num_images=10,
              preprocessing='pytorch', weights_sha256='a' * 64)
  with pytest.raises(fid.StatsMismatchError) as info:
    fid.check_compatible(fid.StatsMetadata(**meta), fid.StatsMetadata(**{**meta,
                                                                         'resolution': 64}))
  assert main_with_mode(info.value) == 2
  line, = capsys.readouterr().err.splitlines()
  assert line == ("error: statistics are not comparable: field 'resolution' differs (32 vs "
                  '64); compute the reference statistics with the same Inception weights, '
                  'preprocessing and resolution')


def test_other_errors_are_not_taken_for_bad_input(main_with_mode):
  with pytest.raises(ZeroDivisionError):
    main_with_mode(ZeroDivisionError('a bug'))



def test_a_failed_run_is_one_line_and_exit_1(main_with_mode, capsys):
  from sparsediff_jax import errors
  message = ('no space left on device (ENOSPC) writing checkpoint 4 to /w/checkpoints/4; '
             'the last intact checkpoint is step 2 in /w/checkpoints')
  assert main_with_mode(errors.DiskFullError(message)) == 1
  line, = capsys.readouterr().err.splitlines()
  assert line == f'error: {message}'
