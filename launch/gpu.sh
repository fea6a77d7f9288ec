#!/usr/bin/env bash
# Train sparsediff_jax on a machine with NVIDIA GPUs (docs/launch.md). One process drives all
# GPUs of the machine; for several machines run `train` on each with the three
# COORDINATOR_ADDRESS / NUM_PROCESSES / PROCESS_ID settings.
#
# Usage: launch/gpu.sh install               make VENV with jax[JAX_CUDA] and the project
#        launch/gpu.sh train [FLAG ...]      train; FLAGs go to sparsediff_jax.main
#
# Settings, as environment variables [default]:
#   VENV [.venv-gpu]                 the virtual environment, relative to the checkout
#   PYTHON [python3]                 the Python (>= 3.11) that makes VENV
#   JAX_CUDA [cuda12]                the jax extra: cuda12 or cuda13 (match the driver)
#   CONFIG [configs/celeba.py]       config file
#   WORKDIR [runs/celeba]            run directory, local or gs:// (checkpoints resume here)
#   DATA_DIR [TFDS default]          TFDS data_dir
#   COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID   several machines: HOST:PORT of machine 0,
#                                    the number of machines, and this one (0..N-1)
#   DRY_RUN [0]                      1: print the commands instead of running them
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-.venv-gpu}
case "$VENV" in /*) ;; *) VENV="$REPO_ROOT/$VENV" ;; esac
PYTHON=${PYTHON:-python3}
JAX_CUDA=${JAX_CUDA:-cuda12}
CONFIG=${CONFIG:-configs/celeba.py}
WORKDIR=${WORKDIR:-runs/celeba}

die() { echo "error: $*" >&2; exit 2; }
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

install() {
  if command -v nvidia-smi > /dev/null; then nvidia-smi -L; fi
  run "$PYTHON" -m venv "$VENV"
  run "$VENV/bin/pip" install --quiet --upgrade pip
  run "$VENV/bin/pip" install --quiet -e "$REPO_ROOT[tf]"
  # After the project, so that the CUDA build of jaxlib's plugin is what stays installed.
  run "$VENV/bin/pip" install --quiet --upgrade "jax[$JAX_CUDA]"
  run "$VENV/bin/python" -c "import jax
assert jax.default_backend() == 'gpu', 'jax sees no GPU: check the driver and JAX_CUDA'
print(jax.devices())"
}

train() {
  local flags=("--config=$CONFIG" "--workdir=$WORKDIR")
  if [[ -n "${DATA_DIR:-}" ]]; then flags+=("--config.data.data_dir=$DATA_DIR"); fi
  # Several machines; the CLI says which of the three is missing if not all are set.
  if [[ -n "${COORDINATOR_ADDRESS:-}" ]]; then
    flags+=("--coordinator_address=$COORDINATOR_ADDRESS")
  fi
  if [[ -n "${NUM_PROCESSES:-}" ]]; then flags+=("--num_processes=$NUM_PROCESSES"); fi
  if [[ -n "${PROCESS_ID:-}" ]]; then flags+=("--process_id=$PROCESS_ID"); fi
  [[ -x "$VENV/bin/python" || "${DRY_RUN:-0}" == 1 ]] || die "no $VENV; run launch/gpu.sh install"
  cd "$REPO_ROOT"
  run "$VENV/bin/python" -m sparsediff_jax.main "${flags[@]}" "$@"
}

case "${1:-}" in
  install) install ;;
  train) shift; train "$@" ;;
  *) die "usage: launch/gpu.sh install | train [FLAG ...] (see the header of launch/gpu.sh)" ;;
esac
