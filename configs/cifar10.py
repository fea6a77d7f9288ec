"""CIFAR-10 32x32, unconditional: flow matching, U-Net, sparse mask.

Command: python -m sparsediff_jax.main --config=configs/cifar10.py --workdir=DIR
Expected time: not measured
Expected result: not measured

Fields not set here keep the defaults documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  c = config_base.get_config()
  c.data.name = 'cifar10'
  c.data.image_size = 32
  c.data.num_train_examples = 0         # the whole 50k-image train split.
  c.data.random_flip = True

  c.mask.ratio = 0.9

  c.model.channels = 128
  c.model.channel_mult = (1, 2, 2, 2)   # 32 -> 16 -> 8 -> 4.
  c.model.num_res_blocks = 2
  c.model.attn_resolutions = (16,)
  c.model.num_heads = 4
  c.model.dropout = 0.1
  c.model.dtype = 'bfloat16'

  c.training.num_steps = 400_000
  c.training.batch_size = 128
  c.training.log_every = 100
  c.training.sample_every = 10_000
  c.training.checkpoint_every = 10_000

  c.optim.learning_rate = 2e-4
  c.optim.warmup_steps = 5_000
  c.optim.ema_decays = (0.9999, 0.999)
  # Heun on the formulation's grid (69 NFE): the sampler-per-NFE curve
  # (docs/results/sampler_nfe) was measured on digits and shapes, not at this scale.
  c.sampling.sampler, c.sampling.time_steps = 'heun', 'default'
  c.sampling.num_steps = 35
  return c
