#!/usr/bin/env bash
# One command for an accelerator: bench/accelerator.py on a lent H100/H200, in one device call.
#
#   bench/accelerator.sh prepare   here (needs the package index): the wheels the device image
#                                  lacks, for Python 3.12 x86-64, into .whl/ (git-ignored)
#   bench/accelerator.sh run [--reps N --config.k=v ...]
#                                  there: installs .whl/ into /tmp/site, runs the bench with the
#                                  image's python3; the JSON goes to $OUT/accelerator.json, the
#                                  whole output to $OUT/accelerator.log
#
# The device call (the tool's `run`, ~5 minutes of device time; docs/benchmarks.md):
#   command "bash bench/accelerator.sh run", carry [".whl"], timeout_s 540
#
# Wheels (/work/.library/device/README.md, Notes): the image holds jax, flax, optax, orbax,
# tokenizers, etils, absl, pyyaml, psutil, protobuf, but not the pins of pyproject.toml below
# nor grain's portpicker (`unzip -p .whl/NAME-*.whl '*/METADATA' | grep ^Requires-Dist`).
# The bench itself imports only ml_collections of them; grain and array_record make the rest of
# swahili100 importable there too. Its JAX is the image's (0.11.2 when read), not our 0.10.2.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=(grain==0.2.18 array_record==0.8.6 ml_collections==1.1.0 portpicker==1.6.0)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64)

prepare() {
  local py=${PYTHON:-python3}
  [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && py=.venv/bin/python
  git check-ignore -q .whl/x 2>/dev/null || echo /.whl/ >> "$(git rev-parse --git-path info/exclude)"
  mkdir -p .whl
  # one version of each name: two stop the device's install
  for spec in "${WHEELS[@]}"; do
    rm -f .whl/"${spec%%==*}"-*.whl
  done
  "$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${PLATFORMS[@]/#/--platform=}" -d .whl "${WHEELS[@]}"
  ls -l .whl
}

run() {
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  export PYTHONUNBUFFERED=1
  # XLA's GPU client takes 75 % of the memory by default; the 64 x 2048 step wants more of an H100
  export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.92}
  local out=${OUT:-.}
  nvidia-smi -L 2>/dev/null || true
  python3 bench/accelerator.py --json "$out/accelerator.json" "$@" 2>&1 \
    | tee "$out/accelerator.log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) shift; run "$@" ;;
  *) echo "usage: $0 prepare | run [bench/accelerator.py flags]" >&2; exit 2 ;;
esac
