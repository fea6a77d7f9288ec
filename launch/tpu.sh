#!/usr/bin/env bash
# Train sparsediff_jax on a Cloud TPU VM or a multi-host TPU pod slice (docs/launch.md).
#
# Usage: launch/tpu.sh COMMAND
#   create   get the TPU (a queued resource, or with QUEUED=0 a plain TPU VM) and wait for it
#   setup    copy this checkout to every worker, install Python 3.12, jax[tpu]==JAX_VERSION
#            and the project, and check the install on every worker (no TPU is touched)
#   check    start JAX on every worker (distributed first) and print the devices each sees
#   prepare  build the TFDS dataset TFDS_NAME into DATA_DIR, once, from worker 0
#   train    start training on every worker (detached), then stream worker 0's log
#   logs     stream worker 0's log again (Ctrl-C stops the stream, not the training)
#   stop     stop the training on every worker
#   delete   delete the TPU VM (or the queued resource and its VM)
#   --help   this text
#
# Settings, as environment variables [default]:
#   TPU_NAME [sparsediff]            name of the TPU VM
#   ACCELERATOR_TYPE [v4-8]          TPU type and size: v4-8, v5litepod-8, v5p-8, v6e-8, ...;
#                                    v4-32, v5litepod-16, v6e-16, ... are multi-host pods
#   ZONE [from the type]             v2: us-central1-b, v3: us-central1-a, v4: us-central2-b,
#                                    v5e: us-west4-a, v5p: us-east5-a, v6e: us-east5-b
#   RUNTIME_VERSION [from the type]  v2-v4: tpu-ubuntu2204-base, v5e: v2-alpha-tpuv5-lite,
#                                    v5p: v2-alpha-tpuv5, v6e: v2-alpha-tpuv6e
#   QUEUED [1 on v5e/v6e, else 0]    1: a queued resource (waits for capacity); 0: create the
#                                    TPU VM at once (fails when there is no capacity)
#   PROJECT [gcloud's default]       Google Cloud project
#   SPOT [0]                         1: spot capacity (cheaper; may be preempted)
#   JAX_VERSION [0.10.2]             the jax[tpu] release installed (the one CI tests)
#   COORDINATOR_PORT [JAX's: 8482]   pods: the port worker 0 coordinates on; set it (e.g. 8476)
#                                    where the network between workers opens only that port
#   CONFIG [configs/celeba.py]       config file, relative to the checkout
#   WORKDIR                          gs://BUCKET/runs/NAME (train; checkpoints resume here)
#   DATA_DIR                         gs://BUCKET/tensorflow_datasets (train, prepare)
#   TFDS_NAME [celeb_a]              the TFDS dataset that prepare builds
#   MANUAL_DIR                       prepare: a folder on worker 0 with the dataset's files,
#                                    when its download is refused (CelebA: a Drive quota)
#   EXTRA_FLAGS                      more flags for sparsediff_jax.main, split on spaces
#   DRY_RUN [0]                      1: print the commands instead of running them
set -euo pipefail

case "${1:-}" in -h|--help|help)   # the header above
  sed -n '2,/^set -euo pipefail/{/^set /d;s/^# \{0,1\}//;p;}' "${BASH_SOURCE[0]}"; exit 0 ;;
esac

die() { echo "error: $*" >&2; exit 2; }

TPU_NAME=${TPU_NAME:-sparsediff}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
# generation: default zone, runtime version, queued resources by default, hugepages
case "$ACCELERATOR_TYPE" in
  v2-*) defaults=(us-central1-b tpu-ubuntu2204-base 0 0) ;;
  v3-*) defaults=(us-central1-a tpu-ubuntu2204-base 0 0) ;;
  v4-*) defaults=(us-central2-b tpu-ubuntu2204-base 0 0) ;;
  v5litepod-*) defaults=(us-west4-a v2-alpha-tpuv5-lite 1 1) ;;
  v5p-*) defaults=(us-east5-a v2-alpha-tpuv5 0 1) ;;
  v6e-*) defaults=(us-east5-b v2-alpha-tpuv6e 1 1) ;;
  *) die "ACCELERATOR_TYPE=$ACCELERATOR_TYPE is not a TPU type this script knows; use" \
         "v2-N, v3-N, v4-N, v5litepod-N, v5p-N or v6e-N (e.g. v6e-8)" ;;
