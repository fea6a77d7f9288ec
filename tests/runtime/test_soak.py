"""Soak: a tiny CLI run killed 20 times (SIGKILL/SIGTERM, during start-up, compilation,
checkpoint writes and steps) ends with the losses of an uninterrupted run (soak_runs.py).

Its cost is the CLI's start-up, paid once per restart: 785 s wall (302 s CPU) on 2 cores
shared with other jobs; the counts are in docs/troubleshooting.md, "Fault injection"."""

import pytest

from tests.helpers.soak_runs import soak

FAULTS = 20


@pytest.mark.slow
def test_twenty_kills_and_resumes_give_the_uninterrupted_losses(tmp_path):
  counts = soak(str(tmp_path), faults=FAULTS, seed=0)
  print(counts)
  assert counts['faults_injected'] == FAULTS, counts
  assert counts['survived'] == FAULTS, counts
  assert counts['each_step_once'], counts
  assert counts['losses_equal'], counts
  # Saves every 2 steps: a SIGKILL loses at most the steps since the newest complete one
  # (2, plus the one in flight), a SIGTERM none.
  assert counts['steps_lost'] <= 3 * FAULTS, counts
