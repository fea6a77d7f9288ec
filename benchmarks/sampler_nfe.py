"""Sample quality per network evaluation (NFE) of every sampler x time grid on trained models.

    nice -n 10 python benchmarks/sampler_nfe.py [--cache=DIR] [--samples=128] [--only=MODELS]
        [--combos=SAMPLER/GRID,...] [--nfe=4,6,...]

Trains (once; reused from --cache, default $SPARSEDIFF_CACHE/sampler_nfe or
~/.cache/sparsediff_jax/sampler_nfe) three small flow-matching models with the CLI:
digits 8x8 dense (mask.ratio 0) and mask.ratio 0.9 with the recipe of
launch/experiments/digits_memorization.sh (32 training digits, U-Net 32 channels (1, 2),
batch 16, EMA 0.995; --digits_steps of them, 1500 as the experiment), and a 16x16 shapes
model with mask 0.9 (--shapes_steps; 600 train in about 5 minutes on 2 shared cores). For
each model, every deterministic sampler that runs with its formulation x every grid of
GRIDS (`combos`), it draws --samples images of the same noise at every NFE of --nfe, and
once the reference: the same noise through REFERENCE at --reference_nfe. The samplers
left out (stochastic ones, or ones for another formulation) are listed with the reason.
It records:
- the dataset metric (digits: classifier FD `digits_fd`; shapes: the consistency
  metrics) next to the reference's;
- the memorized fraction (`pixel_memorized_fraction`, d1/d2 < 1/3 against the model's
  training images) next to the reference's: a cheap sampler may reach the reference's
  quality and still copy more (or fewer) training images;
- the RMS distance (images in [-1, 1]) of each sample to its own reference sample.
A setting is "within" the reference when its headline metric is within 5% of the
reference's AND its memorized fraction within 0.05 absolute (CHECKS).
Heun spends 2 NFE per step (2 n - 1 for n steps): its NFE is the largest odd count not
above the target. Writes OUT/sampler_nfe.{json,csv,md} and one curve png per model
(--out, default docs/results/sampler_nfe); --only measures some models and --combos some
sampler/grid pairs of them (the rows already in OUT that are not measured again stay).
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

NFES = NFES_DEFAULT = (4, 6, 8, 10, 12, 16, 24, 35, 64, 128)
GRIDS = ('edm', 'logsnr', 'uniform')   # flow matching's 'default' grid is 'uniform'
REFERENCE = ('dpmpp_3m', 'logsnr')   # the reference samples: this solver at --reference_nfe
DIGITS = ['--config=configs/digits.py', '--config.data.image_size=8',
          '--config.data.num_train_examples=32', '--config.model.channels=32',
          '--config.model.channel_mult=(1,2)', '--config.model.attn_resolutions=()',
          '--config.training.batch_size=16', '--config.optim.ema_decays=(0.995,)',
          '--config.training.log_every=50', '--config.training.sample_every=0']
SHAPES = ['--config=configs/shapes.py', '--config.data.image_size=16',
          '--config.model.channel_mult=(1,2)', '--config.model.attn_resolutions=()',
          '--config.training.log_every=50', '--config.training.sample_every=0']


def models(digits_steps: int, shapes_steps: int) -> dict[str, list[str]]:
  """Name -> the CLI flags that train it (and rebuild its config)."""
  # Five checkpoints per digits run, as the experiment keeps them: a research trajectory
  # to time (benchmarks/trajectory_scoring.py).
  d = DIGITS + [f'--config.training.num_steps={digits_steps}',
                f'--config.training.checkpoint_every={digits_steps // 5}',
                '--config.training.keep_checkpoints=7']
  return {
      'digits_dense': d + ['--config.mask.ratio=0.0'],
      'digits_mask0.9': d + ['--config.mask.ratio=0.9'],
      'shapes_mask0.9': SHAPES + [f'--config.training.num_steps={shapes_steps}',
                                  f'--config.training.checkpoint_every={shapes_steps}'],
  }


def combos(formulation_name: str) -> list[tuple[str, str]]:
  """Every deterministic sampler that runs with the formulation x every grid of GRIDS."""
  from sparsediff_jax import registry, samplers
  return [(name, grid) for name in registry.SAMPLERS.names() for grid in GRIDS
          if not registry.SAMPLERS.get(name).stochastic
          and samplers.sampler_mismatch(formulation_name, name) is None]


def not_measured(formulation_name: str) -> list[tuple[str, str]]:
  """(sampler, why) for every registered sampler left out of `combos`."""
  from sparsediff_jax import registry, samplers
  rows = []
  for name in registry.SAMPLERS.names():
    why = samplers.sampler_mismatch(formulation_name, name)
    if why:
      rows.append((name, why.split(';')[0]))
    elif registry.SAMPLERS.get(name).stochastic:
      rows.append((name, 'stochastic: its samples do not follow the reference\'s noise, '
                   'so only the metric would be measured (RMS is meaningless)'))
  return rows


def num_steps_for(sampler: str, nfe: int) -> int:
  """Steps whose NFE (flow matching: no final denoising call) is at most `nfe`."""
  from sparsediff_jax import registry
  return (nfe + 1) // 2 if registry.SAMPLERS.get(sampler).evals_per_step == 2 else nfe


def train(workdir: str, flags: list[str]) -> None:
  if os.path.exists(os.path.join(workdir, 'DONE')):
    return
  start = time.time()
  subprocess.run([sys.executable, '-m', 'sparsediff_jax.main', f'--workdir={workdir}', *flags],
                 cwd=REPO, check=True, env={**os.environ, 'PYTHONPATH': REPO})
  with open(os.path.join(workdir, 'DONE'), 'w') as f:
    f.write(f'{time.time() - start:.0f} s\n')


def config_from_flags(flags: list[str]):
  """The config the CLI builds from `flags` (configs/*.py plus --config.* overrides)."""
  import ast
  import importlib.util
  path = flags[0].split('=', 1)[1]
  spec = importlib.util.spec_from_file_location('cfg', os.path.join(REPO, path))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  for flag in flags[1:]:
    field, value = flag[len('--config.'):].split('=', 1)
    section, name = field.split('.')
    old = config[section][name]
    config[section][name] = value if isinstance(old, str) else ast.literal_eval(value)
  return config


def measure(name: str, workdir: str, flags: list[str], samples: int, reference_nfe: int,
            only: list[tuple[str, str]] | None = None):
  import jax
  import jax.numpy as jnp
  import numpy as np
  from flax import nnx
  from sparsediff_jax import data, formulations, registry, samplers
  from sparsediff_jax.metrics import memorization
  from sparsediff_jax import train_state as state
  from sparsediff_jax.images import CHANNELS
  config = config_from_flags(flags)
  run = state.restore_run(config, workdir)
  model = nnx.merge(run.graphdef, run.params(config))
  net = jax.jit(lambda x, c: model(x, c))   # compiled once; the steps run in Python
  dataset_metric = registry.DATASETS.get(config.data.name).metrics
  train_images = data.load_train_images(config)

  def metric(config, images, train_images):
    """The dataset's metrics and the memorized fraction of `images`."""
    mem, _ = memorization.memorization_report(images, train_images)
    return {**dataset_metric(config, images, train_images),
            MEMORIZED: mem[MEMORIZED]}
  formulation = formulations.get_formulation(config.diffusion)
  size = config.data.image_size
  keys = jax.random.split(jax.random.PRNGKey(config.sampling.seed))
  noise = samplers.per_sample_noise(keys[0], np.arange(samples), (size, size, CHANNELS))

  def images(sampler, grid, nfe):
    start = time.perf_counter()
    x = samplers.sample(formulation, net, noise, sampler=sampler, time_steps=grid,
                        num_steps=num_steps_for(sampler, nfe), python_loop=True)
    # The quantisation of generate._sample_images.
    out = np.asarray(jnp.clip(jnp.round((x + 1.0) * 127.5), 0, 255).astype(jnp.uint8))
    return out, time.perf_counter() - start

  ref, _ = images(*REFERENCE, reference_nfe)
  ref_metrics = metric(config, ref, train_images)
  rows = []
  for sampler, grid in only or combos(formulation.name):
    for nfe in NFES:
      out, seconds = images(sampler, grid, nfe)
      m = metric(config, out, train_images)
      diff = (out.astype(np.float32) - ref.astype(np.float32)) / 127.5
      rms = np.sqrt(np.mean(diff ** 2, axis=(1, 2, 3)))
      row = dict(model=name, sampler=sampler, grid=grid, nfe=samplers.num_evaluations(
          formulation, sampler, num_steps_for(sampler, nfe)),
          formulation=formulation.name,
          num_steps=num_steps_for(sampler, nfe), rms_to_reference=float(rms.mean()),
          seconds=seconds, **{k: v for k, v in m.items()},
          **{f'reference_{k}': v for k, v in ref_metrics.items()})
      rows.append(row)
      print(json.dumps(row), flush=True)
  return rows


HEADLINE = {'digits': 'digits_fd', 'shapes': 'symmetry_error'}
MEMORIZED = 'pixel_memorized_fraction'
# Printed between the headline and the RMS; the memorized fraction is also checked.
EXTRA = {'digits': (MEMORIZED,), 'shapes': ('consistent_fraction', MEMORIZED)}


def within(row: dict, key: str) -> bool:
  """`key` of the row is within 5% of the reference's (fractions: 0.05 absolute); a row
  measured before the key was recorded is not checked on it."""
  if key not in row or 'reference_' + key not in row:
    return True
  ref = row['reference_' + key]
  if key.endswith('_fraction'):
    return abs(row[key] - ref) <= 0.05
  return abs(row[key] - ref) <= 0.05 * abs(ref)


def checks(key: str) -> tuple[str, ...]:
  """What "within the reference" checks: the headline metric and the memorized fraction."""
  return (key, MEMORIZED)


def cheapest_within(rows: list[dict], key: str) -> int | None:
  """The smallest NFE from which `key` stays within 5% of the reference, and the memorized
  fraction within 0.05 absolute, at every larger NFE measured (rows of one sampler and
  grid, NFE ascending); None if none."""
  ok = [r['nfe'] for k, r in enumerate(rows)
        if all(within(q, c) for q in rows[k:] for c in checks(key))]
  return min(ok) if ok else None


def write(rows: list[dict], out: str) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  os.makedirs(out, exist_ok=True)
  with open(os.path.join(out, 'sampler_nfe.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  keys = sorted({k for r in rows for k in r})
  with open(os.path.join(out, 'sampler_nfe.csv'), 'w', newline='') as f:
    w = csv.DictWriter(f, keys)
    w.writeheader()
    w.writerows(rows)
  lines, goal = [], []
  for model in dict.fromkeys(r['model'] for r in rows):
    kind = 'digits' if model.startswith('digits') else 'shapes'
    key, extra = HEADLINE[kind], EXTRA[kind]
    mine = [r for r in rows if r['model'] == model]
    extra = tuple(k for k in extra if k in mine[0])   # rows measured before it: left out
    ref = ', '.join(f'{k} {mine[0]["reference_" + k]:.3g}' for k in (key, *extra))
    lines += [f'### {model} (reference: {ref}): ' + ' / '.join((key, *extra))
              + ' / RMS to the reference sample', '',
              '| sampler | grid | ' + ' | '.join(str(n) for n in NFES) + ' | cheapest within 5% |',
              '|---|---|' + '---|' * (len(NFES) + 1)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    best = None
    for k, (sampler, grid) in enumerate(dict.fromkeys((r['sampler'], r['grid']) for r in mine)):
      rs = [r for r in mine if r['sampler'] == sampler and r['grid'] == grid]
      cheapest = cheapest_within(rs, key)
      if cheapest is not None and (best is None or cheapest < best[0]):
        best = (cheapest, sampler, grid)
      cells = [' / '.join(f'{r[k]:.3g}' for k in (key, *extra))
               + f' / {r["rms_to_reference"]:.3f}' for r in rs]
      shown = cheapest if cheapest is not None else f'> {rs[-1]["nfe"]}'
      lines.append(f'| {sampler} | {grid} | ' + ' | '.join(cells) + f' | {shown} |')
      style = '-' if sampler.startswith('dpmpp') else '--'
      for ax, key_ in zip(axes, (key, 'rms_to_reference')):
        ax.plot([r['nfe'] for r in rs], [r[key_] for r in rs], style, marker='o', ms=3,
                color=plt.cm.tab20(k % 20), label=f'{sampler}, {grid}')
    measured = {(r['sampler'], r['grid']) for r in mine}
    for sampler, grid in combos(mine[0]['formulation']):
      if (sampler, grid) not in measured:
        lines.append(f'| {sampler} | {grid} | not measured in this run (--combos) |'
                     + ' |' * len(NFES))
    for sampler, why in not_measured(mine[0]['formulation']):
      lines.append(f'| {sampler} | - | not measured: {why} |' + ' |' * len(NFES))
    goal.append(f'- {model}: ' + (f'{best[1]} on the {best[2]} grid from {best[0]} NFE; goal '
                                  f'(<= 10 NFE) {"met" if best[0] <= 10 else "NOT met"}'
                                  if best else 'no setting within 5%'))
    axes[0].axhline(mine[0]['reference_' + key], color='k', ls=':', lw=1)
    for ax, ylabel in zip(axes, (key, 'RMS to the reference sample')):
      ax.set_xscale('log')
      ax.set_xlabel('NFE')
      ax.set_ylabel(ylabel)
    axes[1].set_yscale('log')
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(f'{model}: quality per NFE (dotted: the reference, {REFERENCE[0]} '
                 f'{REFERENCE[1]} at high NFE)')
    fig.tight_layout()
    fig.savefig(os.path.join(out, f'{model}.png'), dpi=90)
    plt.close(fig)
    lines.append('')
  worst = {}   # (sampler, grid) -> NFE from which it is within 5% on every model
  model_names = list(dict.fromkeys(r['model'] for r in rows))
  for c in dict.fromkeys((r['sampler'], r['grid']) for r in rows):
    per = [cheapest_within([r for r in rows if r['model'] == m
                            and (r['sampler'], r['grid']) == c], HEADLINE[
                                'digits' if m.startswith('digits') else 'shapes'])
           for m in model_names]
    if all(n is not None for n in per):
      worst[c] = max(per)
  if worst:
    c = min(worst, key=worst.get)
    goal.append(f'- every model: {c[0]} on the {c[1]} grid from {worst[c]} NFE')
  with open(os.path.join(out, 'sampler_nfe.md'), 'w') as f:
    f.write('Each cell: metric(s) / RMS distance to the same sample at the reference NFE.\n'
            f'"Cheapest within 5%": the smallest NFE whose headline metric is within 5% of the '
            f'reference ({REFERENCE[0]}, {REFERENCE[1]} grid, same noise) and whose memorized '
            f'fraction ({MEMORIZED}) is within 0.05 absolute of the reference\'s, and stays so '
            'at every larger NFE measured (fractions: within 0.05 absolute; rows measured '
            'before the memorized fraction was recorded are checked on the headline alone). '
            'Columns: the target '
            'NFE (Heun: the largest odd count not above it).\n\n'
            'Cheapest setting per model:\n' + '\n'.join(goal) + '\n\n' + '\n'.join(lines))


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  cache = os.path.join(os.environ.get('SPARSEDIFF_CACHE', os.path.expanduser(
      '~/.cache/sparsediff_jax')), 'sampler_nfe')
  p.add_argument('--cache', default=cache, help='where the trained runs are kept')
  p.add_argument('--out', default=os.path.join(REPO, 'docs/results/sampler_nfe'))
  p.add_argument('--samples', type=int, default=128)
  p.add_argument('--reference_nfe', type=int, default=256)
  p.add_argument('--digits_steps', type=int, default=1500)
  p.add_argument('--shapes_steps', type=int, default=600)
  p.add_argument('--only', default='', help='comma-separated model names (default: all)')
  p.add_argument('--combos', default='', help='comma-separated sampler/grid pairs to measure '
                 'instead of all (e.g. dpmpp_3m/uniform,heun/uniform)')
  p.add_argument('--nfe', default=','.join(map(str, NFES_DEFAULT)), help='comma-separated NFEs')
  args = p.parse_args()
  global NFES
  NFES = tuple(int(n) for n in args.nfe.split(','))
  names = [n for n in models(args.digits_steps, args.shapes_steps)
           if not args.only or n in args.only.split(',')]
  only = [tuple(c.split('/')) for c in args.combos.split(',')] if args.combos else None
  # The rows this run does not measure again stay (models and pairs in runs of their own).
  again = lambda r: r['model'] in names and (not only or (r['sampler'], r['grid']) in only)
  kept = os.path.join(args.out, 'sampler_nfe.json')
  rows = [r for r in json.load(open(kept)) if not again(r)] if os.path.exists(kept) else []
  for name, flags in models(args.digits_steps, args.shapes_steps).items():
    if name not in names:
      continue
    workdir = os.path.join(args.cache, f'{name}_{args.digits_steps}_{args.shapes_steps}')
    train(workdir, flags)
    rows += measure(name, workdir, flags, args.samples, args.reference_nfe, only)
    write(rows, args.out)   # after each model: a partial run leaves its results


if __name__ == '__main__':
  main()
