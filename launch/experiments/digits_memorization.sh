#!/usr/bin/env bash
# The memorization experiment on real data: the UCI handwritten digits (configs/digits.py),
# a small training subset so that the dense loss memorizes, and the question whether the
# sparse mask memorizes less, and whether only because it learns less. Ratios
# {0, 0.5, 0.9, 0.98}, the dense loss with the batch matched to each ratio's supervised
# pixels, dense + dropout 0.1; 3 seeds each (24 runs); resumable (run it again to continue).
#
#   bash launch/experiments/digits_memorization.sh [ROOT] [more launch/sweep.py flags]
#
# Each run keeps TRAJECTORY_POINTS checkpoints and --mode=research scores every one of them
# (research.trajectory=True: memorized fraction, nearest-neighbour distance and the digits
# metrics on the same samples' noise at every step; memorization_onset_step).
# Results: ROOT/results.md (the headline below), ROOT/results.csv (every metric),
# ROOT/results.png, ROOT/results_equal_fd.md (memorization of each setting at the checkpoint
# whose digits_fd is closest to the dense runs' final one); per run
# ROOT/<run>/research/{trajectory.json,trajectory.png,samples.png,memorization.png}.
#
# The regime, from docs/results/digits_regime.md: at the native 8x8 and 32 training digits
# the dense loss memorizes 78% of its samples after 1500 steps (3% after 500), against 0%
# for held-out real digits; one run takes about 2.5 minutes on 2 CPU cores.
N_TRAIN=${N_TRAIN:-32}            # training digits (the first N of the 1,500 train rows).
IMAGE_SIZE=${IMAGE_SIZE:-8}       # side in pixels (8: the scans as they are; >= 8).
STEPS=${STEPS:-1500}              # optimiser steps per run; a multiple of TRAJECTORY_POINTS.
CHANNELS=${CHANNELS:-32}          # U-Net base channels (channel_mult (1,2), no attention).
BATCH=${BATCH:-16}                # global batch; the batch-matched baseline scales it.
EMA=${EMA:-0.995}                 # the scored EMA's decay: its time constant 1/(1-EMA) steps
                                  # must be well below the checkpoint spacing.
TRAJECTORY_POINTS=${TRAJECTORY_POINTS:-5}   # checkpoints scored per run (every 300 steps).
SAMPLES=${SAMPLES:-128}           # samples scored at every checkpoint (same noise each time).
SEEDS=${SEEDS:-0,1,2}
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=${1:-runs/digits_memorization}
shift || true
PYTHON=${PYTHON:-python}
CHECKPOINT_EVERY=$(( STEPS / TRAJECTORY_POINTS ))
KEEP=$(( TRAJECTORY_POINTS + 2 ))   # room for the final step if STEPS is not a multiple.
exec "$PYTHON" launch/sweep.py --root="$ROOT" --config=configs/digits.py \
  --set data.image_size="$IMAGE_SIZE" --set data.num_train_examples="$N_TRAIN" \
  --set model.channels="$CHANNELS" --set 'model.channel_mult=(1,2)' \
  --set 'model.attn_resolutions=()' \
  --set training.batch_size="$BATCH" --set training.num_steps="$STEPS" \
  --set "optim.ema_decays=($EMA,)" \
  --set training.log_every=50 --set training.sample_every=0 \
  --set training.checkpoint_every="$CHECKPOINT_EVERY" --set training.keep_checkpoints="$KEEP" \
  --set sampling.sampler=heun --set sampling.time_steps=default --set sampling.num_steps=18 \
  --set sampling.grid_size=8 --set research.num_samples="$SAMPLES" --set research.batch_size=64 \
  --set research.trajectory=True --set research.locality_images=1 \
  --set research.locality_times=2 \
  --grid training.seed="$SEEDS" --grid mask.ratio=0,0.5,0.9,0.98 \
  --baseline batch_matched --baseline dropout=0.1 \
  --headline pixel_memorized_fraction,pixel_nn_distance_mean,memorization_onset_step,digits_fd,digits_confidence,digits_class_entropy,train_dense_loss \
  --equal_quality digits_fd \
  --title "digits ${IMAGE_SIZE}x${IMAGE_SIZE}, ${N_TRAIN} training images, ${STEPS} steps: memorization vs mask ratio" \
  "$@"
