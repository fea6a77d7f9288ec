#!/usr/bin/env bash
# The memorization window, decided (docs/results/memorization_window/README.md, "The
# decisive runs"): digits 8x8 with a quality target copies cannot meet, caps per run, and
# 8 seeds at n=64 (dense, mask 0.5, mask 0.9, the batch-matched dense loss of each, dense
# + dropout 0.1), 4 at n=128 (dense, mask 0.9, its batch-matched control): 56 runs, ONE at
# a time, the most decisive first:
#   1. n=64, seeds 3-7: dense, mask 0.9 and its control (seed by seed);
#   2. n=64, seeds 0-2: the same;
#   3. n=64, seeds 0-7: mask 0.5 and its control, dropout 0.1;
#   4. n=128, seeds 0-3: dense, mask 0.9 and its control.
#
#   COMMIT=1 nice -n 19 bash launch/experiments/window_decisive.sh [ROOT] [more sweep flags]
#
# Caps, per run rather than from the dense one (research.window_cap_factor=4): a run stops
# once its tau_gen (metrics/window.py's headline target, novel_digits_confidence >= 0.815:
# confidence over the samples that are not copies) AND tau_mem(0.5) are reached, or at the
# first scored step at or past 4x its own tau_gen. training.num_steps (CAP) bounds only a
# run that never reaches quality: 40000 steps at n=64 (4x the ~9300-step tau_gen of mask
# 0.9 there under the first target), 80000 at n=128; a mask 0.98 run would get 4x mask
# 0.9's (RATIO_098_CAP, not run here). Batch-matched controls are capped by images through
# the network equal to their masked run's (launch/sweep.py --matched_images: CAP x 16 /
# their batch) and stop by the same rule. Seeds 0-2 at n=64 ran before under another cap:
# their configs differ, so they run again (the kept result is replaced).
#
# Each finished run's result is copied to RESULTS/<run name>/ and, with COMMIT=1,
# committed at once; a run whose kept result matches its resolved config is skipped, so
# the command continues on any machine from the committed results.
SEEDS_FIRST=${SEEDS_FIRST-3,4,5,6,7}   # (set empty: none)
SEEDS_THEN=${SEEDS_THEN-0,1,2}
SEEDS_128=${SEEDS_128-0,1,2,3}
FACTOR=${FACTOR:-4}               # research.window_cap_factor.
# SAMPLER, SAMPLER_STEPS, SAMPLES, COMMIT=1 (commit each kept result), PYTHON: window_flags.sh.
set -euo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
RESULTS=${RESULTS:-$REPO/docs/results/memorization_window/runs}
ROOT=${1:-runs/window_decisive}
shift || true
cd "$REPO"
source launch/experiments/window_flags.sh

# one N SEED RATIO [sweep flags]: the runs of one setting (and its baselines) at one seed.
one() {
  local n=$1 seed=$2 ratio=$3
  shift 3
  case "$n" in
    64) CAP=40000; EVERY=400 ;;
    128) CAP=80000; EVERY=800 ;;
    *) echo "error: n=$n: no cap is chosen (64 or 128)" >&2; exit 2 ;;
  esac
  [ "$ratio" = 0.98 ] && CAP=$((4 * CAP))   # RATIO_098_CAP: 4x mask 0.9's
  window_cap "$CAP" "$EVERY" 0.5
  "$PYTHON" launch/sweep.py --root="$ROOT/n$n" --config=configs/digits.py \
    --results="$RESULTS" "${commit_flag[@]}" --matched_images \
    --set data.image_size=8 --set training.log_every=50 \
    "${SMALL_UNET[@]}" "${WINDOW_COMMON[@]}" "${WINDOW_CAP[@]}" \
    --set research.window_cap_factor="$FACTOR" \
    --grid data.num_train_examples="$n" --grid training.seed="$seed" \
    --grid mask.ratio="$ratio" "$@" \
    --headline pixel_memorized_fraction,digits_fd,digits_confidence,tau_gen_novel_digits_confidence,tau_mem_0.5 \
    --equal_quality '' \
    --title "digits 8x8, n=$n, cap $FACTOR x tau_gen: memorization window" "${EXTRA[@]}" || true
}
EXTRA=("$@")

for seed in ${SEEDS_FIRST//,/ } ${SEEDS_THEN//,/ }; do
  one 64 "$seed" 0
  one 64 "$seed" 0.9 --baseline batch_matched
done
for seed in ${SEEDS_THEN//,/ } ${SEEDS_FIRST//,/ }; do
  one 64 "$seed" 0.5 --baseline batch_matched
  one 64 "$seed" 0 --baseline dropout=0.1
done
for seed in ${SEEDS_128//,/ }; do
  one 128 "$seed" 0
  one 128 "$seed" 0.9 --baseline batch_matched
done
"$PYTHON" -m sparsediff_jax.sweeps.window_table --results="$RESULTS"
