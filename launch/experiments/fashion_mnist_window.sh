#!/usr/bin/env bash
# The memorization window on Fashion-MNIST (docs/results/fashion_mnist_window/): does the
# digits answer (docs/results/memorization_window/) hold on real garments? 16x16, n=N
# class-balanced training images (the regime of docs/results/fashion_mnist_regime.md);
# dense, mask 0.9, the batch-matched dense loss of 0.9 (batch 2), dense + dropout 0.1;
# seeds 0, 1, 2: 12 runs, all four settings of seed 0 first, then seed 1, then seed 2.
# Every run is scored WHILE it trains (research.window_every) and stops once 90% of its
# samples are memorized (research.window_stop=0.9), else at its cap: at n=16 the dense loss
# memorizes half its samples before its samples reach the confidence target (the regime),
# so a stop at 0.5 would censor its tau_gen.
#
#   bash launch/experiments/fashion_mnist_window.sh [ROOT] [more launch/sweep.py flags]
#
# Each finished run's result (research_metrics.json, config.json, window trajectory, grid at
# tau_gen) is copied to RESULTS/<run name>/ and, with COMMIT=1, committed at once; a run
# whose kept result matches its resolved config is skipped, so the command continues on any
# machine from the committed results. Then the tables and figures are rebuilt from RESULTS
# alone: python -m sparsediff_jax.sweeps.window_table --results=RESULTS.
#
# Cap and spacing: the dense tau_mem(0.5) at n=16, 16x16 is about 880 steps
# (fashion_mnist_regime.md); the cap of 3600 is 4x that, so a run that does not memorize
# trains at least 4x as long as the dense one needed; scoring every 200 steps resolves the
# dense onset.
N=${N:-16}                        # class-balanced training images.
CAP=${CAP:-3600}                  # training.num_steps of every run.
STOP=${STOP:-0.9}                 # research.window_stop.
EVERY=${EVERY:-200}               # research.window_every (and the checkpoint spacing).
SEEDS=${SEEDS:-0,1,2}             # run in this order, all four settings of a seed together.
# Caps per run (research.window_cap_factor; 0 = the fixed CAP above, as the committed n=16
# runs): with CAP_FACTOR=4 a run stops once its tau_gen (novel_fashion_mnist_confidence
# >= 0.66, copy-proof: metrics/window.py) and STOP are reached, or at 4x its own tau_gen;
# CAP then bounds only runs that never reach quality, and the batch-matched control may see
# as many images as its masked run (launch/sweep.py --matched_images). The decisive
# Fashion-MNIST runs, where quality precedes memorization (fashion_mnist_regime.md):
#   COMMIT=1 N=64 CAP=40000 EVERY=400 STOP=0.5 CAP_FACTOR=4 SEEDS=0,1,2,3,4,5,6,7 \
#     bash launch/experiments/fashion_mnist_window.sh runs/fashion_mnist_window64
CAP_FACTOR=${CAP_FACTOR:-0}
# SAMPLER, SAMPLER_STEPS, SAMPLES, COMMIT=1 (commit each kept result), PYTHON: window_flags.sh.
set -euo pipefail
REPO=${REPO:-$(cd "$(dirname "$0")/../.." && pwd)}
RESULTS=${RESULTS:-$REPO/docs/results/fashion_mnist_window/runs}
ROOT=${1:-runs/fashion_mnist_window}
shift || true
cd "$REPO"
source launch/experiments/window_flags.sh
window_cap "$CAP" "$EVERY" "$STOP"
per_run=()
[ "$CAP_FACTOR" != 0 ] && per_run=(--matched_images --set research.window_cap_factor="$CAP_FACTOR")

for seed in ${SEEDS//,/ }; do
  "$PYTHON" launch/sweep.py --root="$ROOT/n$N" --config=configs/fashion_mnist.py \
    --results="$RESULTS" "${commit_flag[@]}" \
    --set data.image_size=16 --set data.class_balanced=True --set training.log_every=100 \
    "${SMALL_UNET[@]}" "${WINDOW_COMMON[@]}" "${WINDOW_CAP[@]}" "${per_run[@]}" \
    --grid data.num_train_examples="$N" --grid training.seed="$seed" \
    --grid mask.ratio=0,0.9 --baseline batch_matched --baseline dropout=0.1 \
    --headline pixel_memorized_fraction,fashion_mnist_fd,fashion_mnist_confidence,tau_gen_fashion_mnist_confidence,tau_mem_0.5 \
    --equal_quality '' \
    --title "Fashion-MNIST 16x16, n=$N, cap $CAP steps: memorization window" "$@" || true
done
if [ -d "$RESULTS" ]; then
  # The headline target (confidence 0.66, 0.9x real garments), and 0.8x (0.59), which the
  # dense loss reaches before it has copied 90% of its samples at n=16 (README.md there).
  "$PYTHON" -m sparsediff_jax.sweeps.window_table --results="$RESULTS" --planned=12 \
    --command=launch/experiments/fashion_mnist_window.sh
  "$PYTHON" -m sparsediff_jax.sweeps.window_table --results="$RESULTS" --planned=12 \
    --command=launch/experiments/fashion_mnist_window.sh \
    --quality=fashion_mnist_confidence=0.59 --out="$RESULTS/../confidence_0.8x"
fi
# Rows of kept samples (same noise) per run of this machine's ROOT, for the README.
"$PYTHON" benchmarks/window_sample_grids.py --root="$ROOT/n$N" --out="$RESULTS/../grids" \
  --steps=400,1000,2000