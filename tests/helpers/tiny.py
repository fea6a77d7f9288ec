"""The ONE tiny configuration of the tests, and the one way to turn overrides into flags.

Every test starts from `TINY` (the shapes config shrunk so that a step compiles and runs in
about a second on CPU) and states what it needs beyond it as overrides keyed by
'section.field':

    tiny_config({'mask.ratio': 0.0})           # a ConfigDict, for in-process tests
    as_flags({**TINY, 'training.batch_size': 4})  # ['--config.data.image_size=16', ...]

`tiny_config(mask__ratio=0.0)` (a double underscore for the dot) is accepted too.
conftest.py exposes `tiny_config` as a fixture. `model_config(name)` is TINY with the registered
model `name` at its tiny size (MODELS; the U-Net's is TINY's own).
"""

from sparsediff_jax import config_base
from sparsediff_jax.sweeps import carry_over

TINY = {
    'data.image_size': 16,
    'data.num_train_examples': 64,
    'data.shapes_pairs': 1,
    'model.channels': 8,
    'model.channel_mult': (1, 2),
    'model.attn_resolutions': (8,),
    'training.batch_size': 8,
    'training.num_steps': 4,
    'training.log_every': 2,
    'training.sample_every': 0,
    'training.checkpoint_every': 2,
    'optim.warmup_steps': 2,
    'sampling.sampler': 'heun',          # the step counts the tests assert are Heun's
    'sampling.time_steps': 'default',
    'sampling.num_steps': 2,
    'sampling.grid_size': 2,
}


def tiny_config(overrides: dict | None = None, **kwargs):
  """config_base's config with TINY, then `overrides` ('section.field' -> value) applied."""
  c = config_base.get_config()
  changes = {**TINY, **(overrides or {}),
             **{k.replace('__', '.'): v for k, v in kwargs.items()}}
  for key, value in changes.items():
    node = c
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return c


# Per registered model (registry.MODELS): the overrides that make it tiny on TINY's 16x16
# images. A model not listed here is tested at its config_base defaults.
MODELS = {
    'unet': {},
    # a 2-block, 32-wide DiT: 64 tokens of 2x2 pixels
    'dit': {'model.name': 'dit', 'model.patch_size': 2, 'model.hidden_size': 32,
            'model.depth': 2, 'model.num_heads': 2, 'model.mlp_ratio': 2.0},
}


def research_config(overrides: dict | None = None):
  """tiny_config for --mode=research tests: 16 images, batch 4, no attention, Euler, 6
  samples, locality on 2 images at 2 times, a 3-row memorization grid; then `overrides`."""
  return tiny_config({
      'data.num_train_examples': 16, 'model.attn_resolutions': (),
      'training.batch_size': 4, 'sampling.sampler': 'euler', 'research.num_samples': 6,
      'research.batch_size': 4, 'research.locality_images': 2, 'research.locality_times': 2,
      'research.memorization_grid': 3, **(overrides or {})})


def model_config(name: str, overrides: dict | None = None, **kwargs):
  """tiny_config with the model `name` at its tiny size, then the overrides."""
  return tiny_config({'model.name': name, **MODELS.get(name, {}), **(overrides or {})},
                     **kwargs)


def as_flags(overrides: dict) -> list[str]:
  """['--config.section.field=value', ...] for the CLI (tuples as '(1,2)', '()', '(8,)')."""
  return [f'--config.{k}={carry_over.flag_value(v)}' for k, v in overrides.items()]


TINY_FLAGS = as_flags(TINY)
