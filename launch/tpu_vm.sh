#!/usr/bin/env bash
# Train Swahili-100 on a Cloud TPU VM slice (v4-8 / v5e-8 are single-host; v4-32+ are multi-host).
#
#   ZONE=us-central2-b TPU=swahili100 TYPE=v4-8 BUCKET=gs://my-bucket ./launch/tpu_vm.sh create
#   ... ./launch/tpu_vm.sh setup      # clone + install on every worker
#   ... ./launch/tpu_vm.sh train      # run configs/swahili_base.py on every worker
#   ... ./launch/tpu_vm.sh tail       # follow logs/training.jsonl on worker 0
#   ... ./launch/tpu_vm.sh delete
#
# Preemption: spot/preemptible VMs get SIGTERM; the trainer saves at the next step and exits 0.
# Re-running `train` resumes from the latest checkpoint in the workdir automatically.
# Multi-host: --config.mesh.distributed=True makes every worker call jax.distributed.initialize().
set -euo pipefail
: "${ZONE:?set ZONE}" "${TPU:?set TPU (the VM name)}"
TYPE=${TYPE:-v4-8}
VERSION=${VERSION:-tpu-ubuntu2204-base}
REPO=${REPO:-https://github.com/swahili100/swahili100.git}
WORKDIR=${WORKDIR:-${BUCKET:-$HOME}/runs/swahili_base}
RECORDS=${RECORDS:-${BUCKET:-$HOME}/data/processed}
TOKENIZER=${TOKENIZER:-${BUCKET:-$HOME}/tokenizer/swahili_bpe.json}
ssh_all() { gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=all --command "$1"; }

case "${1:-}" in
  create) gcloud compute tpus tpu-vm create "$TPU" --zone "$ZONE" --accelerator-type "$TYPE" \
            --version "$VERSION" ${SPOT:+--spot} ;;
  setup)  ssh_all "test -d swahili100 || git clone $REPO swahili100; cd swahili100 && \
            python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'" ;;
  train)  ssh_all "cd swahili100 && nohup .venv/bin/swahili100 train \
            --config configs/swahili_base.py --workdir $WORKDIR \
            --config.data.records_dir=$RECORDS --config.data.tokenizer=$TOKENIZER \
            --config.mesh.distributed=$([ "${TYPE#*-}" -gt 8 ] && echo True || echo False) \
            > train.log 2>&1 &" ;;
  tail)   gcloud compute tpus tpu-vm ssh "$TPU" --zone "$ZONE" --worker=0 \
            --command "tail -f $WORKDIR/logs/training.jsonl" ;;
  delete) gcloud compute tpus tpu-vm delete "$TPU" --zone "$ZONE" --quiet ;;
  *) echo "usage: $0 create|setup|train|tail|delete" >&2; exit 2 ;;
esac
