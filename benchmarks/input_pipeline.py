"""Input pipeline throughput on this machine, in images per second per CPU core.

Two stages for each of the CelebA 64x64 and CIFAR-10 configs:
- load: encoded TFDS record -> decode -> crop -> resize -> uint8, done once per run when
  the subset is read into host memory. Records come from tfds.testing.mock_data with the
  real shapes and encodings (CelebA: 218x178 JPEG; CIFAR-10: 32x32 PNG) but random pixels,
  which compress worse than photographs, so decoding is if anything slower than on the
  real data. The records are generated first and the clock covers only our work.
- serve: ArrayIterator batches from the in-memory subset (gather + random flip), what the
  training loop pulls every step.
Everything runs on one thread (TF intra/inter-op and tf.data pools of 1), so each number
is what one core does; best of --repeats.

  python benchmarks/input_pipeline.py [--consumer_images_per_sec=R]

R is how many images/s the CelebA config's train step consumes on one accelerator
(measure it there); the script then prints how many cores each stage needs to keep up.
"""

import argparse
import os
import platform
import runpy
import time

import tensorflow as tf

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

import numpy as np  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402

from sparsediff_jax.data import tfds_sources  # noqa: E402
from sparsediff_jax.data.iterators import ArrayIterator  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'configs')


def load_config(name: str):
  return runpy.run_path(os.path.join(CONFIGS, f'{name}.py'))['get_config']()


def cpu_name() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def mock_records(tfds_name: str, count: int) -> list[bytes]:
  """`count` encoded images as TFDS stores them for `tfds_name` (random pixels)."""
  with tfds.testing.mock_data(num_examples=count):
    ds = tfds.builder(tfds_name).as_dataset(
        split='train', decoders={'image': tfds.decode.SkipDecoding()})
    return [example['image'] for example in tfds.as_numpy(ds)]


def best_rate(run, count: int, repeats: int) -> float:
  """count / (fastest of `repeats` timed calls of run()), per second."""
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return count / min(times)


def load_rate(name: str, config, records: list[bytes], repeats: int) -> float:
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  ds = (tf.data.Dataset.from_tensor_slices(records)
        .map(tfds_sources.preprocess_fn(name, config.data), num_parallel_calls=1)
        .batch(256).with_options(options))

  def run():
    for _ in ds.as_numpy_iterator():
      pass
  run()   # trace the map function outside the clock
  return best_rate(run, len(records), repeats)


def serve_rate(config, num_examples: int, steps: int, repeats: int) -> float:
  d = config.data
  shape = (num_examples, d.image_size, d.image_size, 3)
  images = np.frombuffer(np.random.default_rng(0).bytes(int(np.prod(shape))),
                         np.uint8).reshape(shape)
  stream = ArrayIterator(images, config.training.batch_size, seed=0,
                         random_flip=d.random_flip)

  def run():
    for _ in range(steps):
      next(stream)
  return best_rate(run, steps * config.training.batch_size, repeats)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--consumer_images_per_sec', type=float, default=0.0,
                      help="images/s the CelebA config's train step consumes on one "
                           'accelerator (0: unknown, print no ratio)')
  parser.add_argument('--repeats', type=int, default=3)
  args = parser.parse_args()

  celeba, cifar = load_config('celeba'), load_config('cifar10')
  rows = []
  for name, config, tfds_name, what, count, subset in [
      ('celeba', celeba, 'celeb_a', 'JPEG 218x178, crop 140, resize 64', 512, 50_000),
      ('cifar10', cifar, 'cifar10', 'PNG 32x32 (crop, resize: identities)', 4096, 50_000)]:
    records = mock_records(tfds_name, count)
    rows.append((name, f'load: {what}', load_rate(name, config, records, args.repeats)))
    batch = config.training.batch_size
    rows.append((name, f'serve: {subset} in memory, batch {batch}, flips',
                 serve_rate(config, subset, 200, args.repeats)))

  print(f'\nInput pipeline, {cpu_name()}, {os.cpu_count()} CPU cores, one thread per '
        f'number, best of {args.repeats}')
  print(f'{"dataset":8}  {"stage":52}  {"images/s/core":>13}')
  for name, stage, rate in rows:
    print(f'{name:8}  {stage:52}  {rate:13,.0f}')
  load_celeba, serve_celeba = rows[0][2], rows[1][2]
  print(f'\nCelebA-50K one-time load: {50_000 / load_celeba:.0f} core-seconds.')
  if args.consumer_images_per_sec:
    r = args.consumer_images_per_sec
    print(f'Train step consumes {r:,.0f} images/s: serving needs {r / serve_celeba:.3f} '
          f'cores (one core serves {serve_celeba / r:.1f}x that); a pipeline that decoded '
          f'every step would need {r / load_celeba:.1f} cores.')


if __name__ == '__main__':
  main()
