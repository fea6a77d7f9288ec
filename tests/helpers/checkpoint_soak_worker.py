"""The process tests/runtime/test_checkpoints.py kills: python checkpoint_soak_worker.py DIR KEEP.

Resumes from the newest intact checkpoint in DIR (as training does), then saves one
asynchronous checkpoint per step, forever, with max_to_keep=KEEP. Every array of step s's
state holds s, and its meta says s, so a reader can tell a consistent checkpoint.
"""

import sys

import jax
import jax.numpy as jnp

from sparsediff_jax.runtime import checkpoints


def state_of(step: int) -> dict:
  return {'params': {'w': jnp.full((64, 32), step, jnp.float32),
                     'b': jnp.full((32,), step, jnp.float32)},
          'step': jnp.int32(step)}


def main(directory: str, keep: int) -> None:
  ckpt = checkpoints.Checkpointer(directory, keep=keep)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  restored = ckpt.restore_latest(checkpoints.abstract_like(state_of(0), sharding))
  step = 0 if restored is None else restored[0]
  print('ready', step, flush=True)
  while True:
    step += 1
    ckpt.save(step, state_of(step), {'data': {'position': step}})


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]))
