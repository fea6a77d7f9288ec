"""Every shipped config on TPU slices, compiled here: docs/results/tpu_plan/README.md.

Each cell (config x slice) is `--mode=plan`'s plan (sparsediff_jax/tpu_plan/plan.py) of the
config's train step and sampler, kept as docs/results/tpu_plan/cells/<config>__<slice>.json
as soon as it is compiled, whether it fits or not. A cell already there is not compiled
again (cells carry over between machines: commit them); the table is rebuilt from the cells
after each one, and alone with --table_only.

  python benchmarks/tpu_plan_table.py [--configs=digits,shapes] [--topologies=v5e-8,v6e-8]
  python benchmarks/tpu_plan_table.py --table_only

Cells run one at a time, each in its own process (compiling CelebA's step holds several GB).
A config whose training.batch_size does not split over the slice's chips is planned at the
next multiple of the chip count (the cell records the batch it used). Needs libtpu
(pip install -e '.[tpu]'). The numbers are bounds from the compiler's own counts, not
measurements.
"""

import argparse
import datetime
import glob
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, 'docs', 'results', 'tpu_plan')
CELLS = os.path.join(OUT, 'cells')
CONFIGS = ('digits', 'fashion_mnist', 'shapes', 'shapes_dit', 'cifar10', 'celeba',
           'celeba_dit')
TOPOLOGIES = ('v5e-8', 'v6e-8', 'v4-8', 'v5p-8', 'v5e-256', 'v6e-256', 'v4-512', 'v5p-512')


def cell_path(config: str, topology: str) -> str:
  return os.path.join(CELLS, f'{config}__{topology}.json')


def load_config(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'configs',
                                                                   f'{name}.py'))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def run_cell(config_name: str, topology_name: str) -> None:
  """Compiles one cell in this process and writes its JSON (fits or not)."""
  from sparsediff_jax.tpu_plan import compile as tpu_compile
  tpu_compile.prepare_environment()   # before JAX starts
  from sparsediff_jax.runtime import atomic_io
  from sparsediff_jax.tpu_plan import plan as tpu_plan
  from sparsediff_jax.tpu_plan import topology
  config = load_config(config_name)
  tpu_slice = topology.parse(topology_name)
  asked = config.training.batch_size
  config.training.batch_size = -(-asked // tpu_slice.chips) * tpu_slice.chips
  start = time.monotonic()
  plan = tpu_plan.make_plan(config, tpu_slice)
  atomic_io.write_json(cell_path(config_name, topology_name), {
      'config': config_name, 'topology': topology_name, 'config_batch_size': asked,
      'refusal': tpu_plan.refusal(plan), 'seconds': round(time.monotonic() - start),
      'compiled_on': f'{platform.machine()}, {os.cpu_count()} CPUs, '
                     f'{datetime.date.today().isoformat()}',
      'plan': plan})


def _row(cell: dict) -> str:
  p = cell['plan']
  t, s = p['train'], p.get('sampling')
  r, m = t['roofline'], t['memory']
  fits = 'yes' if t['fits'] and (s is None or s['fits']) else '**no**'
  sampler = (f'{s["roofline"]["seconds"] / 60:.3g}' if s else '-')
  return ' | '.join([
      cell['config'], cell['topology'], str(p['chips']), str(t['global_batch']), fits,
      f'{m["need"] / 2**30:.2f}', f'{t["flops"] / 1e9:.4g}', f'{t["hbm_bytes"] / 1e9:.4g}',
      f'{t["arithmetic_intensity"]:.3g}', f'{t["ici_bytes"] / 1e6:.3g}',
      f'{r["step_seconds"] * 1e3:.3g}', r['limited_by'], f'{100 * r["mfu_bound"]:.1f}%',
      f'{r["images_per_second"]:.4g}', f'{t["num_steps"]:,}', f'{r["hours"]:.3g}',
      f'{r["chip_hours"]:.4g}', sampler, str(cell['seconds'])])


HEADER = ('config | slice | chips | batch | fits | GiB/chip | GFLOP/step/chip | '
          'GB HBM/step/chip | FLOP/byte | ICI MB/step/chip | step >= ms | bound | MFU <= | '
          'img/s <= | steps | hours >= | chip-hours >= | 50k samples >= min | compile s')


def write_table() -> str:
  cells = [json.load(open(f)) for f in sorted(glob.glob(os.path.join(CELLS, '*.json')))]
  order = {n: i for i, n in enumerate(CONFIGS)}
  cells.sort(key=lambda c: (order.get(c['config'], 99), c['plan']['generation'],
                            c['plan']['chips']))
  lines = [
      '# Every shipped config on TPU slices, compiled on a CPU',
      '',
      'Made by `python benchmarks/tpu_plan_table.py` from the cells in `cells/` (one JSON '
      'per config and slice: the whole plan of `--mode=plan`). Each cell compiles the '
      "config's real train step (and its sampler) for the slice with libtpu on a machine "
      'without a TPU, and reads per chip: the compiled memory against the chip\'s HBM, '
      "XLA's FLOP and byte counts, and the collectives in the HLO. The time columns are a "
      'roofline bound from those counts and the chip figures of the Cloud TPU documentation '
      '(sparsediff_jax/tpu_plan/topology.py): the step cannot take less, nor the MFU and '
      'images/s be higher, than shown. **They are bounds from the compiler\'s own counts, '
      'not measurements.** Per step and per chip; `bound` names the resource the bound '
      'comes from (memory = HBM bandwidth). "50k samples" is the config\'s sampler at its '
      'NFE, in batches of eval.batch_size. "batch" is the global batch planned (the '
      "config's, raised to a multiple of the chips where it does not split).",
      '',
      'Where the compile time goes (the last column; each program compiled alone): '
      '[compile_time.md](compile_time.md).',
      '',
      HEADER,
      ' | '.join(['---'] * len(HEADER.split(' | '))),
      *(_row(c) for c in cells),
  ]
  refused = [c for c in cells if c.get('refusal')]
  if refused:
    lines += ['', 'Does not fit:', '']
    lines += [f'- {c["config"]} on {c["topology"]}: {c["refusal"]}' for c in refused]
  text = '\n'.join(lines) + '\n'
  from sparsediff_jax.runtime import atomic_io
  atomic_io.write_text(os.path.join(OUT, 'README.md'), text)
  return text


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--configs', default=','.join(CONFIGS))
  parser.add_argument('--topologies', default=','.join(TOPOLOGIES))
  parser.add_argument('--table_only', action='store_true')
  parser.add_argument('--cell', help=argparse.SUPPRESS)   # CONFIG__TOPOLOGY, one process
  args = parser.parse_args()
  sys.path.insert(0, REPO)
  if args.cell:
    run_cell(*args.cell.split('__'))
    return
  if not args.table_only:
    for config in args.configs.split(','):
      for topology in args.topologies.split(','):
        if os.path.exists(cell_path(config, topology)):
          continue
        print(f'compiling {config} on {topology}...', flush=True)
        start = time.monotonic()
        done = subprocess.run([sys.executable, os.path.abspath(__file__),
                               f'--cell={config}__{topology}'], cwd=REPO)
        print(f'{config} on {topology}: exit {done.returncode} after '
              f'{time.monotonic() - start:.0f} s', flush=True)
        write_table()
  print(write_table(), end='')


if __name__ == '__main__':
  main()
