"""`--mode=plan --topology=NAME`: what the config costs on a TPU slice, compiled here.

Compiles the config's train step (and its sampler) for the slice with libtpu on this
machine, no TPU needed (sparsediff_jax/tpu_plan/), logs per chip the state, the compiled
memory against the chip's HBM, FLOPs and HBM bytes per step, the collectives and the
roofline bound, and writes them to WORKDIR/plan.json. Something that does not fit is one
line and exit code 2, with nothing written. docs/launch.md, "Planning a TPU slice from a
CPU".
"""

import os

from absl import flags, logging

from sparsediff_jax.errors import ConfigError
from sparsediff_jax.modes.base import Mode
from sparsediff_jax.runtime import atomic_io
from sparsediff_jax.tpu_plan import plan as tpu_plan
from sparsediff_jax.tpu_plan import topology


def run_plan_mode(config, workdir: str) -> str:
  """Plans config on the slice --topology names; returns the path of plan.json."""
  name = flags.FLAGS.topology
  if not name:
    raise ConfigError(f'--mode=plan needs --topology=NAME, one of {topology.known_names_line()}')
  tpu_slice = topology.parse(name)   # before libtpu is asked for anything
  plan = tpu_plan.make_plan(config, tpu_slice)
  for line in tpu_plan.lines(plan):
    logging.info('%s', line)
  tpu_plan.check(plan)   # refused: nothing written
  path = os.path.join(workdir, 'plan.json')
  atomic_io.write_json(path, plan)
  return path


def summary(path: str, finished) -> tuple[str, str]:
  """The CLI's last two lines after planning (console/summary.py)."""
  return (f'planned in {finished.took}; wrote {path}',
          f'{finished.command("train")} (on the TPU slice)')


MODE = Mode(name='plan', run=run_plan_mode, summary=summary)
