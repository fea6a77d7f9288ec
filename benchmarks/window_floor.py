"""The real-vs-real floor of digits_fd at 8x8: the target scale of the memorization window.

Scores disjoint blocks of 128 real digits of the training split (rows 0..1499, the
samples' count in the window experiment) against the 297 held-out digits with the digits
classifier, exactly as a model's 128 samples are scored (digits_metrics.classifier_metrics),
and prints each block's digits_fd and digits_confidence and their mean and std.
metrics/window.py's DEFAULT_TARGETS are 2x the mean digits_fd and 0.9x the mean
confidence printed here.

  python benchmarks/window_floor.py [--size=8] [--block=128]
"""

import argparse

import numpy as np

from sparsediff_jax.data import digits
from sparsediff_jax.data.digits import classifier as digits_classifier
from sparsediff_jax.data.digits import metrics as digits_metrics


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  p.add_argument('--size', type=int, default=8)
  p.add_argument('--block', type=int, default=128)
  a = p.parse_args()
  reference, _ = digits.load_split('heldout', max(a.size, digits.MIN_SIZE))
  train, _ = digits.load_split('train', a.size)
  classifier = digits_metrics._classifier(str(digits_classifier.cache_folder().parent))
  fds, confs = [], []
  for lo in range(0, len(train) - a.block + 1, a.block):
    m = digits_metrics.classifier_metrics(classifier, train[lo:lo + a.block], reference)
    fds.append(m['digits_fd'])
    confs.append(m['digits_confidence'])
    print(f'rows {lo}..{lo + a.block - 1}: digits_fd {fds[-1]:.2f}, '
          f'digits_confidence {confs[-1]:.3f}', flush=True)
  print(f'{len(fds)} blocks of {a.block} at {a.size}x{a.size}: digits_fd {np.mean(fds):.2f} '
        f'+- {np.std(fds, ddof=1):.2f}, digits_confidence {np.mean(confs):.3f} '
        f'+- {np.std(confs, ddof=1):.3f}')


if __name__ == '__main__':
  main()
