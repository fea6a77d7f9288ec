#!/usr/bin/env bash
# Train sparsediff_jax on a Cloud TPU VM or a multi-host TPU pod slice (docs/launch.md).
#
# Usage: launch/tpu.sh COMMAND
#   create   create the TPU VM (or, with QUEUED=1, a queued resource) and wait until ready
#   setup    copy this checkout to every worker, install Python 3.12, jax[tpu] and the project
#   prepare  build the TFDS dataset TFDS_NAME into DATA_DIR, once, from worker 0
#   train    start training on every worker (detached), then stream worker 0's log
#   logs     stream worker 0's log again (Ctrl-C stops the stream, not the training)
#   stop     stop the training on every worker
#   delete   delete the TPU VM (or the queued resource and its VM)
#
# Settings, as environment variables [default]:
#   TPU_NAME [sparsediff]            name of the TPU VM
#   ZONE [us-central2-b]             a zone that has ACCELERATOR_TYPE
#   PROJECT [gcloud's default]       Google Cloud project
#   ACCELERATOR_TYPE [v4-8]          TPU type and size; v4-32, v5litepod-16, ... are pods
#   RUNTIME_VERSION [tpu-ubuntu2204-base]  the VM image (v5e: v2-alpha-tpuv5-lite)
#   QUEUED [0]                       1: ask for the TPU through a queued resource
#   SPOT [0]                         1: spot capacity (cheaper; may be preempted)
#   CONFIG [configs/celeba.py]       config file, relative to the checkout
#   WORKDIR                          gs://BUCKET/runs/NAME (train; checkpoints resume here)
#   DATA_DIR                         gs://BUCKET/tensorflow_datasets (train, prepare)
#   TFDS_NAME [celeb_a]              the TFDS dataset that prepare builds
#   MANUAL_DIR                       prepare: a folder on worker 0 with the dataset's files,
#                                    when its download is refused (CelebA: a Drive quota)
#   EXTRA_FLAGS                      more flags for sparsediff_jax.main, split on spaces
#   DRY_RUN [0]                      1: print the commands instead of running them
set -euo pipefail

TPU_NAME=${TPU_NAME:-sparsediff}
ZONE=${ZONE:-us-central2-b}
ACCELERATOR_TYPE=${ACCELERATOR_TYPE:-v4-8}
RUNTIME_VERSION=${RUNTIME_VERSION:-tpu-ubuntu2204-base}
CONFIG=${CONFIG:-configs/celeba.py}
TFDS_NAME=${TFDS_NAME:-celeb_a}
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# On every worker: ~/sparsediff/{code,venv,train.log,train.pid}.
REMOTE=sparsediff

common=(--zone="$ZONE")
if [[ -n "${PROJECT:-}" ]]; then common+=(--project="$PROJECT"); fi

die() { echo "error: $*" >&2; exit 2; }
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
  if [[ "${QUEUED:-0}" == 1 ]]; then
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
  # jax needs Python >= 3.11 and the TPU images ship 3.10: uv brings a Python 3.12.
  on_workers all "set -e
    rm -rf ~/$REMOTE/code && mkdir -p ~/$REMOTE/code
    tar -xzf ~/$REMOTE-code.tar.gz -C ~/$REMOTE/code
    python3 -m pip install --user --quiet --upgrade uv
    ~/.local/bin/uv venv --quiet --allow-existing --python 3.12 ~/$REMOTE/venv
    ~/.local/bin/uv pip install --quiet --python ~/$REMOTE/venv/bin/python \
      -U 'jax[tpu]' -e ~/$REMOTE/code'[tf]'
    ~/$REMOTE/venv/bin/python -c 'import jax; print(jax.local_devices())'"
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
    setsid nohup $main > ~/$REMOTE/train.log 2>&1 < /dev/null &
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
  if [[ "${QUEUED:-0}" == 1 ]]; then
    run gcloud compute tpus queued-resources delete "$TPU_NAME" "${common[@]}" --force --quiet
  else
    run gcloud compute tpus tpu-vm delete "$TPU_NAME" "${common[@]}" --quiet
  fi
}

case "${1:-}" in
  create|setup|prepare|train|logs|stop|delete) "$1" ;;
  *) die "usage: launch/tpu.sh create|setup|prepare|train|logs|stop|delete (see the header" \
         "of launch/tpu.sh and docs/launch.md)" ;;
esac
