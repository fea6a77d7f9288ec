"""Fashion-MNIST (Xiao, Rasul and Vollgraf 2017), 16x16: real garments, offline.

Command: python -m sparsediff_jax.main --config=configs/fashion_mnist.py --workdir=runs/fashion_mnist
Expected time: 624 s of CPU time for the 3000 steps on 2 cores (wall time not recorded)
Expected result: fashion_mnist_fd 4.22 (real floor 1.24), confidence 0.49 (real 0.73), 128
  samples of one seed (docs/results/fashion_mnist_metrics.md)

60,000 training and 10,000 test images read from the IDX files that
`apt-get install dataset-fashion-mnist` puts in /usr/share/datasets/fashion-mnist
(sparsediff_jax/data/fashion_mnist/; data.source='tfds' reads TFDS's copy instead).
Shrunk to 16x16 so that a 0.71M-parameter U-Net draws recognisable garments on a CPU
(the README shows the grids); data.image_size=28 trains at the native size. Scored by a
domain classifier trained on the train split and a mirror-symmetry measure
(fashion_mnist_fd, fashion_mnist_confidence, fashion_mnist_asymmetric_rate, ...;
sparsediff_jax/data/fashion_mnist/metrics.py). Fields not set here keep the defaults
documented in `sparsediff_jax/config_base.py`.
"""

from sparsediff_jax import config_base


def get_config():
  c = config_base.get_config()
  c.data.name = 'fashion_mnist'
  c.data.image_size = 16                # 28x28 shrunk (PIL bilinear, antialiased).
  c.data.num_train_examples = 0         # all 60,000 training images; the 10,000 test
                                        # images are the metrics' reference.
  c.data.random_flip = False            # most garments are mirror-symmetric, but shoes
                                        # face one way; the symmetry measure needs that.

  c.mask.ratio = 0.9                    # one of the paper's ratios; sweep {0, 0.5, 0.9}.

  c.model.channels = 32                 # 0.71M parameters with the three fields below:
  c.model.channel_mult = (1, 2)         # 16 -> 8.
  c.model.num_res_blocks = 1
  c.model.attn_resolutions = ()         # no attention: cheap on a CPU.

  c.diffusion.formulation = 'flow_matching'

  c.training.batch_size = 16
  c.training.num_steps = 3000           # recognisable garments (see the README's grid).
  c.training.log_every = 100
  c.training.sample_every = 1000
  c.training.checkpoint_every = 1000

  c.optim.ema_decays = (0.995,)         # a short run: 0.999 would average over a third of it.
  c.sampling.grid_size = 8
  return c
