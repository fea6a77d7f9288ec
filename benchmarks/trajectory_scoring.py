"""Where the time of a research trajectory's scoring goes (--mode=research,
research.trajectory=True), under the old sampling default (heun, default grid, 18 steps:
35 NFE) and the new one (config_base.py's sampling block), on the same run.

    nice -n 10 python -m benchmarks.trajectory_scoring [--model=digits_dense]
        [--digits_steps=1500 --shapes_steps=600] [--repeats=2] [--num_samples=128]

The run is a digits model that benchmarks/sampler_nfe.py trained and cached with the same
--digits_steps/--shapes_steps (five checkpoints, the memorization experiment's recipe).
Each setting scores every checkpoint on a copy of the run in a fresh process, with
research.num_samples=--num_samples and research.batch_size=128 as the memorization window
experiment does. Inside that process the research mode's parts are timed (wall seconds,
summed over checkpoints): start-up (interpreter, imports, config, up to the mode),
restoring checkpoints, compiling the sampler (the memory check compiles it once),
sampling, loading the training images, the dataset metrics (digits: the classifier),
the memorization search (and its floor on fresh real images), locality, reading the
logged losses (metrics.jsonl, or the event files of older runs), the window report, plots
and files; 'other' is the rest (listing checkpoints, the process's exit). The settings
alternate --repeats times so a change of machine load hits both alike; the median of each
phase is reported with the ratio old / new of sampling and of the whole.
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

OLD = dict(sampler='heun', time_steps='default', num_steps=18)
MARK = 'PHASES '   # the child's result line
# phase -> the (module, function) call sites of the research mode wrapped with its timer.
_R, _M = 'sparsediff_jax.modes.research', 'sparsediff_jax.metrics.memorization'
PHASES = {'restore': [('sparsediff_jax.train_state', 'restore_run')],
          'compile sampler': [('sparsediff_jax.generate', 'check_sampler_fits')],
          'sampling': [(_R, 'generate_samples')],
          'load training images': [('sparsediff_jax.data', 'load_train_images')],
          'dataset metrics (classifier)': [('sparsediff_jax.modes.evaluate', 'dataset_metrics')],
          'memorization search': [(_M, 'memorization_report'), (_R, 'memorization_floor')],
          'locality': [('sparsediff_jax.metrics.locality', 'measure_locality')],
          'logged losses': [(_R, 'logged_series'), (_R, 'last_logged')],
          'window report': [('sparsediff_jax.scoring.window_scoring', 'report')],
          'plots and files': [(_R, 'save_trajectory_plot'), (_R, 'save_png'),
                              (_M, 'save_memorization_grid'),
                              ('sparsediff_jax.metrics.locality', 'save_locality_plot'),
                              (_R, 'write_trajectory'), (_R, 'write_metrics')]}


def settings() -> dict[str, dict]:
  from sparsediff_jax import config_base
  s = config_base.get_config().sampling
  return {'old default': OLD,
          'new default': dict(sampler=s.sampler, time_steps=s.time_steps, num_steps=s.num_steps)}


def child(spawned: float, argv: list[str]) -> None:
  """Runs the CLI on `argv` in this process, timing PHASES; prints MARK + JSON."""
  import importlib
  entered = time.time()
  from sparsediff_jax import main
  from sparsediff_jax.modes import research
  seconds = dict.fromkeys(PHASES, 0.0)
  calls = {phase: [] for phase in PHASES}   # seconds of each outermost call
  depth = [0]   # a timed call inside another timed call counts once, for the outer one

  def timed(phase, fn):
    def wrapper(*args, **kwargs):
      depth[0] += 1
      start = time.perf_counter()
      try:
        return fn(*args, **kwargs)
      finally:
        depth[0] -= 1
        if not depth[0]:
          calls[phase].append(time.perf_counter() - start)
          seconds[phase] += calls[phase][-1]
    return wrapper

  for phase, sites in PHASES.items():
    for module, name in sites:
      m = importlib.import_module(module)
      setattr(m, name, timed(phase, getattr(m, name)))
  mode = research.evaluate_run
  began = []

  def evaluate_run(*args, **kwargs):
    began.append(time.time())
    return mode(*args, **kwargs)

  research.evaluate_run = evaluate_run
  sys.argv = ['sparsediff_jax.main', *argv]
  try:
    main.run()
  except SystemExit as e:
    if e.code:
      raise
  seconds['start-up'] = began[0] - spawned
  seconds['in-process imports'] = began[0] - entered   # part of start-up
  seconds['sampling per checkpoint'] = calls['sampling']
  seconds['restore per checkpoint'] = calls['restore']
  print(MARK + json.dumps(seconds), flush=True)


def score(workdir: str, flags: list[str], sampling: dict, num_samples: int) -> dict:
  """Phase seconds and the wall time ('whole') of one trajectory on a copy of `workdir`."""
  with tempfile.TemporaryDirectory() as tmp:
    copy = os.path.join(tmp, 'run')
    shutil.copytree(workdir, copy, ignore=shutil.ignore_patterns('research'))
    argv = ['--mode=research', f'--workdir={copy}', *flags,
            '--config.research.trajectory=True',
            f'--config.research.num_samples={num_samples}', '--config.research.batch_size=128',
            '--config.research.locality_images=1', '--config.research.locality_times=2',
            *[f'--config.sampling.{k}={v}' for k, v in sampling.items()]]
    start = time.time()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', str(start),
                          '--', *argv], cwd=REPO, check=True, capture_output=True, text=True,
                         env={**os.environ, 'PYTHONPATH': REPO})
    whole = time.time() - start
  line = next(l for l in out.stdout.splitlines() if l.startswith(MARK))
  seconds = json.loads(line[len(MARK):])
  timed = seconds['start-up'] + sum(seconds[p] for p in PHASES)
  return {**seconds, 'other': whole - timed, 'whole': whole}


def rounded(value):
  return [round(v, 1) for v in value] if isinstance(value, list) else round(value, 1)


def main():
  if len(sys.argv) > 2 and sys.argv[1] == '--child':
    return child(float(sys.argv[2]), sys.argv[4:])
  from benchmarks import sampler_nfe
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  cache = os.path.join(os.environ.get('SPARSEDIFF_CACHE', os.path.expanduser(
      '~/.cache/sparsediff_jax')), 'sampler_nfe')
  p.add_argument('--cache', default=cache, help="sampler_nfe.py's --cache")
  p.add_argument('--model', default='digits_dense', choices=('digits_dense', 'digits_mask0.9'))
  p.add_argument('--digits_steps', type=int, default=1500)
  p.add_argument('--shapes_steps', type=int, default=600)
  p.add_argument('--num_samples', type=int, default=128)
  p.add_argument('--repeats', type=int, default=2)
  args = p.parse_args()
  flags = sampler_nfe.models(args.digits_steps, args.shapes_steps)[args.model]
  workdir = os.path.join(args.cache,
                         f'{args.model}_{args.digits_steps}_{args.shapes_steps}')
  import numpy as np
  from sparsediff_jax import formulations, samplers
  fm = formulations.FlowMatching()
  runs = {name: [] for name in settings()}
  for _ in range(args.repeats):
    for name, sampling in settings().items():
      runs[name].append(score(workdir, flags, sampling, args.num_samples))
      print(json.dumps(dict(setting=name, **{k: rounded(v) for k, v in runs[name][-1].items()})),
            flush=True)
  median = {name: {k: float(np.median([r[k] for r in rs])) for k in rs[0]
                   if not isinstance(rs[0][k], list)} for name, rs in runs.items()}
  for name, sampling in settings().items():
    nfe = samplers.num_evaluations(fm, sampling['sampler'], sampling['num_steps'])
    print(json.dumps(dict(setting=name, **sampling, nfe=nfe, repeats=args.repeats,
                          median_s={k: round(v, 1) for k, v in median[name].items()})))
  old, new = median['old default'], median['new default']
  print(json.dumps({'old / new sampling': round(old['sampling'] / new['sampling'], 2),
                    'old / new whole': round(old['whole'] / new['whole'], 2)}))


if __name__ == '__main__':
  main()
