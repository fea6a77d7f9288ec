"""Sample grids of memorization-window runs: one row of kept samples per chosen step.

While a run is scored (research.window_every), the first 16 samples of every scored step
are kept in WORKDIR/research/window_samples/<step>.npz, always from the same noise, so a
column follows one sample through training. This writes OUT/<run>.png per run folder of
ROOT (a launch/sweep.py root): the rows are the scored steps nearest to --steps (each at
most once) and the run's last scored step.

  python benchmarks/window_sample_grids.py --root=/work/runs_fmnist/n16 \
      --out=docs/results/fashion_mnist_window/grids --steps=400,1000,2000
"""

import argparse
import os

import numpy as np

SAMPLES_DIR = os.path.join('research', 'window_samples')


def rows_to_show(available: list[int], wanted: list[int]) -> list[int]:
  """The available step nearest to each wanted one (ties: the earlier), then the last
  available step; ascending, each at most once."""
  if not available:
    return []
  chosen = {min(available, key=lambda s: (abs(s - w), s)) for w in wanted}
  return sorted(chosen | {max(available)})


def run_grid(workdir: str, wanted: list[int]) -> tuple[np.ndarray, list[int]] | None:
  """uint8 [rows * k, S, S, 3] samples of the chosen steps, and the steps; None when the run
  kept no samples."""
  folder = os.path.join(workdir, SAMPLES_DIR)
  if not os.path.isdir(folder):
    return None
  available = sorted(int(f.split('.')[0]) for f in os.listdir(folder) if f.endswith('.npz'))
  steps = rows_to_show(available, wanted)
  if not steps:
    return None
  rows = [np.load(os.path.join(folder, f'{s:07d}.npz'))['samples'] for s in steps]
  return np.concatenate(rows), steps


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--root', required=True, help='a launch/sweep.py root: one folder per run')
  p.add_argument('--out', required=True, help='folder for <run>.png')
  p.add_argument('--steps', default='400,1000,2000', help='steps to show (nearest scored)')
  p.add_argument('--upscale', type=int, default=3)
  args = p.parse_args()
  from sparsediff_jax.console import images
  wanted = [int(s) for s in args.steps.split(',')]
  os.makedirs(args.out, exist_ok=True)
  for name in sorted(os.listdir(args.root)):
    got = run_grid(os.path.join(args.root, name), wanted)
    if got is None:
      continue
    samples, steps = got
    path = os.path.join(args.out, f'{name}.png')
    images.save_png(path, images.make_grid(samples, rows=len(steps)), upscale=args.upscale)
    print(f'{path}: rows = steps {", ".join(map(str, steps))}')


if __name__ == '__main__':
  main()
