"""Where does the dense loss memorize Fashion-MNIST? Memorized fraction vs n and steps.

Trains the dense model (mask.ratio=0) of configs/fashion_mnist.py on class-balanced subsets
of n training images (data.class_balanced=True: the first n/10 of each class) and scores it
WHILE it trains (research.window_every, sparsediff_jax/scoring/window_scoring.py): every
--every steps, 128 samples from the same noise (EMA 0.995, Heun 12 steps) get their pixel
memorized fraction (d1/d2 < 1/3 against the n training images) and the classifier metrics
(fashion_mnist_fd, fashion_mnist_confidence). One process per n, so its wall time is the
time of one replication run (scoring included). A run stops once --stop of its samples are
memorized (research.window_stop), else at --steps.

The floor: the first --floor_images test images scored against the same n training images.
The copies (kind 'copies'): the classifier metrics of a model that only copies, i.e. the n
training images repeated to 128 samples: the confidence and FD that memorization alone
reaches at this n.

  python benchmarks/fashion_regime.py --root=runs/fashion_regime                # 16x16
  python benchmarks/fashion_regime.py --root=runs/fashion_regime --image_size=28 --sizes=16
  python benchmarks/fashion_regime.py --root=runs/fashion_regime --plot         # png + table

Every scored step is one row of ROOT/fashion_regime.csv (kind 'model'; kind 'floor' for
the floor; run_seconds and steps_per_second are the whole run's, the 1-minute load average
when the run ended). Runs already in the CSV are skipped, so an interrupted call continues
(an interrupted run resumes from its checkpoint). --plot draws ROOT/fashion_regime.png.
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The regime's model and scoring (docs/results/fashion_mnist_regime.md); --set flags given
# on the command line come after these and so override them.
DEFAULT_SET = (
    'mask.ratio=0', 'data.class_balanced=True', 'training.sample_every=0',
    'training.log_every=100', 'training.keep_checkpoints=1', 'sampling.sampler=heun',
    'sampling.num_steps=12', 'sampling.time_steps=default', 'sampling.seed=0',
    'sampling.ema_index=0', 'sampling.grid_size=4', 'research.num_samples=128',
    'research.batch_size=128')
FIELDS = ('kind', 'label', 'image_size', 'num_train', 'step', 'seed', 'memorized_fraction',
          'nn_distance_mean', 'nn_ratio_mean', 'fd', 'confidence', 'num_scored',
          'run_seconds', 'steps_per_second', 'load1', 'flags')


def read_rows(path: str) -> list[dict]:
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def append_rows(path: str, rows: list[dict]) -> None:
  new = not os.path.isfile(path)
  with open(path, 'a', newline='') as f:
    writer = csv.DictWriter(f, FIELDS)
    if new:
      writer.writeheader()
    writer.writerows({k: row.get(k, '') for k in FIELDS} for row in rows)


def cli_flags(size: int, n: int, steps: int, every: int, stop: float, seed: int,
              extra: list[str]) -> list[str]:
  """The `sparsediff_jax.main` overrides of one regime run (last one of a field wins)."""
  sets = [*DEFAULT_SET, f'data.image_size={size}', f'data.num_train_examples={n}',
          f'training.num_steps={steps}', f'training.checkpoint_every={every}',
          f'research.window_every={every}', f'research.window_stop={stop}',
          f'training.seed={seed}', *extra]
  return [f'--config.{s}' for s in sets]


def trajectory_rows(trajectory: list[dict], dataset: str, **common) -> list[dict]:
  """One CSV row per scored step of a window trajectory (window_scoring's entries)."""
  return [dict(kind='model', step=e['step'], memorized_fraction=e['pixel_memorized_fraction'],
               nn_distance_mean=e['pixel_nn_distance_mean'],
               nn_ratio_mean=e['pixel_nn_ratio_mean'], fd=e.get(f'{dataset}_fd', ''),
               confidence=e.get(f'{dataset}_confidence', ''), **common)
          for e in trajectory]


def floor_row(config_path: str, size: int, n: int, num_images: int) -> dict:
  """Held-out test images against the n class-balanced training images."""
  from sparsediff_jax import data
  from sparsediff_jax.data import fashion_mnist
  from sparsediff_jax.metrics import memorization
  config = load_config(config_path)
  config.data.image_size, config.data.num_train_examples = size, n
  config.data.class_balanced = True
  train = data.load_train_images(config)
  held = fashion_mnist.load_split(config.data, 'test', size)[0][:num_images]
  d1, d2, _ = memorization.nearest_two(held, train)
  return dict(kind='floor', label='held-out test images', image_size=size, num_train=n,
              num_scored=len(held), load1=f'{os.getloadavg()[0]:.2f}',
              **{k.replace('pixel_', ''): v
                 for k, v in memorization.memorization_stats(d1, d2).items()})


def copies_row(config_path: str, size: int, n: int, num_samples: int = 128) -> dict:
  """fashion_mnist_fd / _confidence of the n training images repeated to num_samples."""
  import numpy as np
  from sparsediff_jax import data
  from sparsediff_jax.data import fashion_metrics
  config = load_config(config_path)
  config.data.image_size, config.data.num_train_examples = size, n
  config.data.class_balanced = True
  train = data.load_train_images(config)
  copies = np.resize(train, (num_samples, *train.shape[1:]))
  m = fashion_metrics.sample_metrics(config, copies, train)
  return dict(kind='copies', label='training images repeated', image_size=size,
              num_train=n, num_scored=num_samples, fd=m['fashion_mnist_fd'],
              confidence=m['fashion_mnist_confidence'], load1=f'{os.getloadavg()[0]:.2f}')


def load_config(path: str):
  import importlib.util
  spec = importlib.util.spec_from_file_location('regime_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_model(args, size: int, n: int) -> list[dict]:
  """Trains and scores one dense run; returns its CSV rows."""
  workdir = os.path.join(args.root, f'{args.label}_s{size}_n{n}_seed{args.seed}')
  os.makedirs(workdir, exist_ok=True)
  flags = cli_flags(size, n, args.steps, args.every, args.stop, args.seed, args.set)
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get('PYTHONPATH', ''))
  env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(args.root, 'jax_cache'))
  start = time.time()
  with open(os.path.join(workdir, 'log.txt'), 'a') as f:
    subprocess.run([args.python, '-m', 'sparsediff_jax.main', f'--config={args.config}',
                    f'--workdir={workdir}', '--mode=train', *flags], cwd=REPO, env=env,
                   stdout=f, stderr=subprocess.STDOUT, check=True)
  seconds = time.time() - start
  with open(os.path.join(workdir, 'research', 'window_trajectory.json')) as f:
    trajectory = sorted(json.load(f), key=lambda e: e['step'])
  last = trajectory[-1]['step']
  return trajectory_rows(
      trajectory, 'fashion_mnist', label=args.label, image_size=size, num_train=n,
      seed=args.seed, num_scored=128, run_seconds=f'{seconds:.1f}',
      steps_per_second=f'{last / seconds:.2f}', load1=f'{os.getloadavg()[0]:.2f}',
      flags=' '.join(args.set))


