"""CelebA 64x64 with a DiT-S/4 Diffusion Transformer instead of the U-Net.

Command: python -m sparsediff_jax.main --config=configs/celeba_dit.py --workdir=DIR
Expected time: not measured (its compiled cost per step is below)
Expected result: not measured

DiT-S widths (hidden 384, 12 blocks, 6 heads, MLP x4) with 4x4-pixel patches: 256 tokens,
the token count of the DiT paper's 256px models (32x32 latents, patch 2). From XLA's
cost analysis of the training step at batch 128 (python benchmarks/model_cost.py;
benchmarks/RESULTS.md, "Backbones at 64x64"):

  U-Net of configs/celeba.py   38.3M parameters  136 GFLOP/image/step   45 GiB scratch
  DiT-S/4 (this config)        32.5M             37                      24
  DiT-S/2 (patch_size=2)       32.5M            192                     180

Both DiTs match the U-Net in parameters. Patch 2 (1024 tokens) comes closer to it in
compute (1.4x) but keeps full 1024 x 1024 attention scores per head and block for the
backward pass: 4x the U-Net's scratch memory in XLA's estimate, likely more than one
80 GB accelerator holds at batch 128 (unmeasured there; model.remat=True is the lever).
Patch 4 runs within the U-Net's memory at a quarter of its compute, so it is the default;
the DiT paper finds sample quality follows compute, so for a compute-matched comparison
run --config.model.patch_size=2 (with model.remat=True if memory is short).
Everything else (data, mask, optimiser, sampling) is configs/celeba.py, so the two runs
differ in the network only, except the learning rate, the DiT paper's 1e-4 (transformers
are less stable at the U-Net's 2e-4). To supervise whole tokens, add
--config.mask.patch_size=4 (= model.patch_size).
"""

import importlib.util
import os


def _celeba_config():
  """configs/celeba.py's config (loaded by path: config files are not a package)."""
  path = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'celeba.py')
  spec = importlib.util.spec_from_file_location('_celeba_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def get_config():
  c = _celeba_config()
  c.model.name = 'dit'
  c.model.patch_size = 4
  c.model.hidden_size = 384
  c.model.depth = 12
  c.model.num_heads = 6
  c.model.mlp_ratio = 4.0
  c.model.dropout = 0.0                 # DiT trains without dropout.
  c.optim.learning_rate = 1e-4
  return c
