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
#   PYTHON [3.12]                    the Python (>= 3.11) that uv makes VENV with: a version
#                                    (uv fetches it; Ubuntu 22.04 ships 3.10) or a path
#   JAX_CUDA [auto]                  the jax extra: cuda13 (NVIDIA driver >= 580, GPU compute
#                                    capability >= 7.5), cuda12 (driver >= 525); auto: cuda13
#                                    where the driver and GPUs allow it, else cuda12
#   JAX_VERSION [0.10.2]             the jax release installed (the one CI tests)
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
PYTHON=${PYTHON:-3.12}
JAX_CUDA=${JAX_CUDA:-auto}
JAX_VERSION=${JAX_VERSION:-0.10.2}
CONFIG=${CONFIG:-configs/celeba.py}
WORKDIR=${WORKDIR:-runs/celeba}

die() { echo "error: $*" >&2; exit 2; }
run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# The CUDA extra the driver allows: sets JAX_CUDA, or says in one line what is missing.
check_driver() {
  command -v nvidia-smi > /dev/null ||
    die "no NVIDIA driver here (nvidia-smi not found): install driver >= 580 for jax[cuda13]" \
        "or >= 525 for jax[cuda12]"
  local rows driver sm
  rows=$(nvidia-smi --query-gpu=driver_version,compute_cap --format=csv,noheader) ||
    die "nvidia-smi cannot read the GPUs: is the NVIDIA driver loaded?"
  driver=$(head -n 1 <<< "$rows" | cut -d, -f1 | tr -d ' ' | cut -d. -f1)
  # The oldest GPU of the machine decides; 7.5 -> 75.
  sm=$(cut -d, -f2 <<< "$rows" | tr -d ' .' | sort -n | head -n 1)
  [[ "$driver" =~ ^[0-9]+$ && "$sm" =~ ^[0-9]+$ ]] ||
    die "cannot read the driver version and compute capability from nvidia-smi: $rows"
  if [[ "$JAX_CUDA" == auto ]]; then
    if (( driver >= 580 && sm >= 75 )); then JAX_CUDA=cuda13; else JAX_CUDA=cuda12; fi
  fi
  case "$JAX_CUDA" in
    cuda13)
      (( driver >= 580 )) || die "jax[cuda13] needs NVIDIA driver >= 580, this machine has" \
                                 "$driver: upgrade the driver or set JAX_CUDA=cuda12"
      (( sm >= 75 )) || die "jax[cuda13] needs GPUs of compute capability >= 7.5 (Turing)," \
                            "this machine has ${sm:0:-1}.${sm: -1}: set JAX_CUDA=cuda12" ;;
    cuda12)
      (( driver >= 525 )) || die "jax[cuda12] needs NVIDIA driver >= 525, this machine has" \
                                 "$driver: upgrade the driver" ;;
    *) die "JAX_CUDA=$JAX_CUDA: use auto, cuda13 or cuda12" ;;
  esac
}

# uv, which brings its own Python (no python3-venv, no system Python >= 3.11 needed).
find_uv() {
  if command -v uv > /dev/null; then UV=uv; return; fi
  if [[ -x "$HOME/.local/bin/uv" ]]; then UV="$HOME/.local/bin/uv"; return; fi
  python3 -m pip --version > /dev/null 2>&1 ||
    die "neither uv nor pip is installed: install uv (https://docs.astral.sh/uv/) or" \
        "python3-pip, then run launch/gpu.sh install again"
  run python3 -m pip install --user --quiet --upgrade uv
  UV="$HOME/.local/bin/uv"
}

install() {
  if [[ "$PYTHON" =~ ^3\.([0-9]+) ]] && (( BASH_REMATCH[1] < 11 )); then
    die "PYTHON=$PYTHON: the project needs Python >= 3.11 (e.g. PYTHON=3.12)"
  fi
  check_driver
  find_uv
  run "$UV" venv --quiet --allow-existing --python "$PYTHON" "$VENV"
  # One resolution for jax's CUDA build and the project, so the CUDA plugin stays installed.
  run "$UV" pip install --quiet --python "$VENV/bin/python" \
    "jax[$JAX_CUDA]==$JAX_VERSION" -e "${REPO_ROOT}[tf]"
  run "$VENV/bin/python" -c "import sys, jax
assert sys.version_info >= (3, 11), 'Python ' + sys.version
assert jax.default_backend() == 'gpu', 'jax sees no GPU: check the driver and JAX_CUDA'
print('Python', sys.version.split()[0], 'jax', jax.__version__, jax.devices())"
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
