"""One of two processes of tests/runtime/test_preemption.py: python preemption_worker.py ID PORT DIR.

Joins a two-process JAX job on 127.0.0.1:PORT, then counts steps, asking a StopRequest at
every one as the training loop does, and prints the step it stops at. DIR/ready-ID appears
once it listens for signals; process 1 steps twice as slowly, so the two are at different
steps when a signal arrives.
"""

import os
import sys
import time

os.environ['XLA_FLAGS'] = '--xla_force_host_platform_device_count=1'
import jax  # noqa: E402

process_id, port, directory = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2,
                           process_id=process_id, initialization_timeout=60)
from sparsediff_jax.runtime import preemption  # noqa: E402

stop = preemption.StopRequest()
open(os.path.join(directory, f'ready-{process_id}'), 'w').close()
for step in range(1, 100_000):
  time.sleep(0.01 * (1 + process_id))
  if stop.should_stop(step):
    print(f'stopped at {step} by {stop.signum}', flush=True)
    break
stop.close()
