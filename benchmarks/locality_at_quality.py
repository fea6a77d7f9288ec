"""Locality (and memorization) of memorization-window runs at EQUAL QUALITY, not equal steps.

A committed window result (launch/sweep.py --results) holds the run's resolved config and
its scored trajectory, but no checkpoint. For every selected run that reached the quality
target (tau_gen of --metric, not censored) this replays the run to its first scored step at
or after tau_gen, i.e. trains the same config straight to that step (a run stopped there is
the same run: scoring/window_scoring.py), then runs --mode=research on it, which measures
the denoiser's context use (metrics/locality.py, with --locality_images training images
and the first --locality_times noise levels of the sampler's grid) and re-scores the samples.

The replay is checked, not assumed: research mode's memorized fraction and quality metric at
that step must equal the committed trajectory's entry at the same step (same parameters,
same noise); a run whose replay differs is reported and left out of the table.

  python benchmarks/locality_at_quality.py \
      --results=docs/results/memorization_window/runs --select=num_train_examples=32__ \
      --models=unet,dit --groups=grid --ratios=0,0.9 --root=runs/locality_at_quality \
      --out=docs/results/memorization_window/locality_at_quality

writes OUT.json (one entry per run), OUT.md (mean +- std per backbone and mask ratio) and
OUT_maps/<run>.png (each replay's input-sensitivity plot, metrics/locality.py).
Runs already in OUT.json are skipped, so an interrupted call continues.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHECKED = ('pixel_memorized_fraction',)   # plus --metric


def replay_step(trajectory: list[dict], tau: float) -> int:
  """The first scored step at or after tau (the trajectory's resolution)."""
  return min(e['step'] for e in trajectory if e['step'] >= tau)


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def selected_runs(results: str, select: list[str], models: list[str], groups: list[str],
                  ratios: list[float]) -> list[str]:
  """Runs whose name holds every SELECT substring, of a backbone in MODELS, a sweep group in
  GROUPS (launch/sweep.py: grid, batch_matched<r>, dropout) and a mask ratio in RATIOS."""
  names = []
  for name in sorted(os.listdir(results)):
    folder = os.path.join(results, name)
    if not os.path.isfile(os.path.join(folder, 'config.json')) or not all(
        s in name for s in select):
      continue
    kept = read_json(os.path.join(folder, 'config.json'))
    group = read_json(os.path.join(folder, 'sweep_run.json'))['group']
    if (kept['model']['name'] in models and group in groups
        and any(math.isclose(kept['mask']['ratio'], r) for r in ratios)):
      names.append(name)
  return names


def replay(args, name: str) -> dict:
  """Trains and researches one run at its equal-quality step; returns its entry."""
  folder = os.path.join(args.results, name)
  kept = read_json(os.path.join(folder, 'config.json'))
  metrics = read_json(os.path.join(folder, 'research_metrics.json'))
  trajectory = sorted(read_json(os.path.join(folder, 'window_trajectory.json')),
                      key=lambda e: e['step'])
  entry = {'run': name, 'model': kept['model']['name'], 'mask_ratio': kept['mask']['ratio'],
           'group': read_json(os.path.join(folder, 'sweep_run.json'))['group'],
           'seed': kept['training']['seed'], 'metric': args.metric}
  tau = metrics.get(f'tau_gen_{args.metric}')
  if tau is None or metrics.get(f'tau_gen_{args.metric}_censored', 1.0):
    entry['reached'] = False
    return entry
  step = replay_step(trajectory, tau)
  from sparsediff_jax.sweeps import carry_over
  overrides = carry_over.overrides_for(kept, args.config)
  overrides.update({'training.num_steps': str(step), 'research.window_every': '0',
                    'research.window_stop': '0',
                    'research.locality_images': str(args.locality_images),
                    'research.locality_times': str(args.locality_times)})
  workdir = os.path.join(args.root, name)
  os.makedirs(workdir, exist_ok=True)
  flags = [f'--config={args.config}', f'--workdir={workdir}']
  flags += [f'--config.{k}={v}' for k, v in overrides.items()]
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(args.root, 'jax_cache'))
  start = time.time()
  with open(os.path.join(workdir, 'replay.log'), 'a') as log:
    for mode in ('train', 'research'):
      subprocess.run([args.python, '-m', 'sparsediff_jax.main', *flags, f'--mode={mode}'],
                     cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)
  research = read_json(os.path.join(workdir, 'research_metrics.json'))
  committed = next(e for e in trajectory if e['step'] == step)
  checked = CHECKED + (args.metric,)
  entry.update({'reached': True, 'tau_gen': tau, 'step': step,
                'seconds': round(time.time() - start, 1),
                'replay_matches': all(abs(research[k] - committed[k]) <= 1e-4 * max(
                    1.0, abs(committed[k])) for k in checked),
                **{k: research[k] for k in checked},
                **{f'committed_{k}': committed[k] for k in checked},
                **{k: v for k, v in research.items() if k.startswith('locality_')}})
  return entry


