"""The run's metric writers without TensorFlow: TensorBoard event files, the console line.

clu's writers (`clu.metric_writers`) import TensorFlow when the package is imported: seconds of
start-up and ~1 GB of install for what is, here, a few protocol buffers appended to a
file. This module writes the same event files with the `tensorboard` package alone (its
protos and its TFRecord framing) and keeps clu's method names (write_scalars,
write_images, write_hparams, flush, close), so the other writers (metrics_jsonl.py) and
the callers are unchanged.

- `TensorBoardWriter`: WORKDIR/events.out.tfevents.*: scalars and images in TF2's layout
  (tensor summaries with the `scalars` / `images` plug-in metadata, as tf.summary writes
  them), hparams through TensorBoard's hparams plug-in. Local paths and gs:// (etils
  epath; a remote file is uploaded when flushed or closed, as epath's backends allow).
- `ConsoleWriter`: one log line per write_scalars call. A training line shows what people
  read, "step 50: loss 1.58, dense loss 1.57, 2.9 steps/s, lr 0.0002"; with --verbosity=1
  (and for evaluation results) every value, "[step] name=value, ...". The rest is in
  metrics.jsonl and TensorBoard; the hyperparameters are not logged (they are in
  config.json and TensorBoard; clu logged all of them as one line of several KB).
- `create_writer`: what the training loop uses (console, TensorBoard on process 0 and
  WORKDIR/metrics.jsonl, local or gs://).

Writes are synchronous: the training loop hands over host floats and one small PNG, a
fraction of a millisecond each.
"""

import contextlib
import io
import os
import socket
import time

from absl import logging
import numpy as np


class ConsoleWriter:
  """Logs scalars as one line per step; images and hparams are not logged."""

  def write_scalars(self, step: int, scalars: dict) -> None:
    if 'loss' in scalars and logging.get_verbosity() < 1:
      logging.info('%s', training_line(step, scalars))
      return
    values = ', '.join(f'{k}={_short(v)}' for k, v in sorted(scalars.items()))
    logging.info('[%d] %s', step, values)

  def write_images(self, step: int, images: dict) -> None:
    pass

  def write_texts(self, step: int, texts: dict) -> None:
    pass

  def write_hparams(self, hparams: dict) -> None:
    pass

  def flush(self) -> None:
    pass

  def close(self) -> None:
    pass


def _short(value) -> str:
  value = float(value)
  return f'{value:.6g}'


# (scalar, how the console line shows it) for the values a training line shows.
_TRAINING_LINE = (('loss', 'loss {:.6g}'), ('dense_loss', 'dense loss {:.6g}'),
                  ('steps_per_sec', '{:.3g} steps/s'), ('learning_rate', 'lr {:.3g}'))


def training_line(step: int, scalars: dict) -> str:
  """'step 50: loss 1.58372, dense loss 1.58058, 2.87 steps/s, lr 0.0002' (the values
  present among loss, dense_loss, steps_per_sec, learning_rate)."""
  shown = [fmt.format(float(scalars[k])) for k, fmt in _TRAINING_LINE if k in scalars]
  return f'step {int(step)}: ' + ', '.join(shown)


