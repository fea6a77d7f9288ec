"""The Mode record: what main.py needs to know to run one `--mode` (modes/README.md)."""

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Mode:
  """One value of --mode.

  name: the --mode value.
  run: fn(config, workdir) -> result.
  summary: fn(result, console.summary.Finished) -> (what was done, what to run next): the
    two last lines the CLI prints (console/summary.lines adds 'done: ' and 'next: ').
  reads_run: works on a trained run: the run-defining config fields come from
    WORKDIR/config.json (run_dir.bind_to_run), and overrides may not contradict them.
  writes_record: starts or continues a run in the workdir: the workdir is checked and
    locked, --start_over is allowed, and `run` also takes `record=` (run_dir.RunRecord):
    it begins the record (config.json and dataset.json, by process 0) once nothing can
    refuse the run any more, and it is undone if the run ends before its first step.
  nothing_to_do: fn(config, workdir) -> a message when there is nothing to do (asked
    before anything is written; main logs it and exits 0), else None.
  """
  name: str
  run: Callable[[Any, str], Any]
  summary: Callable[[Any, Any], tuple[str, str]]
  reads_run: bool = False
  writes_record: bool = False
  nothing_to_do: Callable[[Any, str], str | None] | None = None
