"""The metric writer of WORKDIR/metrics.jsonl: a clu MetricWriter whose scalars become lines
of the run record runtime/metrics_file.py defines (format, reading, cutting back on resume).
`read` is that module's, kept here for the callers that read the file beside the writer.
"""

from sparsediff_jax.runtime import metrics_file
from sparsediff_jax.runtime.metrics_file import read   # noqa: F401  (re-exported)


class JsonlWriter:
  """Appends write_scalars calls to a JSON-lines file; the other methods of a clu
  MetricWriter do nothing. No clu base class: clu.metric_writers imports TensorFlow."""

  def __init__(self, path: str, *, resume_step: int = 0):
    self.path = path
    metrics_file.cut_after(path, resume_step)

  def write_scalars(self, step, scalars):
    metrics_file.append(self.path, step, scalars)

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