class TensorBoardWriter:
  """Appends summaries to a new events.out.tfevents.* file in `logdir`."""

  def __init__(self, logdir: str):
    from etils import epath
    from tensorboard.summary.writer.record_writer import RecordWriter
    path = epath.Path(logdir)
    name = f'events.out.tfevents.{time.time():.6f}.{socket.gethostname()}.{os.getpid()}'
    self.path = path / name
    with self._disk_full():
      path.mkdir(parents=True, exist_ok=True)
      self._file = self.path.open('wb')
    self._records = RecordWriter(self._file)
    from tensorboard.compat.proto import event_pb2
    from sparsediff_jax import errors
    try:
      self._write_event(event_pb2.Event(wall_time=time.time(), file_version='brain.Event:2'))
    except errors.DiskFullError:   # no events file is left that holds no event
      with contextlib.suppress(OSError):   # its buffer cannot be written either
        self._file.close()
      self.path.unlink(missing_ok=True)
      raise

  def _disk_full(self):
    """A full disk (ENOSPC) as one DiskFullError naming the events file."""
    from sparsediff_jax.runtime import atomic_io
    return atomic_io.reporting_disk_full(
        f'the TensorBoard events file {self.path}',
        'the events before the last flush and the checkpoints are intact')

  def _write_event(self, event) -> None:
    with self._disk_full():
      self._records.write(event.SerializeToString())

  def _write_summary(self, step: int, summary) -> None:
    from tensorboard.compat.proto import event_pb2
    self._write_event(event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

  def write_scalars(self, step: int, scalars: dict) -> None:
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.scalar import metadata
    from tensorboard.util import tensor_util
    meta = metadata.create_summary_metadata(display_name=None, description=None)
    self._write_summary(step, summary_pb2.Summary(value=[
        summary_pb2.Summary.Value(
            tag=tag, metadata=meta,
            tensor=tensor_util.make_tensor_proto(np.float32(value)))
        for tag, value in scalars.items()]))

  def write_images(self, step: int, images: dict) -> None:
    """images: name -> uint8 [N, H, W, C] (C 1, 3 or 4) or [H, W, C]; N images per tag."""
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.image import metadata
    from tensorboard.util import tensor_util
    values = []
    for tag, batch in images.items():
      batch = np.asarray(batch)
      batch = batch[None] if batch.ndim == 3 else batch
      encoded = [str(batch.shape[2]).encode(), str(batch.shape[1]).encode()]
      encoded += [_png(image) for image in batch]
      meta = metadata.create_summary_metadata(display_name=None, description=None,
                                              converted_to_tensor=True)
      values.append(summary_pb2.Summary.Value(
          tag=tag, metadata=meta,
          tensor=tensor_util.make_tensor_proto(np.array(encoded, dtype=object))))
    self._write_summary(step, summary_pb2.Summary(value=values))

  def write_texts(self, step: int, texts: dict) -> None:
    from tensorboard.plugins.text import summary_v2 as text
    for tag, value in texts.items():
      self._write_summary(step, text.text_pb(tag, value))

  def write_hparams(self, hparams: dict) -> None:
    """hparams: name -> str, bool, int or float (TensorBoard's HParams tab)."""
    from tensorboard.plugins.hparams import summary_v2 as hp
    self._write_summary(0, hp.hparams_pb(hparams))

  def flush(self) -> None:
    with self._disk_full():
      self._records.flush()

  def close(self) -> None:
    with self._disk_full():
      self._records.close()


def _png(image: np.ndarray) -> bytes:
  import PIL.Image
  image = np.asarray(image, np.uint8)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  buffer = io.BytesIO()
  PIL.Image.fromarray(image).save(buffer, format='PNG')
  return buffer.getvalue()


class MultiWriter:
  """Hands every call to each writer in turn."""

  def __init__(self, writers):
    self.writers = list(writers)

  def __getattr__(self, name):
    if not name.startswith('write_') and name not in ('flush', 'close'):
      raise AttributeError(name)

    def call(*args, **kwargs):
      for writer in self.writers:
        getattr(writer, name)(*args, **kwargs)

    return call


def create_writer(workdir: str, *, process_index: int, resume_step: int = 0) -> MultiWriter:
  """The training loop's writer: every process logs to the console; process 0 also writes
  TensorBoard events and WORKDIR/metrics.jsonl (from resume_step)."""
  writers = [ConsoleWriter()]
  if process_index == 0:
    from sparsediff_jax.console import metrics_jsonl
    writers.append(TensorBoardWriter(workdir))
    writers.append(metrics_jsonl.JsonlWriter(os.path.join(workdir, 'metrics.jsonl'),
                                             resume_step=resume_step))
  return MultiWriter(writers)
