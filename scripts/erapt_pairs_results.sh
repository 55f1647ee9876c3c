#!/usr/bin/env bash
# ER-APT (our defaults) vs FAP, FAP at equal compute (4 PGD steps), zero-shot and the two ablations on
# the tiny CLIP pre-trained on digits_pairs, base-to-new 50 + 50 classes (issues 12 and 13):
#   bash scripts/erapt_pairs_results.sh [OUT] [SEEDS]
# 16 shots of the 50 base classes, 2 epochs (200 steps; the warm start needs a second visit), natural
# and PGD-10 (ε = 1/255, 4/255, step 1/255) on a fixed seeded subset of 1,000 test images per side.
# Two processes (one thread each), split by method; each half is resumable. Tables: OUT/{a,b}/table.md.
set -euo pipefail
OUT=${1:-runs/erapt_pairs}
SEEDS=${2:-1,2,3}
RT=${ROBUSTUNE:-.venv/bin/robustune}  # may be a command line, e.g. "nice -n 10 python -m robustune.cli"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
common=(--datasets digits_pairs --seeds "$SEEDS" --settings base2new --eps 1/255,4/255 --pgd-steps 10
        --n-eval 1000 --set train.epochs=2)
$RT fewshot configs/clip_tiny_digits_pairs_fap.yaml "${common[@]}" --out "$OUT/a" \
  --methods zeroshot,configs/clip_tiny_digits_pairs_fap.yaml,configs/clip_tiny_digits_pairs_erapt.yaml &
$RT fewshot configs/clip_tiny_digits_pairs_fap.yaml "${common[@]}" --out "$OUT/b" \
  --methods configs/clip_tiny_digits_pairs_fap_eqcompute.yaml,configs/clip_tiny_digits_pairs_erapt_noevo.yaml,configs/clip_tiny_digits_pairs_erapt_fixed.yaml &
wait
echo "tables: $OUT/a/table.md $OUT/b/table.md"
