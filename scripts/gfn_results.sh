#!/usr/bin/env bash
# GFN on digits, Table-3 style, 3 seeds — the one command behind docs/results.md:
#   bash scripts/gfn_results.sh [OUT=runs/gfn_results]
# 1. the ERM "pre-trained" model (configs/erm_digits.yaml; reused if present),
# 2. digits-C (15 corruptions x severities 1,3,5 of the test split; reused if present),
# 3. the grid: no fine-tuning / Adv. / Nbr. / GFN with each loss reading, seeds 0,1,2, each
#    evaluated clean, PGD-10 (eps 2/255, 8/255) and on digits-C (CE/mCE normalised by ERM).
# 4. an η sweep of GFN (neighbor_margin).
# Every step resumes: rerunning skips what is finished.
set -euo pipefail
OUT=${1:-runs/gfn_results}
RT=${ROBUSTUNE:-.venv/bin/robustune}
if [ ! -f "$OUT/erm/model.safetensors" ]; then
  "$RT" train configs/erm_digits.yaml --out "$OUT/erm" --resume
fi
"$RT" corrupt digits --out "$OUT/digits-c" --severities 1,3,5 --workers 2
"$RT" ablate configs/gfn_digits.yaml --set "model.init_from=$OUT/erm" \
  --grid method=none,adv_untargeted,nbr,gfn:rank_weighted,gfn:neighbor_suppression,gfn:neighbor_margin \
  --seeds 0,1,2 --suite clean,pgd,corruptions --eps 2/255,8/255 \
  --option "corruption_root=$OUT/digits-c" \
  --option "reference_results=$OUT/table3/method=none__seed=0/eval/results.json" \
  --columns "clean,pgd/*,corruptions/mean_corruption_accuracy,corruptions/mCE,corruptions/relative_mCE,corruptions/motion_blur/5" \
  --out "$OUT/table3"
# 4. the step size: eta = 0.01 (the paper's value, in normalised units), 0.02 (the presets) and 0.05, with neighbor_margin
"$RT" ablate configs/gfn_digits.yaml --set "model.init_from=$OUT/erm" --set method.params.loss=neighbor_margin \
  --grid eta=0.01,0.02,0.05 --seeds 0,1,2 --suite clean,pgd,corruptions --eps 2/255,8/255 \
  --option "corruption_root=$OUT/digits-c" \
  --option "reference_results=$OUT/table3/method=none__seed=0/eval/results.json" \
  --columns "clean,pgd/*,corruptions/mean_corruption_accuracy,corruptions/mCE,corruptions/relative_mCE,corruptions/motion_blur/5" \
  --out "$OUT/eta_sweep"
echo "tables: $OUT/table3/ablation.md $OUT/eta_sweep/ablation.md"
