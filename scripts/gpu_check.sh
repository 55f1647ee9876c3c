#!/usr/bin/env bash
# Prepare the GPU machine (no network) and run benchmarks/gpu_check.py, writing $OUT/gpu_check.json.
#
#   bash scripts/gpu_check.sh --download        # here: fetch the cp312 wheels the GPU machine lacks into wheels/
#   bash scripts/gpu_check.sh --download all    # here: every wheel of the list (for a machine with less on it)
#   bash scripts/gpu_check.sh [gpu_check args]  # there (device tool, carry ["wheels"]): install what is missing, run
#
# The list is scripts/gpu_wheels.txt; lines marked `on-device` name packages the device image holds
# (the library's KINDS.md, 2026-11-17), which --download skips. There, a wheel is installed only for a
# module that does not import (the machine's own torch / torchvision / timm / numpy are kept), with
# `pip install --no-index --no-deps --target $SITE` (default /tmp/robustune-site), and the project
# runs from the source tree on PYTHONPATH (no build step, no network). Variables: PYTHON (python3),
# WHEELS (wheels), PYVER (3.12, for --download), OUT (./gpu_check_out), SITE.
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=scripts/gpu_wheels.txt
PY=${PYTHON:-python3}
WHEELS=${WHEELS:-wheels}
entries() { grep -v '^#' "$LIST" | awk 'NF'; }

if [[ "${1:-}" == "--download" ]]; then
  if [[ "${2:-}" == "all" ]]; then specs=$(entries | awk '{print $1}'); else specs=$(entries | awk '$3 != "on-device" {print $1}'); fi
  mkdir -p "$WHEELS"
  PIPBIN=${PIP:-.venv/bin/pip}
  tags=(); for t in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
      manylinux2014_x86_64 manylinux1_x86_64 any; do tags+=(--platform "$t"); done
  # binary wheels for the GPU machine's python on x86-64 Linux, pure-python ones as they come
  $PIPBIN download -q --no-deps --only-binary=:all: --python-version "${PYVER:-3.12}" --implementation cp \
    "${tags[@]}" -d "$WHEELS" $specs
  echo "$(ls "$WHEELS" | wc -l) wheel(s) in $WHEELS/, $(du -sh "$WHEELS" | cut -f1) (the device tool carries at most 64 MiB with the tree)"
  exit 0
fi

export PYTHONUNBUFFERED=1 TQDM_DISABLE=1  # progress bars would fill the output tail the device tool returns
OUT=${OUT:-$PWD/gpu_check_out}
SITE=${SITE:-/tmp/robustune-site}
mkdir -p "$OUT"
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
missing=()
while read -r spec module _; do
  $PY -c "import $module" 2>/dev/null || missing+=("$spec")
done < <(entries)
if ((${#missing[@]})); then
  files=()
  for spec in "${missing[@]}"; do
    name=${spec%%==*}; version=${spec#*==}
    found=$(ls "$WHEELS"/ 2>/dev/null | grep -i -E "^${name//[-_]/[-_]}-${version}-.*\.whl$" | head -1 || true)
    if [[ -z "$found" ]]; then
      echo "gpu_check.sh: no wheel for $spec in $WHEELS/ -- run 'bash scripts/gpu_check.sh --download' (or '--download all' where the machine lacks packages marked on-device) where pip works, and carry $WHEELS" >&2
      exit 2
    fi
    files+=("$WHEELS/$found")
  done
  echo "installing ${#files[@]} wheel(s) into $SITE: ${missing[*]}"
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "${files[@]}"
fi
$PY -c "import torch, torchvision, timm; print('torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'cuda', torch.cuda.is_available())"
set -o pipefail
$PY benchmarks/gpu_check.py --json "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
