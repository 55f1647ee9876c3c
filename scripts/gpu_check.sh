#!/usr/bin/env bash
# Prepare the GPU machine (no network) and run benchmarks/gpu_check.py, writing $OUT/gpu_check.json.
#
#   bash scripts/gpu_check.sh --download   # here: fetch the cp312 wheels of scripts/gpu_wheels.txt into wheels/
#   bash scripts/gpu_check.sh              # there (device tool, carry ["wheels"]): install what is missing, run
#
# Wheels are installed with `pip install --no-index --no-deps` only for modules that do not import
# there (the machine's own torch / torchvision / timm are kept), then the project with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=scripts/gpu_wheels.txt
PY=${PYTHON:-python3}
specs() { grep -v '^#' "$LIST" | awk 'NF {print $1}'; }

if [[ "${1:-}" == "--download" ]]; then
  mkdir -p wheels
  PIPBIN=${PIP:-.venv/bin/pip}
  # binary wheels for the GPU machine's python 3.12 on x86-64 Linux, pure-python ones as they come
  $PIPBIN download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform any -d wheels $(specs)
  ls wheels | wc -l
  exit 0
fi

OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
missing=()
while read -r spec module; do
  [[ -z "$spec" || "$spec" == \#* ]] && continue
  $PY -c "import $module" 2>/dev/null || missing+=("$spec")
done < "$LIST"
if ((${#missing[@]})); then
  echo "installing ${#missing[@]} wheel(s): ${missing[*]}"
  $PY -m pip install --no-index --no-deps --find-links wheels "${missing[@]}"
fi
$PY -m pip install --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 \
  || echo "pip install -e . failed (offline build backend?); running from the source tree"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$PY benchmarks/gpu_check.py --json "$OUT/gpu_check.json" "$@" 2>&1 | tee "$OUT/gpu_check.log"
