"""Sampling speed of the CelebA 64x64 network at 35 and 79 NFE, Inception feature speed,
the FID computation, and the end-to-end time of a small --mode=eval.

    python -m benchmarks.sampling_speed                          # CPU: batch 2, eval of 8
    python -m benchmarks.sampling_speed --batch=128 --eval_samples=0 --inception_batch=250

The network is configs/celeba.py's (flow matching, Heun: NFE = 2 * num_steps - 1, so
18 steps = 35 NFE and 40 steps = 79 NFE), with random parameters: speed does not depend
on their values. Each timing is the median of --repeats calls after a first call that
compiles. 50k-sample times are extrapolations from these rates, labelled as such.

The end-to-end eval (--eval_samples > 0) runs --mode=fid_stats and --mode=eval as the CLI
does, on a checkpoint of random parameters and the `shapes` data at 64x64 (CelebA cannot
be downloaded everywhere), with seeded FID-Inception weights written by tests/helpers/eval_fakes.py
(pytorch-fid's file has the same shapes, so the same speed).
"""

import argparse
import json
import os
import tempfile
import time

import jax
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from sparsediff_jax import generate  # noqa: E402
from sparsediff_jax.runtime import sharding  # noqa: E402
from sparsediff_jax.metrics.fid import fid, inception  # noqa: E402
from flax import nnx  # noqa: E402


def celeba_config(num_steps: int):
  from sparsediff_jax.main import _load_config
  config = _load_config(os.path.join(REPO, 'configs', 'celeba.py'))
  config.sampling.sampler, config.sampling.num_steps = 'heun', num_steps
  return config


def _random_like(tree, seed: int):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: (0.02 * rng.standard_normal(s.shape)).astype(s.dtype), tree)


def _median_seconds(fn, repeats: int) -> tuple[float, float]:
  """(seconds of the first call, median seconds of the next `repeats` calls)."""
  start = time.perf_counter()
  fn(0)
  first = time.perf_counter() - start
  times = []
  for r in range(repeats):
    start = time.perf_counter()
    fn(r + 1)
    times.append(time.perf_counter() - start)
  return first, float(np.median(times))


