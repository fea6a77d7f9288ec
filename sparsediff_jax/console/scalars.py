"""Reading back the scalars a run logged (loss, learning rate, throughput, ...).

The training loop writes them with clu's TensorBoard writer into WORKDIR (local or gs://);
this turns them into arrays for plots and checks, without starting a TensorBoard server.
"""

import numpy as np


def read_scalars(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{tag: (steps int64 [n], values float64 [n])} of every scalar in WORKDIR's event files:
  the tensor summaries clu writes, and plain scalar summaries of older event files.

  Steps are sorted; when a resumed run logged a step twice, the last value written wins.
  The one reader of the event files (scoring/trajectory.logged_series reads through it).
  """
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util

  acc = event_accumulator.EventAccumulator(
      workdir, size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
  acc.Reload()
  tags = acc.Tags()
  out = {}
  for tag in set(tags.get('tensors', [])) | set(tags.get('scalars', [])):
    by_step = {}
    for event in acc.Tensors(tag) if tag in tags.get('tensors', []) else ():
      value = tensor_util.make_ndarray(event.tensor_proto)
      if value.ndim == 0 and np.issubdtype(value.dtype, np.number):
        by_step[event.step] = float(value)
    for event in acc.Scalars(tag) if tag in tags.get('scalars', []) else ():
      by_step[event.step] = float(event.value)
    if by_step:
      steps = np.array(sorted(by_step), np.int64)
      out[tag] = (steps, np.array([by_step[s] for s in steps], np.float64))
  return out
