"""Stands in for `python -m sparsediff_jax.main` in sweep tests: no training, just files.

Appends 'MODE WORKDIR' to $FAKE_RUNNER_LOG. --mode=research writes research_metrics.json
with step = --config.training.num_steps and metric 'score' = 10 * mask.ratio + seed.
A run whose workdir name contains $FAKE_RUNNER_FAIL exits 1 in --mode=train (an
interrupted run). With $FAKE_RUNNER_CONFIG set, --mode=train writes WORKDIR/config.json,
the resolved config, as the real CLI does.
"""

import json
import os
import sys


def main(argv):
  flags = dict(a[2:].split('=', 1) for a in argv if a.startswith('--') and '=' in a)
  workdir, mode = flags['workdir'], flags['mode']
  with open(os.environ['FAKE_RUNNER_LOG'], 'a') as f:
    f.write(f'{mode} {os.path.basename(workdir)}\n')
  fail = os.environ.get('FAKE_RUNNER_FAIL')
  if mode == 'train' and fail and fail in os.path.basename(workdir):
    return 1
  if mode == 'train' and os.environ.get('FAKE_RUNNER_CONFIG'):   # as main writes it
    from sparsediff_jax.sweeps import carry_over
    overrides = {k[len('config.'):]: v for k, v in flags.items() if k.startswith('config.')}
    config = carry_over.resolve_config(flags.get('config'), overrides)
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))
  if mode == 'research':
    metrics = {'step': int(flags['config.training.num_steps']),
               'score': 10 * float(flags['config.mask.ratio'])
                        + float(flags['config.training.seed'])}
    with open(os.path.join(workdir, 'research_metrics.json'), 'w') as f:
      json.dump(metrics, f)
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