def time_sampling(nfes: list[int], batch: int, repeats: int) -> list[dict]:
  """Images/s of each NFE. The timed calls of the NFEs alternate, so a change in machine
  load hits them alike and their ratio stays meaningful on a shared machine."""
  from sparsediff_jax.models import build_model
  mesh = sharding.make_mesh()
  runs = []
  for nfe in nfes:
    config = celeba_config((nfe + 1) // 2)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: build_model(config, 0)))
    params = jax.device_put(_random_like(abstract, 0), sharding.replicated(mesh))
    sample_batch = generate.make_batch_sampler(config, graphdef, mesh)
    # sample_batch syncs on its NaN check, so each call is timed to completion.
    call = (lambda r, sb=sample_batch, p=params: sb(p, np.arange(r * batch, (r + 1) * batch)))
    start = time.perf_counter()
    call(0)
    runs.append(dict(nfe=nfe, num_steps=config.sampling.num_steps, call=call,
                     first_call_s=time.perf_counter() - start, times=[]))
  for r in range(repeats):
    for run in runs:
      start = time.perf_counter()
      run['call'](r + 1)
      run['times'].append(time.perf_counter() - start)
  out = []
  for run in runs:
    sec = float(np.median(run['times']))
    out.append(dict(nfe=run['nfe'], num_steps=run['num_steps'], batch=batch,
                    first_call_s=round(run['first_call_s'], 2), sec_per_batch=round(sec, 3),
                    images_per_sec=round(batch / sec, 4),
                    extrapolated_50k_hours=round(50_000 / (batch / sec) / 3600, 1)))
  return out


def _eval_fakes():
  from tests.helpers import eval_fakes
  return eval_fakes


def time_inception(batch: int, repeats: int) -> dict:
  from sparsediff_jax.metrics.fid import inception_weights
  params = inception_weights.convert_state_dict(_eval_fakes().seeded_inception_state_dict())
  graphdef, state = nnx.split(inception.build_inception(params))
  mesh = sharding.make_mesh()
  state = jax.device_put(state, sharding.replicated(mesh))
  images = sharding.global_batch(
      np.random.default_rng(0).integers(0, 256, (batch, 64, 64, 3), dtype=np.uint8), mesh)
  run = lambda r: np.asarray(inception.inception_features(graphdef, state, images))
  first, sec = _median_seconds(run, repeats)
  return dict(batch=batch, first_call_s=round(first, 2), sec_per_batch=round(sec, 3),
              images_per_sec=round(batch / sec, 2),
              extrapolated_50k_minutes=round(50_000 / (batch / sec) / 60, 2))


def time_fid(num: int = 4096) -> dict:
  """Accumulating num 2048-d features and the Frechet distance (a 2048 x 2048 sqrtm)."""
  rng = np.random.default_rng(0)
  start = time.perf_counter()
  a = fid.FeatureAccumulator(2048)
  for i in range(0, num, 256):
    a.update(rng.standard_normal((min(256, num - i), 2048)))
  accumulate = time.perf_counter() - start
  b = fid.feature_stats(rng.standard_normal((num, 2048)) + 0.1)
  start = time.perf_counter()
  fid.fid_from_stats(a.finalize(), b)
  return dict(features=num, accumulate_s=round(accumulate, 2),
              accumulate_50k_s_extrapolated=round(accumulate * 50_000 / num, 1),
              frechet_s=round(time.perf_counter() - start, 2))


def time_eval(num_samples: int, batch: int) -> dict:
  """--mode=fid_stats then --mode=eval (35 NFE) as the CLI runs them, in a temp workdir."""
  eval_fakes = _eval_fakes()
  from sparsediff_jax.modes import evaluate, fid_stats
  from sparsediff_jax.metrics.fid import inception_weights
  with tempfile.TemporaryDirectory() as tmp:
    os.environ['SPARSEDIFF_CACHE'] = os.path.join(tmp, 'cache')
    weights = eval_fakes.write_torch_zip(os.path.join(tmp, 'inception.pth'),
                                         eval_fakes.seeded_inception_state_dict())
    config = celeba_config(18)
    config.data.name, config.data.num_train_examples = 'shapes', num_samples
    config.eval.update(num_samples=num_samples, batch_size=batch, reference_features=0,
                       inception_weights=str(weights),
                       inception_sha256=inception_weights.sha256_file(weights))
    eval_fakes.write_checkpoint(config, tmp, step=1)
    start = time.perf_counter()
    fid_stats.run_fid_stats_mode(config, tmp)
    stats_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics = evaluate.run_eval_mode(config, tmp)
    return dict(num_samples=num_samples, batch=batch, nfe=metrics['nfe'],
                fid_stats_s=round(stats_s, 1), eval_s=round(time.perf_counter() - start, 1),
                eval_generation_and_features_s=metrics['seconds'])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--batch', type=int, default=2, help='global sampling batch')
  parser.add_argument('--nfe', default='35,79', help='comma-separated NFE (odd: Heun)')
  parser.add_argument('--repeats', type=int, default=2)
  parser.add_argument('--inception_batch', type=int, default=8, help='0 = skip')
  parser.add_argument('--fid_features', type=int, default=4096, help='0 = skip')
  parser.add_argument('--eval_samples', type=int, default=8, help='0 = skip the e2e eval')
  parser.add_argument('--out', default='', help='also write the results as JSON here')
  args = parser.parse_args()
  device = jax.devices()[0]
  results = dict(device=f'{device.platform}: {device.device_kind} x {jax.device_count()}',
                 jax=jax.__version__)
  print(results, flush=True)
  results['sampling'] = time_sampling([int(n) for n in args.nfe.split(',')], args.batch,
                                      args.repeats)
  print(results['sampling'], flush=True)
  if args.inception_batch:
    results['inception'] = time_inception(args.inception_batch, args.repeats)
    print(results['inception'], flush=True)
  if args.fid_features:
    results['fid'] = time_fid(args.fid_features)
    print(results['fid'], flush=True)
  if args.eval_samples:
    results['eval'] = time_eval(args.eval_samples, args.batch)
    print(results['eval'], flush=True)
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(results, f, indent=2)


if __name__ == '__main__':
  main()
