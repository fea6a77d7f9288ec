"""Where does the dense baseline memorize real images? Memorized fraction vs data and steps.

Trains the dense model (mask.ratio=0 unless --set says otherwise) on the first N of the
scikit-learn digits (1,797 8x8 scans, values 0..16, scaled by 255/16 in float and cast to
uint8; rows 0..1499 are the training split in sklearn's row order, rows 1500.. are held
out) and scores it with `--mode=research` (pixel-space d1/d2 < 1/3, first EMA) after each
step count of --steps. Training goes to the next step count by resuming the same run
(allowed: training.num_steps may change on resume; with a constant learning rate after
warm-up the resumed run is the longer run). Also measures the floor of the measure: the
held-out real digits scored against the same N training digits.

The digits are exported as PNG folders (ROOT/digits_png/train/00000.png ..., sorted paths
keep the row order; ROOT/digits_png_heldout/) and trained with the `folder` dataset
(--config.data.name=folder, crop=none: the 8x8 scan is resized as a whole). The
in-package equivalent is configs/digits.py / data.name='digits', which loads the same
rows without the PNG round trip (it rounds x * 255 / 16 where this export truncates, so
pixel values may differ by 1).

  python benchmarks/digits_regime.py --root=runs/digits_regime     # sizes 32,64,16,128
  python benchmarks/digits_regime.py --root=runs/digits_regime --sizes=32 --steps=1500 \
      --single_run --label=ratio0.9_single --set mask.ratio=0.9
  python benchmarks/digits_regime.py --root=runs/digits_regime --plot

The model, EMA and research flags are DEFAULT_SET below (the regime measured in
docs/results/digits_regime.md); --set adds overrides after them. Runs share an XLA
compilation cache in ROOT/jax_cache, as launch/sweep.py's do.

Every measurement is one row of ROOT/digits_regime.csv (kind 'model' or 'floor'; timings
in seconds, the 1-minute load average when the row was written). Rows already there are
skipped, so an interrupted call continues. --plot draws ROOT/digits_regime.png (memorized
fraction vs steps, one line per training-set size) from the CSV.
--single_run times one run as a sweep would do it: train straight to the last step count
of --steps in one process, then one research call.
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN_SPLIT = 1500
# The measured regime (docs/results/digits_regime.md); --set flags given on the command
# line come after these and so override them.
DEFAULT_SET = (
    'mask.ratio=0', 'model.channels=32', 'model.channel_mult=(1,2)',
    'model.attn_resolutions=()', 'optim.ema_decays=(0.995,)', 'training.sample_every=0',
    'sampling.grid_size=4', 'research.num_samples=256', 'research.batch_size=256',
    'research.locality_images=1', 'research.locality_times=2')
FIELDS = ('kind', 'label', 'image_size', 'num_train', 'mask_ratio', 'step', 'seed',
          'memorized_fraction', 'nn_distance_mean', 'nn_ratio_mean', 'num_scored',
          'train_seconds', 'research_seconds', 'cumulative_train_seconds', 'load1', 'flags')


def export_digits(root: str) -> tuple[str, str]:
  """Writes the digits as 8x8 grayscale PNGs; returns (train folder, held-out folder)."""
  import PIL.Image
  from sklearn.datasets import load_digits
  train_dir = os.path.join(root, 'digits_png')
  held_dir = os.path.join(root, 'digits_png_heldout')
  if os.path.isdir(train_dir) and os.path.isdir(held_dir):
    return train_dir, held_dir
  images = (load_digits().images.astype(np.float64) * (255.0 / 16.0)).astype(np.uint8)
  for folder, lo, hi in ((train_dir, 0, NUM_TRAIN_SPLIT),
                         (held_dir, NUM_TRAIN_SPLIT, len(images))):
    tmp = folder + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, 'train'))
    for i in range(lo, hi):
      PIL.Image.fromarray(images[i], 'L').save(os.path.join(tmp, 'train', f'{i:05d}.png'))
    os.replace(tmp, folder)
  return train_dir, held_dir


def data_flags(folder: str, size: int, n: int) -> list[str]:
  return ['--config.data.name=folder', f'--config.data.folder={folder}',
          f'--config.data.num_train_examples={n}', f'--config.data.image_size={size}',
          '--config.data.crop=none']


def read_rows(path: str) -> list[dict]:
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return list(csv.DictReader(f))


def append_row(path: str, row: dict) -> None:
  new = not os.path.isfile(path)
  with open(path, 'a', newline='') as f:
    writer = csv.DictWriter(f, FIELDS)
    if new:
      writer.writeheader()
    writer.writerow({k: row.get(k, '') for k in FIELDS})


def floor_row(repo: str, train_dir: str, held_dir: str, size: int, n: int) -> dict:
  """Held-out real digits against the first n training digits: the measure's floor."""
  sys.path.insert(0, repo)
  from sparsediff_jax import config_base, data
  from sparsediff_jax.metrics import memorization
  config = config_base.get_config()
  for folder, count, attr in ((train_dir, n, 'train'), (held_dir, 0, 'held')):
    config.data.name, config.data.folder = 'folder', folder
    config.data.num_train_examples, config.data.image_size = count, size
    config.data.crop = 'none'
    if attr == 'train':
      train = data.load_train_images(config)
    else:
      held = data.load_train_images(config)
  d1, d2, _ = memorization.nearest_two(held, train)
  stats = memorization.memorization_stats(d1, d2)
  return dict(kind='floor', label='held-out real digits', image_size=size, num_train=n,
              num_scored=len(held), load1=f'{os.getloadavg()[0]:.2f}', **stats)


