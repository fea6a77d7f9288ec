"""The last two lines of every mode: what was done, how long it took and where the outputs
are, then the command a user would run next. Pure: the CLI logs what these return.

Each mode says its own two lines (its Mode.summary, modes/base.py) from what it returned
and a `Finished` record; this module words the commands they name and adds the prefixes.
"""

import dataclasses
import shlex

from sparsediff_jax.console.progress import format_seconds

_CLI = 'python -m sparsediff_jax.main'


@dataclasses.dataclass(frozen=True)
class Finished:
  """Where and how long a mode ran, for its summary."""
  workdir: str
  took: str                        # the wall time, worded (format_seconds)
  config_path: str | None = None   # the --config a next command repeats

  def command(self, mode: str) -> str:
    """The CLI command of `mode` on the same workdir (and config file)."""
    config = f' --config={shlex.quote(self.config_path)}' if self.config_path else ''
    return f'{_CLI}{config} --mode={mode} --workdir={shlex.quote(self.workdir)}'

  def tensorboard(self) -> str:
    return f'tensorboard --logdir {shlex.quote(self.workdir)}'


def lines(mode, result, workdir: str, seconds: float,
          config_path: str | None = None) -> tuple[str, str]:
  """('done: ...', 'next: ...') of `mode` (a modes.base.Mode), given what its run returned
  and its wall time in seconds."""
  done, after = mode.summary(result, Finished(workdir, format_seconds(seconds), config_path))
  return f'done: {done}', f'next: {after}'
