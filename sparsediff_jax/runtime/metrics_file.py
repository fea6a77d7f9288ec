"""WORKDIR/metrics.jsonl, the run's record of every logged metric line: its format, read and
written here beside the run directory (run_dir reads it to tell how far a run trained;
console/metrics_jsonl.py writes it as one of the run's metric writers).

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

FILE = 'metrics.jsonl'


def append(path: str, step, scalars) -> None:
  """Appends one line: the step and the scalars as floats."""
  record = {'step': int(step), **{k: float(v) for k, v in scalars.items()}}
  atomic_io.append_line(path, json.dumps(record))


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


def cut_after(path: str, step: int) -> None:
  """Keeps only the lines of steps <= step (nothing to do when the file does not exist)."""
  if not atomic_io.exists(path):
    return
  kept = [r for r in read(path) if r.get('step', 0) <= step]
  atomic_io.write_text(path, ''.join(json.dumps(r) + '\n' for r in kept))
