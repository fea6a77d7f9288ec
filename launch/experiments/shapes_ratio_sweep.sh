#!/usr/bin/env bash
# The mask-ratio experiment on the embedded shapes data, with the baselines that isolate
# masking from plain gradient noise: ratios {0, 0.5, 0.9, 0.98}, the dense loss with the
# batch matched to each ratio's supervised pixels, dense + dropout 0.1; 3 seeds each
# (24 runs). Sized for about 2 hours on 2 CPU cores; resumable (run it again to continue).
# The EMA decay is short (0.995, about 200 steps) because the metrics are taken on the EMA
# weights: with the default 0.999 a 1500-step run's EMA is still 22% initial weights.
#
#   bash launch/experiments/shapes_ratio_sweep.sh [ROOT] [more launch/sweep.py flags]
#
# Results: ROOT/results.md, ROOT/results.csv, ROOT/results.png; per run
# ROOT/<run>/research/{samples,memorization,locality}.png. Extra flags override the
# defaults below, e.g. --set training.num_steps=600 --grid training.seed=0,1 (a later
# --grid or --set for the same field wins).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-runs/shapes_ratio_sweep}
shift || true
PYTHON=${PYTHON:-python}
exec "$PYTHON" launch/sweep.py --root="$ROOT" \
  --set data.image_size=16 --set data.num_train_examples=256 \
  --set model.channels=16 --set 'model.channel_mult=(1,2)' --set 'model.attn_resolutions=()' \
  --set training.batch_size=16 --set training.num_steps=1500 \
  --set 'optim.ema_decays=(0.995,)' \
  --set training.log_every=50 --set training.sample_every=0 --set training.checkpoint_every=500 \
  --set sampling.sampler=heun --set sampling.time_steps=default --set sampling.num_steps=18 \
  --set sampling.grid_size=8 --set research.num_samples=256 --set research.batch_size=64 \
  --grid training.seed=0,1,2 --grid mask.ratio=0,0.5,0.9,0.98 \
  --baseline batch_matched --baseline dropout=0.1 \
  --title "shapes 16x16, 256 training images: mask ratio vs baselines" \
  "$@"
