#!/usr/bin/env bash
# Train sparsediff_jax on a machine with NVIDIA GPUs (docs/launch.md). One process drives all
# GPUs of the machine; for several machines run `train` on each with the three
# COORDINATOR_ADDRESS / NUM_PROCESSES / PROCESS_ID settings.
#
# Usage: launch/gpu.sh install               make VENV with jax[JAX_CUDA] and the project
#        launch/gpu.sh train [FLAG ...]      train; FLAGs go to sparsediff_jax.main
#        launch/gpu.sh --help                this text
#
# install makes VENV with uv where uv is installed (it brings Python PYTHON itself), else with
# `PYTHON -m venv` and pip inside it, which an "externally managed" system Python (Debian 12,
# Ubuntu 23.04+) allows. The project needs Python >= 3.11: where neither uv nor such a Python
# is here, it says so in one line (uv's standalone installer brings both).
#
# Settings, as environment variables [default]:
#   VENV [.venv-gpu]                 the virtual environment, relative to the checkout
#   PYTHON [3.12]                    the Python (>= 3.11) VENV is made with: a version (uv
#                                    fetches it; without uv, pythonX.Y or else python3 if it
#                                    is >= 3.11; Ubuntu 22.04 ships 3.10) or a path
#   JAX_CUDA [auto]                  the jax extra: cuda13 (NVIDIA driver >= 580, GPU compute
#                                    capability >= 7.5), cuda12 (driver >= 525); auto: cuda13
#                                    where the driver and GPUs allow it, else cuda12
#   JAX_VERSION [0.10.2]             the jax release installed (the one CI tests)
#   CONFIG [configs/celeba.py]       config file
#   WORKDIR [runs/celeba]            run directory, local or gs:// (checkpoints resume here)
#   DATA_DIR [TFDS default]          TFDS data_dir
#   COORDINATOR_ADDRESS, NUM_PROCESSES, PROCESS_ID   several machines: HOST:PORT of machine 0,
#                                    the number of machines, and this one (0..N-1)
#   DRY_RUN [0]                      1: print the commands instead of running them; where
#                                    nvidia-smi is missing, JAX_CUDA (cuda13 or cuda12) names
#                                    the GPUs' CUDA build, unchecked
set -euo pipefail

case "${1:-}" in -h|--help|help)   # the header above
  sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

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
  if ! command -v nvidia-smi > /dev/null && [[ "${DRY_RUN:-0}" == 1 ]]; then
    [[ "$JAX_CUDA" == cuda13 || "$JAX_CUDA" == cuda12 ]] ||
      die "DRY_RUN=1 without nvidia-smi: name the GPUs' CUDA build, JAX_CUDA=cuda13 (driver" \
          ">= 580) or JAX_CUDA=cuda12 (driver >= 525), to preview the install"
    echo "dry run: no nvidia-smi here; previewing JAX_CUDA=$JAX_CUDA, unchecked" >&2
    return
  fi
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

# uv, which brings its own Python (no python3-venv, no system Python >= 3.11 needed): sets UV,
# or leaves it empty where uv is not installed.
find_uv() {
  UV=$(command -v uv || true)
  if [[ -z "$UV" && -x "$HOME/.local/bin/uv" ]]; then UV="$HOME/.local/bin/uv"; fi
}

# Without uv: the Python that makes VENV (PYTHON as a path, pythonX.Y, else python3), which
# must be >= 3.11. Sets PY or says in one line what to install.
find_python() {
  local candidates=("$PYTHON") version
  if [[ "$PYTHON" != */* ]]; then candidates=("python$PYTHON" python3); fi
  for PY in "${candidates[@]}"; do
    version=$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null) ||
      continue
    if [[ "$version" =~ ^3\.([0-9]+)$ ]] && (( BASH_REMATCH[1] >= 11 )); then return; fi
    die "no uv here, and $PY is Python $version: the project needs Python >= 3.11. Install" \
        "uv (curl -LsSf https://astral.sh/uv/install.sh | sh), which brings Python $PYTHON," \
        "or a Python >= 3.11, then run launch/gpu.sh install again"
  done
  die "no uv and no ${candidates[*]} here: install uv (curl -LsSf" \
      "https://astral.sh/uv/install.sh | sh) or Python >= 3.11, then run launch/gpu.sh install" \
      "again"
}

install() {
  if [[ "$PYTHON" =~ ^3\.([0-9]+) ]] && (( BASH_REMATCH[1] < 11 )); then
    die "PYTHON=$PYTHON: the project needs Python >= 3.11 (e.g. PYTHON=3.12)"
  fi
  check_driver
  find_uv
  # One resolution for jax's CUDA build and the project, so the CUDA plugin stays installed.
  local packages=("jax[$JAX_CUDA]==$JAX_VERSION" -e "${REPO_ROOT}[tf]")
  if [[ -n "$UV" ]]; then
    run "$UV" venv --quiet --allow-existing --python "$PYTHON" "$VENV"
    run "$UV" pip install --quiet --python "$VENV/bin/python" "${packages[@]}"
  else
    find_python
    if [[ ! -x "$VENV/bin/python" ]]; then
      # Debian and Ubuntu split venv's pip out into pythonX.Y-venv.
      run "$PY" -m venv "$VENV" ||
        die "$PY -m venv failed: install the venv module (Debian, Ubuntu: apt install" \
            "python3-venv, or pythonX.Y-venv for that version) or uv, then run" \
            "launch/gpu.sh install again"
    fi
    run "$VENV/bin/python" -m pip install --quiet "${packages[@]}"
  fi
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
