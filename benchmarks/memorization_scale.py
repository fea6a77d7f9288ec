"""Time and memory of `memorization.nearest_two` at FID scale (50k samples x 50k images).

  python benchmarks/memorization_scale.py --num_samples=50000 --num_train=50000 --size=32

Random uint8 images stand in for samples and the training set; a few samples are planted
copies of training images and must come back flagged (d1/d2 < 1/3) with their index; a
few others are checked against a float64 brute-force answer. Prints the device, the wall
time of the first call (with compilation) and of a second call, and the device's peak
memory where it reports one.
"""

import argparse
import time

import jax
import numpy as np

from sparsediff_jax.metrics import memorization  # noqa: E402


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--num_samples', type=int, default=50000)
  p.add_argument('--num_train', type=int, default=50000)
  p.add_argument('--size', type=int, default=32)
  p.add_argument('--query_block', type=int, default=1024)
  p.add_argument('--reference_block', type=int, default=2048)
  a = p.parse_args()
  rng = np.random.default_rng(0)
  shape = (a.size, a.size, 3)
  train = rng.integers(0, 256, (a.num_train,) + shape, dtype=np.uint8)
  samples = rng.integers(0, 256, (a.num_samples,) + shape, dtype=np.uint8)
  planted = rng.choice(a.num_train, 16, replace=False)
  samples[:16] = train[planted]
  blocks = dict(query_block=a.query_block, reference_block=a.reference_block)
  print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()}), '
        f'{a.num_samples} samples x {a.num_train} training images of {shape}')

  times = []
  for _ in range(2):
    start = time.perf_counter()
    d1, d2, nearest = memorization.nearest_two(samples, train, **blocks)
    times.append(time.perf_counter() - start)
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')

  ratio = d1 / d2
  assert np.array_equal(nearest[:16], planted), 'planted copies not found'
  assert np.all(ratio[:16] < memorization.MEMORIZED_RATIO) and np.all(d1[:16] < 1e-3)
  check = np.arange(16, 24)
  q = samples[check].reshape(len(check), -1) / 255.0
  r = train.reshape(a.num_train, -1) / 255.0
  brute = np.sqrt(((q[:, None] - r[None]) ** 2).sum(-1)) if a.num_train <= 5000 else None
  if brute is None:   # chunked to bound host memory
    brute = np.concatenate([np.sqrt(((q[:, None] - r[None, i:i + 2000]) ** 2).sum(-1))
                            for i in range(0, a.num_train, 2000)], axis=1)
  np.testing.assert_allclose(d1[check], brute.min(1), rtol=1e-5)
  np.testing.assert_array_equal(nearest[check], brute.argmin(1))
  print(f'first call (with compilation): {times[0]:.2f} s; second call: {times[1]:.2f} s '
        f'({a.num_samples * a.num_train / times[1] / 1e6:.1f} M pairs/s)')
  print('peak device memory: ' + (f'{peak / 2**30:.2f} GiB' if peak else 'not reported'))
  print(f'planted copies flagged: 16/16; brute-force check on {len(check)} samples: ok; '
        f'memorized fraction {np.mean(ratio < memorization.MEMORIZED_RATIO):.5f}')


if __name__ == '__main__':
  main()
