"""Reader storm: sample, eval and research readers (research several at once) started at
random moments beside a live training run (reader_storm.py) harm nothing, and each succeeds
or says why in one line. `python -m tests.helpers.reader_storm 20` runs the 20-reader storm.

Its cost is the CLI's start-up per reader, an Inception pass per eval reader and two
training runs: 1018 s wall on 2 cores shared with other jobs (load average about 19); the
counts are in docs/troubleshooting.md, "Reader storm"."""

import pytest

from tests.helpers.reader_storm import storm

READERS = 9


@pytest.mark.slow
def test_readers_beside_a_live_run_harm_nothing(tmp_path):
  counts = storm(str(tmp_path), readers=READERS, seed=0)
  print({k: v for k, v in counts.items() if k != 'bad_readers'})
  assert counts['readers'] == READERS, 'the run ended first: raise num_steps'
  assert counts['bad_readers'] == [], counts['bad_readers']
  assert counts['succeeded'] + counts['refused_in_one_line'] == READERS
  assert counts['succeeded'] >= READERS // 2, counts   # most find a checkpoint
  assert counts['trainer_exit_code'] == 0 and counts['trainer_clean'], counts
  assert counts['losses_equal'], counts
  assert counts['checkpoints_intact'] and counts['only_committed_steps'], counts
  # Research readers ran at once, and each kept its own output: none was overwritten
  # (every reader's seed is in exactly one output, checked above), no marker is left.
  assert counts['most_research_at_once'] >= 2, counts
  assert counts['markers_left'] == [], counts