esac
ZONE=${ZONE:-${defaults[0]}}
RUNTIME_VERSION=${RUNTIME_VERSION:-${defaults[1]}}
QUEUED=${QUEUED:-${defaults[2]}}
HUGEPAGES=${defaults[3]}
JAX_VERSION=${JAX_VERSION:-0.10.2}
CONFIG=${CONFIG:-configs/celeba.py}
TFDS_NAME=${TFDS_NAME:-celeb_a}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# On every worker: ~/sparsediff/{code,venv,train.log,train.pid}.
REMOTE=sparsediff
# Pods: JAX >= 0.8.1 coordinates on port 8482 of worker 0; JAX_COORDINATOR_PORT moves it.
port_env=""
if [[ -n "${COORDINATOR_PORT:-}" ]]; then
  [[ "$COORDINATOR_PORT" =~ ^[0-9]+$ ]] || die "COORDINATOR_PORT=$COORDINATOR_PORT must be a port number, e.g. 8476"
  port_env="JAX_COORDINATOR_PORT=$COORDINATOR_PORT "
fi

common=(--zone="$ZONE")
if [[ -n "${PROJECT:-}" ]]; then common+=(--project="$PROJECT"); fi

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}
on_workers() {  # on_workers WORKER COMMAND: run COMMAND on worker WORKER (or all)
  run gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${common[@]}" --worker="$1" --command="$2"
}
need() { [[ -n "${!1:-}" ]] || die "set $1 (e.g. $1=$2)"; }

create() {
  local spot=()
  if [[ "${SPOT:-0}" == 1 ]]; then spot=(--spot); fi
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources create "$TPU_NAME" "${common[@]}" \
      --node-id="$TPU_NAME" --accelerator-type="$ACCELERATOR_TYPE" \
      --runtime-version="$RUNTIME_VERSION" "${spot[@]}"
    wait_until_active
  else
    run gcloud compute tpus tpu-vm create "$TPU_NAME" "${common[@]}" \
      --accelerator-type="$ACCELERATOR_TYPE" --version="$RUNTIME_VERSION" "${spot[@]}"
  fi
}

wait_until_active() {
  local describe=(gcloud compute tpus queued-resources describe "$TPU_NAME" "${common[@]}"
                  --format='value(state.state)')
  if [[ "${DRY_RUN:-0}" == 1 ]]; then run "${describe[@]}"; return; fi
  local state
  while true; do
    state=$("${describe[@]}")
    echo "queued resource $TPU_NAME: $state"
    case "$state" in
      ACTIVE) return ;;
      FAILED|SUSPENDED) die "queued resource $TPU_NAME is $state; see" \
                            "gcloud compute tpus queued-resources describe $TPU_NAME" ;;
    esac
    sleep 30
  done
}

