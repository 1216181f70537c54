#!/usr/bin/env bash
# Kept for old instructions: the launcher is launch/tpu_vm.py (python launch/tpu_vm.py --help).
#   launch/tpu_vm.sh create --name sw100 --zone us-central2-b --tpu-type v4-8 --spot
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
py="$here/../.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$here/tpu_vm.py" "$@"
