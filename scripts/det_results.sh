#!/usr/bin/env bash
# GFN for detection on digits_det (plain / Adv. / GFN-det), the command behind docs/results.md's
# detection table:
#   bash scripts/det_results.sh [OUT=runs/det_results]
# 1. the ERM digits classifier whose tiny ViT is every detector's backbone (configs/erm_digits.yaml;
#    reused if present),
# 2. digits_det-C: 15 corruptions x severities $SEVERITIES of the test split, boxes unchanged,
# 3. the grid method = det_finetune, det_adv, gfn_det x seeds $SEEDS from configs/det_gfn_digits.yaml
#    (det_adv keeps its eta; det_finetune takes no params), each evaluated clean + corruptions
#    (mAP, AP50, mPC, rPC) into $OUT/table/ablation.md; mean mAP per severity and per corruption
#    family into $OUT/table/severity.md (scripts/det_severity_table.py).
# BACKBONE=gfn (issue 20; GFN Sec. 4.3 builds its detector on the GFN-fine-tuned backbone) first
# fine-tunes the ERM classifier with GFN (configs/gfn_digits.yaml, the default loss reading, seed 0)
# into $OUT/gfn and starts every detector from it; its table is $OUT/table_gfn. METHODS picks the
# detection methods (default: gfn_det det_adv det_finetune).
# Scale knobs (environment): SEEDS (0,1,2), SEVERITIES (1-5; mPC is then over those severities
# only), EPOCHS (preset: 12), N_IMAGES (preset: 500/100/200 per split; a number sets every split),
# N_TEST (test images, clean and corrupted alike; preset 200), ERM_EPOCHS (preset: 60), WORKERS (2,
# for corrupt), JOBS (1; 2 = two ablate processes at once taking (method, seed) cells from one queue,
# then one pass over the whole grid that only tabulates).
# Every step resumes: rerunning skips what is finished.
set -euo pipefail
OUT=${1:-runs/det_results}
RT=${ROBUSTUNE:-.venv/bin/robustune}  # may be a command with arguments (word-split)
# PYTHON (.venv/bin/python) runs scripts/det_severity_table.py
SEEDS=${SEEDS:-0,1,2}
SEVERITIES=${SEVERITIES:-1-5}
BACKBONE=${BACKBONE:-erm}  # erm | gfn
METHODS=${METHODS:-"gfn_det det_adv det_finetune"}
case "$BACKBONE" in
  erm) TABLE="$OUT/table" ;;
  gfn) TABLE="$OUT/table_gfn" ;;
  *) echo "BACKBONE must be erm or gfn, got $BACKBONE" >&2; exit 2 ;;
esac
SETS=(--set "model.init_from=$OUT/$BACKBONE" --set train.eval_every=0)
CORRUPT_OPTS=()
if [ -n "${EPOCHS:-}" ]; then SETS+=(--set "train.epochs=$EPOCHS"); fi
if [ -n "${N_IMAGES:-}${N_TEST:-}" ]; then  # one count, or per split: {train: N, val: N, test: N_TEST}
  if [ -n "${N_IMAGES:-}" ]; then
    SIZES="{train: $N_IMAGES, val: $N_IMAGES, test: ${N_TEST:-$N_IMAGES}}"
  else
    SIZES="{test: $N_TEST}"
  fi
  SETS+=(--set "data.options.n_images=$SIZES")
  CORRUPT_OPTS+=(--option "n_images=${N_TEST:-$N_IMAGES}")
fi
if [ ! -f "$OUT/erm/model.safetensors" ]; then
  $RT train configs/erm_digits.yaml --out "$OUT/erm" --resume --set train.eval_every=0 \
    ${ERM_EPOCHS:+--set train.epochs=$ERM_EPOCHS}
fi
if [ "$BACKBONE" = gfn ] && [ ! -f "$OUT/gfn/model.safetensors" ]; then
  $RT train configs/gfn_digits.yaml --out "$OUT/gfn" --resume --set "model.init_from=$OUT/erm"
fi
$RT corrupt digits_det --out "$OUT/digits_det-c" --severities "$SEVERITIES" --workers "${WORKERS:-2}" \
  "${CORRUPT_OPTS[@]}"
grid() {  # grid METHODS SEEDS
  $RT ablate configs/det_gfn_digits.yaml "${SETS[@]}" --grid "method=$1" --seeds "$2" \
    --suite clean,corruptions --option "corruption_root=$OUT/digits_det-c" --option "severities=$SEVERITIES" \
    --columns "clean,clean/AP50,corruptions/mPC,corruptions/rPC" --out "$TABLE"
}
worker() {  # take the next unclaimed (method, seed) cell until none is left; seed-major, costly first
  for seed in ${SEEDS//,/ }; do
    for method in $METHODS; do
      mkdir "$TABLE/.claims/$method-$seed" 2>/dev/null || continue
      grid "$method" "$seed"
    done
  done
}
if [ "${JOBS:-1}" = 2 ]; then  # two ablate processes on disjoint cells of one folder
  rm -rf "$TABLE/.claims" && mkdir -p "$TABLE/.claims"
  worker > "$OUT/ablate_a.log" 2>&1 &
  a=$!
  worker > "$OUT/ablate_b.log" 2>&1 &
  b=$!
  status=0
  wait "$a" || status=$?
  wait "$b" || status=$?
  if [ "$status" != 0 ]; then echo "an ablate process failed: see $OUT/ablate_[ab].log" >&2; exit "$status"; fi
fi
grid "$(echo $METHODS | tr ' ' ,)" "$SEEDS"  # trains what is left; with JOBS=2 it only tabulates
${PYTHON:-.venv/bin/python} scripts/det_severity_table.py "$TABLE" > "$TABLE/severity.md"
echo "tables: $TABLE/ablation.md, $TABLE/severity.md"