setup() {
  staging=$(mktemp -d)
  trap 'rm -rf "$staging"' EXIT
  # The tracked files as they are now (uncommitted edits included): no .git, runs/ or venvs.
  git -C "$REPO_ROOT" ls-files -z > "$staging/files" \
    || die "setup copies the files of a git checkout and $REPO_ROOT is not one"
  run tar -C "$REPO_ROOT" --null -T "$staging/files" -czf "$staging/code.tar.gz"
  run gcloud compute tpus tpu-vm scp "$staging/code.tar.gz" "$TPU_NAME:$REMOTE-code.tar.gz" \
    "${common[@]}" --worker=all
  # jax needs Python >= 3.11 and the v2-v4 images ship 3.10: uv brings a Python 3.12.
  # The check only imports (jax, libtpu, the project): touching the TPU before
  # jax.distributed.initialize would hang every worker of a pod on the one that failed.
  # Transparent hugepages: what JAX asks for on v5e and newer (until the next reboot).
  local thp=""
  if [[ "$HUGEPAGES" == 1 ]]; then
    thp="echo always | sudo tee /sys/kernel/mm/transparent_hugepage/enabled > /dev/null"
  fi
  on_workers all "set -e
    ${thp}
    rm -rf ~/$REMOTE/code && mkdir -p ~/$REMOTE/code
    tar -xzf ~/$REMOTE-code.tar.gz -C ~/$REMOTE/code
    python3 -m pip install --user --quiet --upgrade uv
    ~/.local/bin/uv venv --quiet --allow-existing --python 3.12 ~/$REMOTE/venv
    ~/.local/bin/uv pip install --quiet --python ~/$REMOTE/venv/bin/python \
      'jax[tpu]==$JAX_VERSION' -e ~/$REMOTE/code'[tf]'
    ~/$REMOTE/venv/bin/python -c 'import socket, sys, jax, libtpu, sparsediff_jax
assert sys.version_info >= (3, 11), sys.version
print(socket.gethostname(), \"Python\", sys.version.split()[0], \"jax\", jax.__version__)'"
}

check() {
  # Every worker at once, distributed initialisation first; a worker that cannot start ends
  # with one error line within the timeout instead of holding the others.
  on_workers all "cd ~/$REMOTE/code && ${port_env}timeout 600 ../venv/bin/python -c 'from sparsediff_jax.runtime import distributed
print(distributed.initialize(timeout_s=300))
import jax
print(jax.process_index(), jax.local_devices())'"
}

prepare() {
  need DATA_DIR gs://BUCKET/tensorflow_datasets
  # ssh commands start in the home directory, so the path needs no ~.
  local args=("$TFDS_NAME" "--data_dir=$DATA_DIR")
  if [[ -n "${MANUAL_DIR:-}" ]]; then args+=("--manual_dir=$MANUAL_DIR"); fi
  on_workers 0 "$REMOTE/venv/bin/tfds build $(printf '%q ' "${args[@]}")"
}

train() {
  need WORKDIR gs://BUCKET/runs/celeba
  need DATA_DIR gs://BUCKET/tensorflow_datasets
  local extra=() main
  read -r -a extra <<< "${EXTRA_FLAGS:-}"
  # No distributed flags: on a TPU pod every worker finds the others by itself.
  main=$(printf '%q ' ../venv/bin/python -m sparsediff_jax.main "--config=$CONFIG" \
         "--workdir=$WORKDIR" "--config.data.data_dir=$DATA_DIR" "${extra[@]}")
  # setsid: the run outlives this ssh session; its process group id is in train.pid.
  on_workers all "cd ~/$REMOTE/code
    ${port_env}setsid nohup $main > ~/$REMOTE/train.log 2>&1 < /dev/null &
    echo \$! > ~/$REMOTE/train.pid"
  logs
}

logs() {
  on_workers 0 "tail -n +1 -F ~/$REMOTE/train.log"
}

stop() {
  on_workers all "if [ -f ~/$REMOTE/train.pid ]; then
      kill -- -\$(cat ~/$REMOTE/train.pid) 2>/dev/null || true
      rm ~/$REMOTE/train.pid
    fi"
}

delete() {
  if [[ "$QUEUED" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$TPU_NAME" "${common[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${common[@]}" --quiet
  fi
}

case "${1:-}" in
  create|setup|check|prepare|train|logs|stop|delete) "$1" ;;
  *) die "usage: launch/tpu.sh create|setup|check|prepare|train|logs|stop|delete (see the header" \
         "of launch/tpu.sh and docs/launch.md)" ;;
esac