def run_cli(python: str, repo: str, root: str, args: list[str], log: str) -> float:
  """Runs `python -m sparsediff_jax.main ARGS` in repo; returns its wall seconds."""
  env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get('PYTHONPATH', ''))
  # As launch/sweep.py does: runs of one setting compile once.
  env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(root, 'jax_cache'))
  start = time.time()
  with open(log, 'a') as f:
    subprocess.run([python, '-m', 'sparsediff_jax.main', *args], cwd=repo, env=env,
                   stdout=f, stderr=subprocess.STDOUT, check=True)
  return time.time() - start


def model_rows(args, train_dir: str, size: int, n: int, done: set):
  """Trains to each step count of args.steps (resuming) and scores after each."""
  label = args.label or ('single' if args.single_run else 'dense')
  steps = [int(s) for s in args.steps.split(',')]
  if args.single_run:
    steps = steps[-1:]
  # A single run gets its own folder per length: a longer run's checkpoint would be scored.
  suffix = f'_steps{steps[0]}' if args.single_run else ''
  workdir = os.path.join(args.root, f'{label}_s{size}_n{n}_seed{args.seed}{suffix}')
  os.makedirs(workdir, exist_ok=True)
  base = ['--workdir=' + workdir, *data_flags(train_dir, size, n),
          f'--config.training.seed={args.seed}', *[f'--config.{s}' for s in args.set]]
  cumulative = 0.0
  for step in steps:
    key = (label, str(size), str(n), str(step), str(args.seed))
    train_args = [*base, f'--config.training.num_steps={step}',
                  f'--config.training.checkpoint_every={step}']
    if key in done:
      continue
    log = os.path.join(workdir, 'log.txt')
    t_train = run_cli(args.python, args.repo, args.root, [*train_args, '--mode=train'], log)
    cumulative += t_train
    t_research = run_cli(args.python, args.repo, args.root, [*train_args, '--mode=research'], log)
    with open(os.path.join(workdir, 'research_metrics.json')) as f:
      m = json.load(f)
    shutil.copy(os.path.join(workdir, 'research_metrics.json'),
                os.path.join(workdir, f'research_metrics_{step}.json'))
    # The CLI applies overrides in order, so the last one of a field is the one used.
    ratio = [s.split('=', 1)[1] for s in args.set if s.startswith('mask.ratio=')]
    ratio = ratio[-1] if ratio else '0.9 (default)'
    row = dict(kind='model', label=label, image_size=size, num_train=n, mask_ratio=ratio,
               step=m['step'], seed=args.seed,
               memorized_fraction=m['pixel_memorized_fraction'],
               nn_distance_mean=m['pixel_nn_distance_mean'],
               nn_ratio_mean=m['pixel_nn_ratio_mean'], num_scored=m['num_samples'],
               train_seconds=f'{t_train:.1f}', research_seconds=f'{t_research:.1f}',
               cumulative_train_seconds=f'{cumulative:.1f}',
               load1=f'{os.getloadavg()[0]:.2f}', flags=' '.join(args.set))
    append_row(args.csv, row)
    print(json.dumps(row), flush=True)


