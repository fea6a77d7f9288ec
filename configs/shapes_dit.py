"""Shapes 16x16 with a small Diffusion Transformer (model.name='dit'): trains on a CPU.

Command: python -m sparsediff_jax.main --config=configs/shapes_dit.py --workdir=runs/shapes_dit
Expected time: not measured
Expected result: not measured

64 tokens of 2x2 pixels, 4 blocks of width 64 with 4 heads: about 330k parameters. Fields
not set here keep the defaults documented in `sparsediff_jax/config_base.py`. To supervise
whole tokens rather than pixels, add --config.mask.patch_size=2 (= model.patch_size).
"""

from sparsediff_jax import config_base


def get_config():
  c = config_base.get_config()
  c.data.image_size = 16
  c.data.shapes_pairs = 1               # two objects fit a 16x16 image comfortably.

  c.model.name = 'dit'
  c.model.patch_size = 2
  c.model.hidden_size = 64
  c.model.depth = 4
  c.model.num_heads = 4
  c.model.mlp_ratio = 4.0

  c.optim.learning_rate = 5e-4          # transformers want a lower peak than the U-Net's 1e-3.
  c.optim.warmup_steps = 100
  return c
