#!/usr/bin/env bash
# ER-APT (our defaults) vs FAP, FAP at equal compute, zero-shot and the two ablations on the tiny CLIP,
# digits base-to-new, seeds 1-5 — the one command behind the ER-APT table of docs/results.md:
#   bash scripts/erapt_results.sh [OUT]
# Each method is its preset (configs/clip_tiny_digits_*.yaml, FAP's recipe scaled to the tiny CLIP,
# training ε = 4/255), trained 16-shot on the base classes 0-4 for 5 epochs (50 steps), evaluated
# natural and PGD-10 (ε = 1/255 and 4/255, step 1/255) on base and new classes. Resumable.
# One thread per process (OMP_NUM_THREADS=1): on the shared 2-core machine 2 threads ran ~10x slower.
set -euo pipefail
OUT=${1:-runs/erapt_results}
RT=${ROBUSTUNE:-.venv/bin/robustune}  # may be a command line, e.g. "nice -n 10 python -m robustune.cli"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
$RT fewshot configs/clip_tiny_digits_fap.yaml --datasets digits --seeds 1,2,3,4,5 --settings base2new \
  --methods zeroshot,configs/clip_tiny_digits_fap.yaml,configs/clip_tiny_digits_fap_eqcompute.yaml,configs/clip_tiny_digits_erapt.yaml,configs/clip_tiny_digits_erapt_noevo.yaml,configs/clip_tiny_digits_erapt_fixed.yaml \
  --eps 1/255,4/255 --pgd-steps 10 --set train.epochs=5 --out "$OUT"
echo "table: $OUT/table.md"