def plot(csv_path: str, out: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  rows = [r for r in read_rows(csv_path) if r['kind'] == 'model']
  fig, ax = plt.subplots(figsize=(6, 4))
  series = sorted({(r['label'], int(r['image_size']), int(r['num_train'])) for r in rows},
                  key=lambda s: (s[0], s[1], s[2]))
  for label, size, n in series:
    pts = sorted((int(r['step']), float(r['memorized_fraction'])) for r in rows
                 if (r['label'], int(r['image_size']), int(r['num_train'])) == (label, size, n))
    # Curves (one resumed run) as solid lines; straight single runs as dashed crosses.
    style = dict(marker='o') if label == 'dense' else dict(marker='x', ls='--', ms=9)
    ax.plot(*zip(*pts), **style, label=f'{label}, {size}x{size}, N={n}')
  floors = [r for r in read_rows(csv_path) if r['kind'] == 'floor']
  if floors:
    top = max(float(r['memorized_fraction']) for r in floors)
    ax.axhline(top, color='grey', ls='--', lw=1, label=f'floor (held-out real), max {top:.3f}')
  ax.set_xlabel('training steps (batch 16)')
  ax.set_ylabel('memorized fraction (d1/d2 < 1/3)')
  ax.set_ylim(-0.02, 1.02)
  ax.set_title('sklearn digits: dense flow matching memorization')
  ax.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(out, dpi=120)


def table(csv_path: str) -> str:
  """Markdown: memorized fraction (mean d1) per training-set size (rows) and step (columns)."""
  rows = [r for r in read_rows(csv_path) if r['kind'] == 'model']
  keys = sorted({(r['label'], int(r['image_size']), int(r['num_train'])) for r in rows})
  steps = sorted({int(r['step']) for r in rows})
  out = ['| series | image | N | ' + ' | '.join(f'step {s}' for s in steps) + ' |',
         '| --- | --- | --- |' + ' --- |' * len(steps)]
  for label, size, n in keys:
    cells = []
    for s in steps:
      hit = [r for r in rows if (r['label'], int(r['image_size']), int(r['num_train']),
                                 int(r['step'])) == (label, size, n, s)]
      cells.append(f"{float(hit[0]['memorized_fraction']):.3f} "
                   f"({float(hit[0]['nn_distance_mean']):.2f})" if hit else '')
    out.append(f'| {label} | {size}x{size} | {n} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(out)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--root', required=True, help='folder for the PNGs, runs and the CSV')
  p.add_argument('--sizes', default='32,64,16,128', help='training-set sizes N')
  p.add_argument('--steps', default='500,1500,3000', help='step counts scored')
  p.add_argument('--image_size', type=int, default=8)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--set', action='append', default=[],
                 help='config override without --config., e.g. mask.ratio=0.9')
  p.add_argument('--label', default='', help='name of this series (default dense)')
  p.add_argument('--single_run', action='store_true',
                 help='train straight to the last step count, then score once')
  p.add_argument('--floor_only', action='store_true')
  p.add_argument('--plot', action='store_true',
                 help='only draw ROOT/digits_regime.png and print the markdown table')
  p.add_argument('--python', default=sys.executable)
  p.add_argument('--png_root', default='',
                 help='folder for digits_png/ and digits_png_heldout/ (default --root)')
  p.add_argument('--repo', default=REPO, help='checkout whose sparsediff_jax is run')
  args = p.parse_args()
  args.set = [*DEFAULT_SET, *args.set]
  args.root = os.path.abspath(args.root)
  os.makedirs(args.root, exist_ok=True)
  args.csv = os.path.join(args.root, 'digits_regime.csv')
  if args.plot:
    plot(args.csv, os.path.join(args.root, 'digits_regime.png'))
    print(table(args.csv))
    return
  train_dir, held_dir = export_digits(os.path.abspath(args.png_root or args.root))
  rows = read_rows(args.csv)
  sizes = [int(s) for s in args.sizes.split(',')]
  floors = {(r['image_size'], r['num_train']) for r in rows if r['kind'] == 'floor'}
  for n in sizes:
    if (str(args.image_size), str(n)) not in floors:
      row = floor_row(args.repo, train_dir, held_dir, args.image_size, n)
      append_row(args.csv, row)
      print(json.dumps(row), flush=True)
  if args.floor_only:
    return
  done = {(r['label'], r['image_size'], r['num_train'], r['step'], r['seed'])
          for r in rows if r['kind'] == 'model'}
  for n in sizes:
    model_rows(args, train_dir, args.image_size, n, done)


if __name__ == '__main__':
  main()
