"""console/logs.py (the stderr noise filter, platform choice, verbosity), compile_cache.py's
directory choice and tb_writer.py's TensorFlow-free event files."""

import glob
import os

import numpy as np
import pytest

from sparsediff_jax.runtime import compile_cache
from sparsediff_jax.console import logs, tb_writer

# What jaxlib/TensorFlow write to stderr (formats as printed by jax 0.10 / TF 2.21 / XLA).
ABSL_NOTICE = b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n'
ONEDNN = (b'I0000 00:00:1796151889.835941    4787 port.cc:153] oneDNN custom operations are on. '
          b'You may see slightly different numerical results.\n')
SLOW_COMPILE = (b'E1201 19:20:01.123456    4787 slow_operation_alarm.cc:73] \n'
                b'********************************\n'
                b'[Compiling module jit_step_fn] Very slow compile? If you want to file a bug, '
                b'run with envvar XLA_FLAGS=--xla_dump_to=/tmp/foo and attach the results.\n'
                b'********************************\n')
CONSTANT_FOLDING = (b'E1201 19:20:02.1 4787 slow_operation_alarm.cc:140] The operation took 2.1s\n'
                    b'Constant folding an instruction is taking > 1s:\n\n  %reduce = f32[] reduce()\n\n'
                    b"This isn't necessarily a bug; constant-folding is a trade-off.\n\n"
                    b"If you'd like to file a bug, run with envvar XLA_FLAGS=--xla_dump_to=/tmp/foo "
                    b'and attach the results.\n')
KEPT = (b'I1201 19:05:04.187921 140573545905024 train.py:191] model unet: 48691 parameters\n'
        b'E1201 19:05:05.0 4787 some_other.cc:12] a real error\n'
        b'Traceback (most recent call last):\n  File "x.py", line 1\n')


def filtered(chunks):
  f = logs.NoiseFilter()
  return b''.join(f.feed(c) for c in chunks) + f.flush()


def test_filter_drops_noise_and_keeps_everything_else_in_order():
  cut = KEPT.index(b'\n') + 1
  stream = (ABSL_NOTICE + ONEDNN + KEPT[:cut] + ABSL_NOTICE + SLOW_COMPILE + KEPT[cut:]
            + CONSTANT_FOLDING + b'done\n')
  expected = KEPT + b'done\n'
  assert filtered([stream]) == expected
  # Arriving in arbitrary pieces changes nothing.
  assert filtered([stream[i:i + 7] for i in range(0, len(stream), 7)]) == expected


def test_filter_passes_progress_bars_at_once():
  f = logs.NoiseFilter()
  assert f.feed(b'\rtrain  10%|#         | 10/100 ') == b'\rtrain  10%|#         | 10/100 '
  assert f.feed(b'\rtrain  20%|##') == b'\rtrain  20%|##'
  # A partial line that may be a log record waits for its end (or the timeout's flush).
  assert f.feed(b'I0000 00:00:17.0 1 port.cc:153] oneDNN custom operations') == b''
  assert f.feed(b' are on.\nnext\n') == b'next\n'
  assert f.feed(b'Enter') == b'' and f.flush() == b'Enter'


def test_filter_ends_an_alarm_record_at_the_next_log_record():
  stream = (b'E1201 1 2 slow_operation_alarm.cc:73] something else\nstill it\n' + KEPT)
  assert filtered([stream]) == KEPT


@pytest.mark.parametrize('argv, level', [
    (['main.py'], 0), (['main.py', '--verbosity=1'], 1), (['main.py', '-v', '2'], 2),
    (['main.py', '--v=1', '--mode=train'], 1), (['main.py', '--verbosity', 'x'], 0),
    (['main.py', '--config.training.verbosity=3'], 0)])
def test_verbosity_from_argv(argv, level):
  assert logs.verbosity_from_argv(argv) == level


def choose(environ=None, files=(), modules=(), plugins=()):
  files = set(files)
  return logs.choose_platforms(
      environ or {}, exists=lambda p: p in files,
      glob_fn=lambda pattern: [f for f in files if glob.fnmatch.fnmatch(f, pattern)],
      has_module=lambda m: m in modules, plugins=list(plugins))


