#!/usr/bin/env bash
# Does sparse supervision act differently on a global-attention model? The convolutional
# U-Net against a Diffusion Transformer of about the same size (0.71M vs 0.72M parameters)
# in the digits regime where the dense U-Net memorizes (docs/results/digits_regime.md):
# mask ratio 0 and 0.9, 3 seeds each (12 runs, about 30-40 minutes on 2 CPU cores);
# resumable (run it again to continue).
#
#   bash launch/experiments/dit_vs_unet.sh [ROOT] [more launch/sweep.py flags]
#
# Locality (the denoiser's receptive field actually used), memorization with its onset,
# and the digits classifier's quality scores, mean +- std: ROOT/results.{md,csv,png}.
# Both backbones use the same optimiser settings (AdamW 1e-3 after 100 warm-up steps);
# the fields of the other backbone are ignored by each (model.hidden_size by the U-Net,
# model.channels by the DiT).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-runs/dit_vs_unet}
shift || true
PYTHON=${PYTHON:-python}
exec "$PYTHON" launch/sweep.py --root="$ROOT" --config=configs/digits.py \
  --set data.image_size=8 --set data.num_train_examples=32 \
  --set model.channels=32 --set 'model.channel_mult=(1,2)' --set 'model.attn_resolutions=()' \
  --set model.patch_size=2 --set model.hidden_size=96 --set model.depth=4 \
  --set model.num_heads=4 \
  --set training.batch_size=16 --set training.num_steps=1500 \
  --set 'optim.ema_decays=(0.995,)' \
  --set training.log_every=50 --set training.sample_every=0 \
  --set training.checkpoint_every=300 --set training.keep_checkpoints=7 \
  --set sampling.sampler=heun --set sampling.time_steps=default --set sampling.num_steps=18 \
  --set sampling.grid_size=8 --set research.num_samples=128 --set research.batch_size=64 \
  --set research.trajectory=True --set research.locality_images=2 \
  --set research.locality_times=2 \
  --grid model.name=unet,dit --grid training.seed=0,1,2 --grid mask.ratio=0,0.9 \
  --headline locality_radius90,locality_far_fraction,pixel_memorized_fraction,memorization_onset_step,digits_fd,digits_confidence,train_dense_loss \
  --equal_quality digits_fd \
  --title "digits 8x8, 32 training images, 1500 steps: U-Net vs DiT under sparse supervision" \
  "$@"
