"""What the sparse mask adds to the compiled train step, from XLA's cost analysis.

    python benchmarks/mask_cost.py [--ratio=0.98] [--configs=shapes:16,cifar10:128,celeba:128]

For each config and global batch, the real step (train_step.compile_train_step) is compiled
at mask ratio 0, which draws no mask (the dense loss), and at --ratio, and XLA's estimates of
FLOPs and bytes accessed are compared. Nothing runs, so the numbers do not depend on the
load of the machine, and a CPU gives them for every config; on an accelerator the
compiler's estimates differ a little (other fusions) but the mask's share is of the same
kind. The timing of the same comparison is benchmarks/train_step.py's last column.
"""

import argparse

import jax

from model_cost import compiled_step, load   # benchmarks/ is the script's folder


def step_cost(config, batch: int, ratio: float) -> tuple[float, float]:
  """(FLOPs, bytes accessed) of one compiled train step."""
  config = config.copy_and_resolve_references()
  config.mask.ratio = ratio
  cost = compiled_step(config, batch)[0].cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost['flops']), float(cost.get('bytes accessed', float('nan')))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--ratio', type=float, default=0.98)
  parser.add_argument('--configs', default='shapes:16,cifar10:128,celeba:128',
                      help='comma-separated CONFIG:GLOBAL_BATCH')
  args = parser.parse_args()
  print(f'# mask cost from XLA cost analysis: {jax.devices()[0].device_kind}, '
        f'jax {jax.__version__}; ratio {args.ratio:g} against ratio 0 (no mask drawn)\n')
  print('| config | batch | GFLOP/step, ratio 0 | FLOPs x | GB accessed/step, ratio 0 '
        '| bytes x |')
  print('|---|---:|---:|---:|---:|---:|')
  for item in args.configs.split(','):
    name, batch = item.split(':')
    config = load(name)
    (f0, b0), (f1, b1) = (step_cost(config, int(batch), r) for r in (0.0, args.ratio))
    print(f'| {name} | {batch} | {f0 / 1e9:.2f} | {f1 / f0:.5f} | {b0 / 1e9:.3f} '
          f'| {b1 / b0:.5f} |', flush=True)


if __name__ == '__main__':
  main()