def test_platforms_follow_the_hardware_and_the_user():
  assert choose() == 'cpu'
  assert choose(modules=['libtpu']) == 'cpu'                            # libtpu, no chip
  assert choose(files=['/dev/accel0']) == 'cpu'                         # chip, no libtpu
  assert choose(files=['/dev/accel0'], modules=['libtpu']) is None      # a TPU VM
  assert choose(files=['/dev/vfio/0'], modules=['libtpu']) is None
  assert choose(plugins=['jax_cuda12_plugin']) == 'cpu'                 # no NVIDIA device
  assert choose(files=['/dev/nvidiactl'], plugins=['jax_cuda12_plugin']) == 'cuda,cpu'
  assert choose(plugins=['jax_rocm7_plugin']) is None                   # unknown: jax decides
  assert choose({'JAX_PLATFORMS': ''}) is None                          # the user's
  assert choose({'JAX_PLATFORM_NAME': 'cpu'}) is None


def test_quiet_respects_the_user_and_verbosity():
  env = {'TF_CPP_MIN_LOG_LEVEL': '0', 'JAX_PLATFORMS': 'cpu'}
  logs.quiet(['main.py', '--verbosity=1'], env)   # verbose: nothing set
  assert env == {'TF_CPP_MIN_LOG_LEVEL': '0', 'JAX_PLATFORMS': 'cpu'}
  env = {'JAX_PLATFORMS': 'cpu'}
  logs.quiet(['main.py'], env)   # jax is imported in this process: no filter process
  assert env == {'TF_CPP_MIN_LOG_LEVEL': '1', 'JAX_PLATFORMS': 'cpu'}


def test_compilation_cache_directory():
  home = os.path.expanduser('~')
  assert compile_cache.resolve('', {}) is None
  assert compile_cache.resolve('default', {}) == os.path.join(home, '.cache', 'sparsediff_jax',
                                                              'xla')
  assert compile_cache.resolve('default', {'SPARSEDIFF_CACHE': '/c'}) == '/c/xla'
  assert compile_cache.resolve('default', {'SPARSEDIFF_CACHE': '/c',
                                           'JAX_COMPILATION_CACHE_DIR': '/j'}) == '/j'
  assert compile_cache.resolve('~/x', {}) == os.path.join(home, 'x')
  assert compile_cache.resolve('gs://b/x', {}) == 'gs://b/x'


