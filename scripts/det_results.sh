#!/usr/bin/env bash
# GFN for detection on digits_det (plain / Adv. / GFN-det), the command behind docs/results.md's
# detection table:
#   bash scripts/det_results.sh [OUT=runs/det_results]
# 1. the ERM digits classifier whose tiny ViT is every detector's backbone (configs/erm_digits.yaml;
#    reused if present),
# 2. digits_det-C: 15 corruptions x severities $SEVERITIES of the test split, boxes unchanged,
# 3. the grid method = det_finetune, det_adv, gfn_det x seeds $SEEDS from configs/det_gfn_digits.yaml
#    (det_adv keeps its eta; det_finetune takes no params), each evaluated clean + corruptions
#    (mAP, AP50, mPC, rPC) into $OUT/table/ablation.md.
# Scale knobs (environment): SEEDS (0,1,2), SEVERITIES (1-5), EPOCHS (preset: 12), N_IMAGES (preset:
# 500/100/200 per split; a number sets every split), ERM_EPOCHS (preset: 60), WORKERS (2).
# Every step resumes: rerunning skips what is finished.
set -euo pipefail
OUT=${1:-runs/det_results}
RT=${ROBUSTUNE:-.venv/bin/robustune}  # may be a command with arguments (word-split)
SEEDS=${SEEDS:-0,1,2}
SEVERITIES=${SEVERITIES:-1-5}
SETS=(--set "model.init_from=$OUT/erm" --set train.eval_every=0)
CORRUPT_OPTS=()
if [ -n "${EPOCHS:-}" ]; then SETS+=(--set "train.epochs=$EPOCHS"); fi
if [ -n "${N_IMAGES:-}" ]; then
  SETS+=(--set "data.options.n_images=$N_IMAGES")
  CORRUPT_OPTS+=(--option "n_images=$N_IMAGES")
fi
if [ ! -f "$OUT/erm/model.safetensors" ]; then
  $RT train configs/erm_digits.yaml --out "$OUT/erm" --resume --set train.eval_every=0 \
    ${ERM_EPOCHS:+--set train.epochs=$ERM_EPOCHS}
fi
$RT corrupt digits_det --out "$OUT/digits_det-c" --severities "$SEVERITIES" --workers "${WORKERS:-2}" \
  "${CORRUPT_OPTS[@]}"
$RT ablate configs/det_gfn_digits.yaml "${SETS[@]}" \
  --grid method=det_finetune,det_adv,gfn_det --seeds "$SEEDS" --suite clean,corruptions \
  --option "corruption_root=$OUT/digits_det-c" \
  --columns "clean,clean/AP50,corruptions/mPC,corruptions/rPC" --out "$OUT/table"
echo "table: $OUT/table/ablation.md"
