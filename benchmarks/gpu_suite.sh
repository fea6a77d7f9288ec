#!/usr/bin/env bash
# The benchmark suite for one accelerator (GPU or TPU chip), in under 8 minutes on an H100.
# Installs nothing from a network. Writes every table to one Markdown file.
#
#   bash benchmarks/gpu_suite.sh [OUTPUT.md] [WHEELHOUSE]
#
# OUTPUT.md defaults to $OUT/gpu_suite.md when $OUT is set, else benchmarks/gpu_suite.md.
# DRY_RUN=1 prints each benchmark command instead of running it.
# Needs what the default path imports: jax with the accelerator, flax, optax, orbax-checkpoint,
# ml-collections, etils, absl-py, pillow, scipy, tqdm (not clu, TensorFlow or TFDS: the input
# pipeline section runs only where tensorflow-datasets is installed). Where some are missing,
# one line names the wheels to bring; given WHEELHOUSE (a folder of those wheels, e.g. from
# `pip download -d WHEELHOUSE ml-collections`), they are installed from it with --no-index.
# DEPS_ONLY=1 runs that check alone.
#
# Sections (each also runs alone): train step of every config (images/s, MFU, memory, the
# mask ratio 0.98 / ratio 0 cost, timed and from XLA's cost analysis), each optimisation
# before/after on the CelebA config,
# sampling at 35 and 79 NFE (time to 50k samples), Inception features, input pipeline.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
OUTPUT=${1:-${OUT:+$OUT/gpu_suite.md}}
OUTPUT=${OUTPUT:-benchmarks/gpu_suite.md}
WHEELHOUSE=${2:-}
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export XLA_PYTHON_CLIENT_PREALLOCATE=false   # so the allocator's peak means something

# The wheels whose modules the default path imports and this Python cannot find.
missing=$("$PYTHON" - <<'EOF2'
import importlib.util
wheels = {'jax': 'jax', 'flax': 'flax', 'optax': 'optax', 'orbax.checkpoint': 'orbax-checkpoint',
          'ml_collections': 'ml-collections', 'etils.epath': 'etils[epath]', 'absl': 'absl-py',
          'PIL': 'pillow', 'scipy': 'scipy', 'tqdm': 'tqdm', 'numpy': 'numpy'}

def found(module):
  try:
    return importlib.util.find_spec(module) is not None
  except ImportError:   # a missing parent package
    return False

print(' '.join(wheel for module, wheel in wheels.items() if not found(module)))
EOF2
)
if [[ -n "$missing" && -n "$WHEELHOUSE" && "${DRY_RUN:-0}" != 1 ]]; then
  # shellcheck disable=SC2086   # one word per wheel
  "$PYTHON" -m pip install -q --no-index --find-links "$WHEELHOUSE" $missing || exit 1
elif [[ -n "$missing" && "${DRY_RUN:-0}" != 1 ]]; then
  echo "error: missing wheels: $missing; bring them (pip download -d WHEELHOUSE $missing," \
       "on a machine with network) and run: bash benchmarks/gpu_suite.sh OUTPUT.md WHEELHOUSE" >&2
  exit 2
fi
if [[ "${DEPS_ONLY:-0}" == 1 ]]; then
  echo "dependencies: all found"
  exit 0
fi
mkdir -p "$(dirname "$OUTPUT")"

section() {   # section TITLE SECONDS COMMAND...: runs COMMAND, its stdout into OUTPUT
  local title=$1 limit=$2
  shift 2
  if [[ "${DRY_RUN:-0}" == 1 ]]; then   # print the command instead (tests read it back)
    printf '%q ' "$@"
    echo
    return
  fi
  echo "== $title" >&2
  { echo; echo "## $title"; echo; echo "    ${*}"; echo; } >> "$OUTPUT"
  local start=$SECONDS
  if timeout "$limit" "$@" >> "$OUTPUT" 2> "$OUTPUT.log.tmp"; then
    echo "($((SECONDS - start)) s)" >> "$OUTPUT"
  else
    echo "(failed or timed out after $((SECONDS - start)) s; last lines of its log:)" >> "$OUTPUT"
    tail -n 5 "$OUTPUT.log.tmp" | sed 's/^/    /' >> "$OUTPUT"
  fi
  cat "$OUTPUT.log.tmp" >> "$OUTPUT.log"
  rm -f "$OUTPUT.log.tmp"
}

{
  echo "# sparsediff_jax benchmark suite"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo
  command -v nvidia-smi > /dev/null &&
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/    /'
  "$PYTHON" -c 'import jax; print("    jax", jax.__version__, jax.devices())'
} > "$OUTPUT"
: > "$OUTPUT.log"

T=${PYTHON}
section "Train step: CelebA 64x64" 150 \
  "$T" benchmarks/train_step.py --config=configs/celeba.py --batch_sizes=64,128,256 \
  --ratios=0,0.98 --steps=20 --rounds=3
section "Train step: CIFAR-10 32x32" 70 \
  "$T" benchmarks/train_step.py --config=configs/cifar10.py --batch_sizes=128,512 \
  --ratios=0,0.98 --steps=20 --rounds=3
section "Train step: shapes (embedded default)" 40 \
  "$T" benchmarks/train_step.py --batch_sizes=256 --ratios=0,0.98 --steps=20 --rounds=3
section "Mask cost in the compiled step (XLA cost analysis)" 60 \
  "$T" benchmarks/mask_cost.py --configs=shapes:256,cifar10:512,celeba:128
section "Optimisations, CelebA batch 128" 120 \
  "$T" benchmarks/optimizations.py --config=configs/celeba.py --batch=128 --steps=16 \
  --rounds=3 --scan=4
section "Sampling (CelebA, Heun 35 / 79 NFE) and Inception features" 90 \
  "$T" benchmarks/sampling_speed.py --batch=512 --repeats=2 --inception_batch=500 \
  --fid_features=0 --eval_samples=0
if "$T" -c 'import tensorflow, tensorflow_datasets' 2> /dev/null; then
  section "Input pipeline (CelebA, CIFAR-10 from TFDS records)" 60 \
    "$T" benchmarks/input_pipeline.py --repeats=2
else
  printf '\n## Input pipeline\n\nnot run: tensorflow / tensorflow-datasets missing here\n' \
    >> "$OUTPUT"
fi
echo "wrote $OUTPUT (logs: $OUTPUT.log)" >&2