def test_tensorboard_writer_round_trip(tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.plugins.hparams import plugin_data_pb2
  from tensorboard.util import tensor_util
  writer = tb_writer.TensorBoardWriter(str(tmp_path))
  writer.write_hparams({'mask.ratio': '0.9', 'training.batch_size': 16})
  writer.write_scalars(5, {'loss': 0.25, 'steps_per_sec': 3.0})
  writer.write_scalars(10, {'loss': 0.125})
  grid = np.random.default_rng(0).integers(0, 255, (1, 6, 4, 3), dtype=np.uint8)
  writer.write_images(10, {'samples': grid})
  writer.close()
  (path,) = glob.glob(str(tmp_path / 'events.out.tfevents.*'))
  acc = event_accumulator.EventAccumulator(path, size_guidance={'tensors': 0, 'images': 0})
  acc.Reload()
  loss = [(e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
          for e in acc.Tensors('loss')]
  assert loss == [(5, 0.25), (10, 0.125)]
  image_event = acc.Tensors('samples')[0]
  width, height, png = tensor_util.make_ndarray(image_event.tensor_proto)
  assert (int(width), int(height)) == (4, 6)
  import io
  import PIL.Image
  np.testing.assert_array_equal(np.asarray(PIL.Image.open(io.BytesIO(png))), grid[0])
  hparams = acc.summary_metadata['_hparams_/session_start_info'].plugin_data.content
  info = plugin_data_pb2.HParamsPluginData.FromString(hparams).session_start_info
  assert info.hparams['mask.ratio'].string_value == '0.9'
  assert info.hparams['training.batch_size'].number_value == 16


def test_read_scalars_reads_tensor_and_plain_scalar_summaries(tmp_path):
  """console/scalars.read_scalars, the one event reader: clu's tensor scalars and the plain
  simple_value scalars of older event files; images and hparams are not scalars."""
  from tensorboard.compat.proto import summary_pb2
  from sparsediff_jax.console.scalars import read_scalars
  writer = tb_writer.TensorBoardWriter(str(tmp_path))
  writer.write_hparams({'mask.ratio': '0.9'})
  writer.write_scalars(5, {'loss': 0.25})
  writer.write_scalars(10, {'loss': 0.5})
  writer._write_summary(7, summary_pb2.Summary(value=[
      summary_pb2.Summary.Value(tag='old_loss', simple_value=1.5)]))
  writer.write_images(10, {'samples': np.zeros((1, 4, 4, 3), np.uint8)})
  writer.close()
  scalars = read_scalars(str(tmp_path))
  assert sorted(scalars) == ['loss', 'old_loss']
  steps, values = scalars['loss']
  assert steps.tolist() == [5, 10] and values.tolist() == [0.25, 0.5]
  assert [a.tolist() for a in scalars['old_loss']] == [[7], [1.5]]

def test_create_writer_console_line_and_jsonl(tmp_path, caplog):
  import logging
  from sparsediff_jax.console import metrics_jsonl
  writer = tb_writer.create_writer(str(tmp_path), process_index=0)
  with caplog.at_level(logging.INFO, logger='absl'):   # whatever earlier tests set
    writer.write_hparams({'a': '1' * 5000})
    writer.write_scalars(3, {'loss': 0.5})
  writer.close()
  assert metrics_jsonl.read(str(tmp_path / 'metrics.jsonl')) == [{'step': 3, 'loss': 0.5}]
  assert 'step 3: loss 0.5' in caplog.text and '11111' not in caplog.text
  assert len(glob.glob(str(tmp_path / 'events.out.tfevents.*'))) == 1
  other = tb_writer.create_writer(str(tmp_path / 'p1'), process_index=1)
  assert [type(w) for w in other.writers] == [tb_writer.ConsoleWriter]


def test_training_line_shows_what_people_read_and_verbosity_shows_all(caplog):
  import logging
  from absl import logging as absl_logging
  scalars = {'loss': 1.583721, 'dense_loss': 1.58058, 'steps_per_sec': 2.8712,
             'learning_rate': 2e-4, 'grad_norm': 4.0062, 'kept_fraction': 0.1}
  assert tb_writer.training_line(50, scalars) == (
      'step 50: loss 1.58372, dense loss 1.58058, 2.87 steps/s, lr 0.0002')
  writer = tb_writer.ConsoleWriter()
  with caplog.at_level(logging.DEBUG, logger='absl'):
    verbosity = absl_logging.get_verbosity()
    try:
      absl_logging.set_verbosity(absl_logging.DEBUG)
      writer.write_scalars(50, scalars)
      absl_logging.set_verbosity(absl_logging.INFO)
      writer.write_scalars(60, {'fid': 12.5})   # an evaluation: every value
    finally:
      absl_logging.set_verbosity(verbosity)
  assert '[50] dense_loss=1.58058, grad_norm=4.0062, kept_fraction=0.1' in caplog.text
  assert '[60] fid=12.5' in caplog.text


def test_plain_log_lines_drop_the_absl_prefix():
  import logging
  import re
  record = logging.LogRecord('absl', logging.INFO, '/x/main.py', 199, 'mode %s', ('train',),
                             None)
  assert re.fullmatch(r'\d\d:\d\d:\d\d mode train', logs.PlainFormatter().format(record))
  record.levelno, record.levelname = logging.WARNING, 'WARNING'
  assert re.fullmatch(r'\d\d:\d\d:\d\d warning: mode train',
                      logs.PlainFormatter().format(record))


def test_a_full_disk_under_the_events_file_is_one_disk_full_error_naming_it(tmp_path,
                                                                             monkeypatch):
  from sparsediff_jax import errors
  from tests.helpers import disk_full
  writer = tb_writer.TensorBoardWriter(str(tmp_path))
  writer.write_scalars(5, {'loss': 0.25})
  writer.flush()
  disk_full.fill_up('tfevents', monkeypatch.setattr)
  with pytest.raises(errors.DiskFullError) as raised:   # a new writer (a resumed run)
    tb_writer.TensorBoardWriter(str(tmp_path))
  message = str(raised.value)
  assert message.startswith('no space left on device (ENOSPC) writing the TensorBoard events '
                            f'file {tmp_path}/events.out.tfevents.'), message
  assert message.endswith('free space there and run the same command again'), message
  assert '\n' not in message
  assert glob.glob(str(tmp_path / 'events.*')) == [str(writer.path)]   # none left half-made
  writer._file = disk_full._FillingFile(writer._file)   # the disk fills under a running one
  writer._records._writer = writer._file
  with pytest.raises(errors.DiskFullError, match=str(writer.path)):
    writer.write_scalars(10, {'loss': 0.125})
