#!/usr/bin/env bash
# Multi-process training on one machine: bash tools/dist_train.sh CONFIG NPROC [train.py args...]
# Uses gloo on CPU and nccl on GPU (tools/train.py picks). PORT overrides the rendezvous port,
# PYTHON the interpreter.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
PORT=${PORT:-29500}
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHONPATH="$HERE/..:${PYTHONPATH:-}" exec "${PYTHON:-python}" -m torch.distributed.run \
    --nnodes=1 --nproc_per_node="$NPROC" --master_addr=127.0.0.1 --master_port="$PORT" \
    "$HERE/train.py" "$CONFIG" --launcher pytorch "$@"
