"""Scoring time of a research trajectory (--mode=research, research.trajectory=True) under
the old sampling default (heun, default grid, 18 steps: 35 NFE) and the new one
(config_base.py's sampling block), on the same run.

    nice -n 10 python benchmarks/trajectory_scoring.py [--model=digits_dense]
        [--digits_steps=1500 --shapes_steps=1000] [--repeats=2]

The run is a digits model that benchmarks/sampler_nfe.py trained and cached with the same
--digits_steps/--shapes_steps (five checkpoints, the memorization experiment's recipe);
each setting scores every
checkpoint on a copy of RUN, with research.num_samples=128 as the experiment does. The
settings alternate --repeats times so a change of machine load hits both alike; the
median wall time of each is reported, with the NFE.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO]

from benchmarks import sampler_nfe  # noqa: E402
from sparsediff_jax import config_base  # noqa: E402

OLD = dict(sampler='heun', time_steps='default', num_steps=18)


def settings() -> dict[str, dict]:
  s = config_base.get_config().sampling
  return {'old default': OLD,
          'new default': dict(sampler=s.sampler, time_steps=s.time_steps, num_steps=s.num_steps)}


def score(workdir: str, flags: list[str], sampling: dict) -> float:
  """Seconds of one --mode=research trajectory on a copy of `workdir`."""
  with tempfile.TemporaryDirectory() as tmp:
    copy = os.path.join(tmp, 'run')
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('research'))
    cmd = [sys.executable, '-m', 'sparsediff_jax.main', '--mode=research',
           f'--workdir={copy}', *flags, '--config.research.trajectory=True',
           '--config.research.num_samples=128', '--config.research.batch_size=64',
           '--config.research.locality_images=1', '--config.research.locality_times=2',
           *[f'--config.sampling.{k}={v}' for k, v in sampling.items()]]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True,
                   env={**os.environ, 'PYTHONPATH': REPO})
    return time.perf_counter() - start


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  cache = os.path.join(os.environ.get('SPARSEDIFF_CACHE', os.path.expanduser(
      '~/.cache/sparsediff_jax')), 'sampler_nfe')
  p.add_argument('--cache', default=cache, help="sampler_nfe.py's --cache")
  p.add_argument('--model', default='digits_dense', choices=('digits_dense', 'digits_mask0.9'))
  p.add_argument('--digits_steps', type=int, default=1500)
  p.add_argument('--shapes_steps', type=int, default=1000)
  p.add_argument('--repeats', type=int, default=2)
  args = p.parse_args()
  flags = sampler_nfe.models(args.digits_steps, args.shapes_steps)[args.model]
  workdir = os.path.join(args.cache,
                         f'{args.model}_{args.digits_steps}_{args.shapes_steps}')
  import numpy as np
  from sparsediff_jax import formulations, samplers
  fm = formulations.FlowMatching()
  times = {name: [] for name in settings()}
  for _ in range(args.repeats):
    for name, sampling in settings().items():
      times[name].append(score(workdir, flags, sampling))
  for name, sampling in settings().items():
    nfe = samplers.num_evaluations(fm, sampling['sampler'], sampling['num_steps'])
    print(json.dumps(dict(setting=name, **sampling, nfe=nfe,
                          median_s=round(float(np.median(times[name])), 1),
                          times_s=[round(t, 1) for t in times[name]])))


if __name__ == '__main__':
  main()
