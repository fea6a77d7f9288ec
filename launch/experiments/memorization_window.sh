#!/usr/bin/env bash
# The memorization window (docs/results/memorization_window/): does sparse supervision delay
# memorization (tau_mem) more than it delays learning (tau_gen)? Digits 8x8 (the regime of
# docs/results/digits_regime.md), n training images in {32, 16, 64} (in that order); dense,
# mask 0.5, 0.9, 0.98, the batch-matched dense loss of each ratio, dense + dropout 0.1;
# 3 seeds: 24 runs per n. Every run is scored WHILE it trains (research.window_every) and
# stops once half its samples are memorized (research.window_stop=0.5), else at its cap.
#
#   bash launch/experiments/memorization_window.sh [ROOT] [more launch/sweep.py flags]
#
# Each finished run's result (research_metrics.json, config.json, window trajectory, grid at
# tau_gen) is copied to RESULTS/<run name>/ and, with COMMIT=1, committed at once; a run
# whose kept result matches its resolved config is skipped, so the command continues on any
# machine from the committed results. Then the tables and figures are rebuilt from RESULTS
# alone: python -m sparsediff_jax.sweeps.window_table --results=RESULTS.
#
# Caps and spacing per n (dense tau_mem(0.5) estimated from digits_regime.md: about 450
# steps at n=16, 1300 at n=32, 3500 at n=64): the cap is at least 4x that, so a run that
# does not memorize trains at least 4x as long as the dense one needed; scoring every
# cap/20 or so resolves the dense onset.
N_LIST=${N_LIST:-32,16,64}        # training-set sizes, in the order they are run.
SEEDS=${SEEDS:-0,1,2}
# SAMPLER, SAMPLER_STEPS, SAMPLES, COMMIT=1 (commit each kept result), PYTHON: window_flags.sh.
set -euo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
RESULTS=${RESULTS:-$REPO/docs/results/memorization_window/runs}
ROOT=${1:-runs/memorization_window}
shift || true
cd "$REPO"
source launch/experiments/window_flags.sh

for n in ${N_LIST//,/ }; do
  case "$n" in
    16) CAP=2000; EVERY=100 ;;
    32) CAP=5600; EVERY=200 ;;
    64) CAP=16000; EVERY=400 ;;
    *) echo "error: N_LIST: no cap is chosen for n=$n (16, 32 or 64)" >&2; exit 2 ;;
  esac
  window_cap "$CAP" "$EVERY" 0.5
  "$PYTHON" launch/sweep.py --root="$ROOT/n$n" --config=configs/digits.py \
    --results="$RESULTS" "${commit_flag[@]}" \
    --set data.image_size=8 --set training.log_every=50 \
    "${SMALL_UNET[@]}" "${WINDOW_COMMON[@]}" "${WINDOW_CAP[@]}" \
    --grid data.num_train_examples="$n" --grid training.seed="$SEEDS" \
    --grid mask.ratio=0,0.5,0.9,0.98 --baseline batch_matched --baseline dropout=0.1 \
    --headline pixel_memorized_fraction,digits_fd,digits_confidence,tau_gen_digits_fd,tau_mem_0.5 \
    --equal_quality '' \
    --title "digits 8x8, n=$n, cap $CAP steps: memorization window" "$@" || true
done
# 78 planned: the 72 runs above and the 6 DiT runs of dit_window.sh, kept in the same folder.
"$PYTHON" -m sparsediff_jax.sweeps.window_table --results="$RESULTS" --planned=78
