#!/usr/bin/env bash
# ER-APT (our defaults) vs FAP, FAP at equal compute (8 PGD steps), zero-shot, CoOp (clean prompt tuning) and the
# two ablations on the tiny CLIP pre-trained on digits_pairs, base-to-new 50 + 50 classes (issues 12, 13, 20):
#   bash scripts/erapt_pairs_results.sh [OUT] [SEEDS]      → OUT/table/table.md
#   (JOBS=N: method groups run at once, default 2 — one thread each)
# 16 shots of the 50 base classes, 2 epochs (200 steps; the warm start needs a second visit), natural
# and PGD-10 (ε = 1/255, 4/255, step 1/255) on all 1,500 test images per side. One process per method group
# (one thread each, at most JOBS at once; each resumable) into OUT/{a..f}, then AutoAttack (standard, 1/255)
# on a fixed subset of AA_N images per side for the seeds in AA_SEEDS (default 50 and seed 1: ≈ 9 CPU-min per
# cell) by scripts/erapt_pairs_autoattack.py, and scripts/erapt_pairs_table.py merges them into one table.
set -euo pipefail
OUT=${1:-runs/erapt_pairs}
SEEDS=${2:-1,2,3,4,5}
RT=${ROBUSTUNE:-.venv/bin/robustune}  # may be a command line, e.g. "nice -n 10 python -m robustune.cli"
PY=${PYTHON:-.venv/bin/python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(--datasets digits_pairs --seeds "$SEEDS" --settings base2new --eps 1/255,4/255 --pgd-steps 10
        --set train.epochs=2)
run() { $RT fewshot configs/clip_tiny_digits_pairs_fap.yaml "${common[@]}" --out "$OUT/$1" --methods "$2"; }
JOBS=${JOBS:-2}
groups=("a zeroshot,configs/clip_tiny_digits_pairs_fap.yaml" "d configs/clip_tiny_digits_pairs_erapt.yaml"
        "b configs/clip_tiny_digits_pairs_fap_eqcompute.yaml" "c configs/clip_tiny_digits_pairs_erapt_fixed.yaml"
        "e configs/clip_tiny_digits_pairs_erapt_noevo.yaml" "f configs/clip_tiny_digits_pairs_coop.yaml")
for g in "${groups[@]}"; do
  while (( $(jobs -rp | wc -l) >= JOBS )); do wait -n; done
  run $g &
done
wait
$PY scripts/erapt_pairs_autoattack.py "$OUT" --n "${AA_N:-50}" --seeds "${AA_SEEDS:-1}"
$PY scripts/erapt_pairs_table.py "$OUT"