def keep_map(args, name: str) -> None:
  """Copies the replay's input-sensitivity plot (research/locality.png) to OUT_maps/NAME.png,
  when the replay folder has it."""
  import shutil
  src = os.path.join(args.root, name, 'research', 'locality.png')
  if os.path.isfile(src):
    os.makedirs(args.out + '_maps', exist_ok=True)
    shutil.copyfile(src, os.path.join(args.out + '_maps', name + '.png'))


def mean_std(values: list[float], digits: int = 2) -> str:
  """'mean ± std' (sample std; 0 for one value), '–' for none."""
  if not values:
    return '–'
  std = np.std(values, ddof=1) if len(values) > 1 else 0.0
  return f'{np.mean(values):.{digits}f} ± {std:.{digits}f}'


def table(entries: list[dict], metric: str) -> str:
  """Markdown: per backbone and mask ratio, how many seeds reached the target, and at that
  step the mean +- std (over those seeds) of the locality and the memorized fraction."""
  out = [f'| backbone | sweep group | mask ratio | seeds at the {metric} target | step | '
         'locality_radius90 | locality_far_fraction | memorized fraction |',
         '| --- | --- | --- | --- | --- | --- | --- | --- |']
  key = lambda e: (e['model'], e['group'], e['mask_ratio'])
  for model, name, ratio in sorted({key(e) for e in entries}):
    group = [e for e in entries if key(e) == (model, name, ratio)]
    ok = [e for e in group if e['reached'] and e['replay_matches']]
    cells = [mean_std([e['step'] for e in ok], digits=0)]
    cells += [mean_std([e[k] for e in ok]) for k in ('locality_radius90',
                                                     'locality_far_fraction',
                                                     'pixel_memorized_fraction')]
    out.append(f'| {model} | {name} | {ratio} | {len(ok)} of {len(group)} | '
               + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def usage_error(message: str) -> int:
  """One 'error:' line on stderr; the exit code of bad input (nothing is written)."""
  print(f'error: {message}', file=sys.stderr)
  return 2


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--results', required=True, help='committed window results, one per folder')
  p.add_argument('--select', default='', help='comma-separated substrings a run name needs')
  p.add_argument('--models', default='unet,dit', help='model.name values to include')
  p.add_argument('--groups', default='grid', help='sweep groups to include (sweep_run.json)')
  p.add_argument('--ratios', default='0,0.9', help='mask ratios to include')
  p.add_argument('--metric', default='digits_confidence', help='the quality target (tau_gen)')
  p.add_argument('--config', default=os.path.join(REPO, 'configs', 'digits.py'),
                 help='the config file the runs were made from')
  p.add_argument('--locality_images', type=int, default=4)
  p.add_argument('--locality_times', type=int, default=2)
  p.add_argument('--root', required=True, help='folder for the replayed runs')
  p.add_argument('--out', required=True, help='OUT.json and OUT.md are written')
  p.add_argument('--table_only', action='store_true', help='only rebuild OUT.md')
  p.add_argument('--python', default=sys.executable)
  args = p.parse_args(argv)
  args.root = os.path.abspath(args.root)
  from sparsediff_jax import registry
  if args.metric not in registry.QUALITY_METRICS:
    return usage_error(f'--metric={args.metric!r} is not a quality metric; choose one of '
                       f'{", ".join(registry.QUALITY_METRICS)}')
  try:
    ratios = [float(r) for r in args.ratios.split(',')]
  except ValueError:
    return usage_error(f'--ratios={args.ratios!r}: give comma-separated numbers, e.g. 0,0.9')
  if not os.path.isdir(args.results):
    return usage_error(f'--results={args.results!r} is not a folder of kept results')
  entries = read_json(args.out + '.json') if os.path.isfile(args.out + '.json') else []
  if not args.table_only:
    done = {e['run'] for e in entries}
    names = selected_runs(args.results, [s for s in args.select.split(',') if s],
                          args.models.split(','), args.groups.split(','), ratios)
    if not names:
      return usage_error(f'no kept result in {args.results} matches --select={args.select!r}, '
                         f'--models={args.models!r}, --groups={args.groups!r} and '
                         f'--ratios={args.ratios!r}')
    for i, name in enumerate(names, 1):
      if name in done:
        print(f'[{i}/{len(names)}] {name}: done, skipped', flush=True)
        keep_map(args, name)
        continue
      try:
        entry = replay(args, name)
      except subprocess.CalledProcessError as e:
        print(f'error: the replay of {name} failed (exit {e.returncode}); see '
              f'{os.path.join(args.root, name, "replay.log")}. The replays before it are kept '
              f'in {args.out}.json', file=sys.stderr)
        return 1
      entries.append(entry)
      keep_map(args, name)
      os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
      with open(args.out + '.json', 'w') as f:
        json.dump(entries, f, indent=1)
      print(f'[{i}/{len(names)}] {json.dumps(entry)}', flush=True)
  bad = [e['run'] for e in entries if e['reached'] and not e['replay_matches']]
  text = table(entries, args.metric)
  if bad:
    text += '\n\nReplays that differ from the committed trajectory (left out): ' + ', '.join(bad)
  with open(args.out + '.md', 'w') as f:
    f.write(text + '\n')
  print(text)
  return 0


if __name__ == '__main__':
  sys.exit(main())
