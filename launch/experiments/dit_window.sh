#!/usr/bin/env bash
# The U-Net against a DiT, compared at equal quality with the memorization-window
# instruments (docs/results/memorization_window/): the DiT of launch/experiments/dit_vs_unet.sh
# (2x2 patches, width 96, depth 4, 4 heads: 0.72M parameters) on 8x8 digits, n=32.
#
# 1. PHASE=search: the DiT's own learning rate and warm-up, chosen on the dense training
#    loss only (no sample metric, no memorization): dense, seed 0, 1500 steps, learning
#    rate in {3e-4, 1e-3, 2e-3, 4e-3, 8e-3} x warm-up in {100, 500} (4e-3 and 8e-3 were added
#    when 2e-3 came out best, so that the pick is not at the grid's edge); the pick is the lowest
#    train_dense_loss in ROOT/search/results.md (the loss of the last logged window).
#      PHASE=search bash launch/experiments/dit_window.sh [ROOT]
# 2. PHASE=window LR=... WARMUP=...: dense and mask 0.9, 3 seeds, scored while training and
#    stopped once half the samples are memorized, cap and spacing of the U-Net's n=32 runs
#    (5600 steps, every 200); results kept (and with COMMIT=1 committed) next to the
#    U-Net's, so window_table puts them in one table.
#      PHASE=window LR=1e-3 WARMUP=500 COMMIT=1 bash launch/experiments/dit_window.sh [ROOT]
PHASE=${PHASE:-search}
# SAMPLER, SAMPLER_STEPS, SAMPLES, COMMIT=1 (commit each kept result), PYTHON: window_flags.sh.
set -euo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
RESULTS=${RESULTS:-$REPO/docs/results/memorization_window/runs}
ROOT=${1:-runs/dit_window}
shift || true
cd "$REPO"
DIT=(--set model.name=dit --set model.patch_size=2 --set model.hidden_size=96
     --set model.depth=4 --set model.num_heads=4)
source launch/experiments/window_flags.sh
COMMON=(--config=configs/digits.py --set data.image_size=8 --set data.num_train_examples=32
        --set training.log_every=50 "${WINDOW_COMMON[@]}")
case "$PHASE" in
  search)
    exec "$PYTHON" launch/sweep.py --root="$ROOT/search" "${COMMON[@]}" "${DIT[@]}" \
      --set training.num_steps=1500 --set training.checkpoint_every=1500 \
      --set mask.ratio=0 --set training.seed=0 \
      --grid optim.learning_rate=3e-4,1e-3,2e-3,4e-3,8e-3 --grid optim.warmup_steps=100,500 \
      --headline train_dense_loss,train_loss --equal_quality '' \
      --title 'DiT learning rate and warm-up: dense training loss after 1500 steps' "$@" ;;
  window)
    : "${LR:?PHASE=window needs LR (from PHASE=search)}" "${WARMUP:?and WARMUP}"
    window_cap 5600 200 0.5
    "$PYTHON" launch/sweep.py --root="$ROOT/window" "${COMMON[@]}" "${DIT[@]}" \
      --results="$RESULTS" "${commit_flag[@]}" \
      --set optim.learning_rate="$LR" --set optim.warmup_steps="$WARMUP" \
      "${WINDOW_CAP[@]}" \
      --grid data.num_train_examples=32 --grid model.name=dit --grid training.seed=0,1,2 \
      --grid mask.ratio=0,0.9 --equal_quality '' \
      --title "DiT, digits 8x8, n=32: memorization window" "$@"
    exec "$PYTHON" -m sparsediff_jax.sweeps.window_table --results="$RESULTS" --planned=78 ;;
  *) echo "error: PHASE=$PHASE: choose search or window" >&2; exit 2 ;;
esac