def table(rows: list[dict]) -> str:
  """Markdown: memorized fraction (FD in parentheses) per series (rows) and step (columns)."""
  rows = [r for r in rows if r['kind'] == 'model']
  keys = sorted({(r['label'], int(r['image_size']), int(r['num_train'])) for r in rows})
  steps = sorted({int(r['step']) for r in rows})
  out = ['| series | image | n | ' + ' | '.join(str(s) for s in steps) + ' |',
         '| --- | --- | --- |' + ' --- |' * len(steps)]
  for label, size, n in keys:
    by_step = {int(r['step']): r for r in rows
               if (r['label'], int(r['image_size']), int(r['num_train'])) == (label, size, n)}
    cells = [f"{float(by_step[s]['memorized_fraction']):.2f} ({float(by_step[s]['fd']):.1f})"
             if s in by_step and by_step[s]['fd'] != '' else
             f"{float(by_step[s]['memorized_fraction']):.2f}" if s in by_step else ''
             for s in steps]
    out.append(f'| {label} | {size}x{size} | {n} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def plot(rows: list[dict], out: str) -> None:
  from sparsediff_jax.console.images import pyplot, save_figure
  plt = pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  models = [r for r in rows if r['kind'] == 'model']
  for label, size, n in sorted({(r['label'], int(r['image_size']), int(r['num_train']))
                                for r in models}):
    pts = sorted((int(r['step']), float(r['memorized_fraction']), r['fd']) for r in models
                 if (r['label'], int(r['image_size']), int(r['num_train'])) == (label, size, n))
    ls = '-' if size == 16 else '--'
    axes[0].plot([p[0] for p in pts], [p[1] for p in pts], ls, marker='o', ms=3,
                 label=f'{label} {size}x{size}, n={n}')
    axes[1].plot([p[0] for p in pts if p[2] != ''], [float(p[2]) for p in pts if p[2] != ''],
                 ls, marker='o', ms=3, label=f'{label} {size}x{size}, n={n}')
  floors = [float(r['memorized_fraction']) for r in rows if r['kind'] == 'floor'
            and r['memorized_fraction'] != '']
  if floors:
    axes[0].axhline(max(floors), color='grey', ls=':', lw=1,
                    label=f'floor (held-out test images), max {max(floors):.3f}')
  axes[0].set(xlabel='training steps (batch 16)', ylabel='memorized fraction (d1/d2 < 1/3)',
              ylim=(-0.02, 1.02), title='Fashion-MNIST, dense: memorization')
  axes[1].set(xlabel='training steps (batch 16)', ylabel='fashion_mnist_fd (128 samples)',
              yscale='log', title='quality')
  for ax in axes:
    ax.legend(fontsize=7)
  fig.tight_layout()
  save_figure(fig, out)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--root', required=True, help='folder for the runs and the CSV')
  p.add_argument('--config', default=os.path.join(REPO, 'configs', 'fashion_mnist.py'))
  p.add_argument('--sizes', default='16,32,64', help='training-set sizes n, in run order')
  p.add_argument('--image_size', type=int, default=16)
  p.add_argument('--steps', type=int, default=3000, help='cap of every run')
  p.add_argument('--every', type=int, default=250, help='steps between scorings')
  p.add_argument('--stop', type=float, default=0.9,
                 help='memorized fraction that ends a run early (0: never)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--floor_images', type=int, default=1000)
  p.add_argument('--set', action='append', default=[],
                 help='config override without --config., e.g. model.dropout=0.1')
  p.add_argument('--label', default='dense', help='name of this series')
  p.add_argument('--reference_only', action='store_true',
                 help='only the floor and copies rows, no training')
  p.add_argument('--plot', action='store_true',
                 help='only draw ROOT/fashion_regime.png and print the markdown table')
  p.add_argument('--python', default=sys.executable)
  args = p.parse_args()
  args.root = os.path.abspath(args.root)
  os.makedirs(args.root, exist_ok=True)
  csv_path = os.path.join(args.root, 'fashion_regime.csv')
  if args.plot:
    plot(read_rows(csv_path), os.path.join(args.root, 'fashion_regime.png'))
    print(table(read_rows(csv_path)))
    return
  sizes = [int(s) for s in args.sizes.split(',')]
  for n in sizes:
    rows = read_rows(csv_path)
    for kind, make in (('floor', lambda: floor_row(args.config, args.image_size, n,
                                                   args.floor_images)),
                       ('copies', lambda: copies_row(args.config, args.image_size, n))):
      if not any(r['kind'] == kind and (r['image_size'], r['num_train']) == (
          str(args.image_size), str(n)) for r in rows):
        row = make()
        append_rows(csv_path, [row])
        print(json.dumps(row), flush=True)
    if args.reference_only:
      continue
    if any(r['kind'] == 'model' and (r['label'], r['image_size'], r['num_train'], r['seed'])
           == (args.label, str(args.image_size), str(n), str(args.seed)) for r in rows):
      continue
    new = run_model(args, args.image_size, n)
    append_rows(csv_path, new)
    print(table(new), flush=True)


if __name__ == '__main__':
  main()
