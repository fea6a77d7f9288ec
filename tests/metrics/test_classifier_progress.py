"""A classifier that trains for minutes (Fashion-MNIST's: about 20 on 2 CPU cores) says so at
the start and shows its progress while it trains."""

import numpy as np

from sparsediff_jax.metrics import classifier


def test_training_logs_a_start_line_and_timed_progress(monkeypatch):
  lines = []
  monkeypatch.setattr(classifier.logging, 'info', lambda fmt, *a: lines.append(fmt % a))
  now = [0.0]
  report = classifier._TrainingReport('fashion_mnist', 10, clock=lambda: now[0])
  params = {'w': np.zeros(2)}
  for done in range(1, 11):
    now[0] += 11.0   # 11 s per step
    report.after(done, params)
  assert lines[0] == ('training the fashion_mnist classifier once (10 steps; cached '
                      'afterwards)')
  progress = lines[1:]
  assert progress[0].startswith('fashion_mnist classifier: step 3/10, ')   # 30 s passed
  assert progress[-1].startswith('fashion_mnist classifier: step 10/10, ')   # and the end
  assert 2 <= len(progress) <= 5   # every 30 s at most, not every step
  assert progress[0] == ('fashion_mnist classifier: step 3/10, 33.0 s so far, about 1.3 min '
                         'left')   # 7 steps of 11 s
