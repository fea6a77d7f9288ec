"""WORKDIR/metrics.jsonl: every logged metric line as one JSON object, written as it happens.

Each line is {"step": S, "<name>": value, ...} with the same scalars as the console and
TensorBoard (`pandas.read_json(path, lines=True)` reads it; NaN/inf appear as the bare
tokens NaN/Infinity, which Python's json and pandas accept). Each line is appended whole
and synchronously (atomic_io.append_line: a full disk or a kill leaves no half line), so a
killed run loses none that were logged. On resume from step S the file is first cut back to
the lines of steps <= S, so after any number of interruptions it reads like the log of one
uninterrupted run (the timing columns aside). Local paths and gs:// alike.
"""

import json

from sparsediff_jax.runtime import atomic_io


class JsonlWriter:
  """Appends write_scalars calls to a JSON-lines file; the other methods of a clu
  MetricWriter do nothing. No clu base class: clu.metric_writers imports TensorFlow."""

  def __init__(self, path: str, *, resume_step: int = 0):
    self.path = path
    _cut_after(path, resume_step)

  def write_scalars(self, step, scalars):
    record = {'step': int(step), **{k: float(v) for k, v in scalars.items()}}
    atomic_io.append_line(self.path, json.dumps(record))

  # Only scalars go to this file.
  def write_summaries(self, step, values, metadata=None):
    pass

  def write_images(self, step, images):
    pass

  def write_videos(self, step, videos):
    pass

  def write_audios(self, step, audios, *, sample_rate):
    pass

  def write_texts(self, step, texts):
    pass

  def write_histograms(self, step, arrays, num_buckets=None):
    pass

  def write_hparams(self, hparams):
    pass

  def flush(self):
    pass

  def close(self):
    pass


def read(path: str) -> list[dict]:
  """The records of a metrics.jsonl file, skipping a line cut off by a kill."""
  text = atomic_io.read_text(path)
  if text is None:
    raise FileNotFoundError(f'{path}: no such file')
  records = []
  for line in text.splitlines():
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError:
      pass
  return records


def _cut_after(path: str, step: int) -> None:
  if not atomic_io.exists(path):
    return
  kept = [r for r in read(path) if r.get('step', 0) <= step]
  atomic_io.write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
