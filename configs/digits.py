"""UCI handwritten digits (scikit-learn's copy, no download), 16x16: a small real dataset.

Command: python -m sparsediff_jax.main --config=configs/digits.py --workdir=runs/digits
Expected time: not measured at 16x16 (the digits studies ran at 8x8: docs/results/)
Expected result: not measured

1,500 training images (sparsediff_jax/data/digits/), small enough to train a useful
model on a CPU, and scored by a domain classifier (digits_fd, digits_confidence,
digits_class_entropy; sparsediff_jax/data/digits/metrics.py) instead of Inception,
which says little about 16x16 gray digits. Fields not set here keep the defaults
documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  c = config_base.get_config()
  c.data.name = 'digits'
  c.data.image_size = 16                # the 8x8 originals enlarged twice (PIL bilinear):
                                        # room for a two-level U-Net, still cheap on a CPU.
  c.data.num_train_examples = 1500      # the whole train split; the other 297 are held out
                                        # as the reference of the digits metrics.
  c.data.random_flip = False            # a mirrored digit is not a digit (the default, kept
                                        # explicit because other datasets flip).

  c.mask.ratio = 0.9                    # one of the paper's ratios; sweep {0, 0.5, 0.9}.

  c.model.channels = 32                 # 0.71M parameters with the three fields below:
  c.model.channel_mult = (1, 2)         # 16 -> 8 (two levels suffice for 16x16 images).
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = ()         # no attention: the receptive field of two levels
                                        # already covers a 16x16 digit, and it costs time.

  c.diffusion.formulation = 'flow_matching'   # the paper's baseline (also the default).

  c.training.batch_size = 16            # 1,500 images: ~94 steps per epoch, many epochs.
  c.training.num_steps = 3000           # ~32 epochs: legible digits in minutes on a CPU.
  c.training.log_every = 100
  c.training.sample_every = 500         # six grids over the run.
  c.training.checkpoint_every = 500

  c.optim.ema_decays = (0.995,)         # a short run: 0.999 would average over a third of it.
  c.sampling.grid_size = 8              # 64 samples, about six of each digit.
  return c
