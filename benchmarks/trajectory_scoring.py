"""Scoring time of a research trajectory (--mode=research, research.trajectory=True) under
the old sampling default (heun, default grid, 18 steps: 35 NFE) and the new one
(config_base.py's sampling block), on the same run.

    nice -n 10 python benchmarks/trajectory_scoring.py [--workdir=RUN] [--repeats=2]

RUN defaults to the digits mask-0.9 run that benchmarks/sampler_nfe.py trains and caches
(five checkpoints, the memorization experiment's recipe); each setting scores every
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
  p.add_argument('--workdir', default=os.path.join(cache, 'digits_mask0.9_1500_1000'))
  p.add_argument('--repeats', type=int, default=2)
  args = p.parse_args()
  flags = sampler_nfe.models(1500, 1000)['digits_mask0.9']
  import numpy as np
  from sparsediff_jax import formulations, samplers
  fm = formulations.FlowMatching()
  times = {name: [] for name in settings()}
  for _ in range(args.repeats):
    for name, sampling in settings().items():
      times[name].append(score(args.workdir, flags, sampling))
  for name, sampling in settings().items():
    nfe = samplers.num_evaluations(fm, sampling['sampler'], sampling['num_steps'])
    print(json.dumps(dict(setting=name, **sampling, nfe=nfe,
                          median_s=round(float(np.median(times[name])), 1),
                          times_s=[round(t, 1) for t in times[name]])))


if __name__ == '__main__':
  main()
