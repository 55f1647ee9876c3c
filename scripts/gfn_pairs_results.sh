#!/usr/bin/env bash
# GFN on digits_pairs (100 classes) — the commands behind the digits_pairs section of docs/results.md:
#   bash scripts/gfn_pairs_results.sh [OUT=runs/gfn_pairs_results] [STAGES="erm c fig2 baseline table3 table4 table5"]
# (SEVERITIES=1,5 SEEDS=0,1,2 WORKERS=1 by default; ROBUSTUNE / PYTHON name the commands;
#  EVAL_SEVERITIES=1 evaluates the ablations at those severities of digits_pairs-C only; K_GRID and
#  ALPHA_GRID replace the k and α values of tables 4 and 5.)
# 1. erm    the ERM "pre-trained" model (configs/erm_digits_pairs.yaml; reused if present),
# 2. c      digits_pairs-C: the 15 common corruptions of the test split (3,000 images) at
#           $SEVERITIES (default 1,5: 5 is the paper's Tables 4-5 severity, and nearly every
#           corruption takes the ERM model to chance there; 1 is where it is not), PNG, resumable,
# 3. fig2   GFN Sec. 3.1 / Fig. 2 on the ERM model: error-rank histograms of corruption-induced
#           mistakes per severity ($OUT/fig2_s<sev>/error_ranks.{png,json}, error_rank_summary.json),
# 4. baseline the ERM model unchanged ($OUT/baseline, evaluated once: it normalises every CE) and
#           $OUT/fig2_s<sev>/digit_share.json (its mistakes that keep one of the two digits),
# 5. table3 Adv. / Nbr. / GFN with each loss reading, seeds 0,1,2: clean accuracy and digits_pairs-C
#           (mean accuracy, mCE and relative mCE normalised by the ERM model, motion blur sev. 5),
#           (table3: Adv., Nbr., GFN at the default reading `neighbor_margin`, β = 10; the other
#           readings and the controls are stage controls),
# 6. screen, screen2: the strength of the per-class readings on a held-out seed ($SCREEN_SEED, default 3):
#           neighbor_margin β, neighbor_additive m, predicted_rank β, beside Nbr. and Adv.,
# 7. controls clean fine-tune with the same schedule (`erm` from the ERM model), ±η random sign
#           noise (`sign_noise`), Nbr. with targets drawn ∝ α^rank, GFN `rank_weighted`, seeds 0,1,2,
# 8. eta    η ∈ {0.005, 0.01, 0.04} for Adv., Nbr. and GFN (the default; η = 0.02 is table3),
#           seeds $ETA_SEEDS (default: $SEEDS),
# 9. table4 GFN (the default reading) with k = 5, 10, 20, 30, 40, seeds 0,1,2,
# 10. table5 GFN (the default reading) with α = 0.9, 0.7, 0.5, 0.2, 0.1, seeds 0,1,2.
# Stages controls and eta each take one ablate process (run them side by side).
# CORRUPTION_IMAGES=N evaluates the same fixed N of the 3,000 test images in every corrupted cell
# (eval option corruption_images; clean stays on all 3,000) and suffixes every ablate folder, the
# baseline's included, with _cN (ours, to fit a loaded machine: evaluation is ~70 % of a cell).
# Then per table and severity: $OUT/<table>/severity_<s>.json (scripts/severity_table.py).
# Every step resumes: rerunning skips finished cells (robustune ablate), files (corrupt) and runs.
# The ablations keep the decoded digits_pairs-C cells in memory (cells_in_memory: each PNG decoded
# once per process, ~280 MB for 2 severities; the numbers are the same as from disk).
set -euo pipefail
OUT=${1:-runs/gfn_pairs_results}
STAGES=${2:-"erm c fig2 baseline table3 controls eta table4 table5"}
RT=${ROBUSTUNE:-.venv/bin/robustune}
SEVERITIES=${SEVERITIES:-1,5}
SEEDS=${SEEDS:-0,1,2}
C="$OUT/digits_pairs-c"
SFX=${CORRUPTION_IMAGES:+_c$CORRUPTION_IMAGES}
COLS="clean,corruptions/mean_corruption_accuracy,corruptions/mCE,corruptions/relative_mCE,corruptions/motion_blur/5"
REF="reference_results=$OUT/baseline$SFX/method=none__seed=0/eval/results.json"
has() { [[ " $STAGES " == *" $1 "* ]]; }
ablate() {  # ablate OUT_NAME GRID...   (SEEDS=... before the call overrides the seeds)
  local name=$1; shift
  "$RT" ablate configs/gfn_digits_pairs.yaml --set "model.init_from=$OUT/erm" "$@" --seeds "${CELL_SEEDS:-$SEEDS}" \
    --suite clean,corruptions --option "corruption_root=$C" --option "$REF" --option cells_in_memory=true \
    ${EVAL_SEVERITIES:+--option "severities=$EVAL_SEVERITIES"} --columns "$COLS" \
    ${CORRUPTION_IMAGES:+--option "corruption_images=$CORRUPTION_IMAGES"} --out "$OUT/$name$SFX"
}
if has erm && [ ! -f "$OUT/erm/model.safetensors" ]; then
  "$RT" train configs/erm_digits_pairs.yaml --out "$OUT/erm" --resume
fi
if has c; then
  "$RT" corrupt digits_pairs --out "$C" --severities "$SEVERITIES" --workers "${WORKERS:-1}"
fi
if has fig2; then
  for s in ${SEVERITIES//,/ }; do
    "$RT" analyze "$OUT/erm" --corruption-root "$C" --severity "$s" --out "$OUT/fig2_s$s"
  done
fi
if has baseline; then
  ablate baseline --grid method=none  # the ERM row, evaluated once; its results normalise the CEs
  # the similarity-free check of Fig. 2: mistakes that keep one of the two digits (uniform 18/99);
  # it needs every test image in every cell, so not with CORRUPTION_IMAGES
  if [ -z "${CORRUPTION_IMAGES:-}" ]; then
    for s in ${SEVERITIES//,/ }; do
      "${PYTHON:-.venv/bin/python}" scripts/pairs_digit_share.py "$OUT/baseline$SFX/method=none__seed=0/eval" \
        --severity "$s" --out "$OUT/fig2_s$s/digit_share$SFX.json"
    done
  fi
fi
if has table3; then
  ablate table3 --grid method=adv_untargeted,nbr,gfn
fi
if has screen; then  # the strengths, on a seed none of the tables reports (all 3,000 images per cell)
  CELL_SEEDS=${SCREEN_SEED:-3} ablate screen --grid method=nbr,adv_untargeted
  CELL_SEEDS=${SCREEN_SEED:-3} ablate screen --grid method=gfn:neighbor_margin --grid beta=10,100,1
  CELL_SEEDS=${SCREEN_SEED:-3} ablate screen --grid method=gfn:neighbor_additive --grid margin=3
fi
if has screen2; then  # the rest of the screen (a second process may run it beside stage screen)
  CELL_SEEDS=${SCREEN_SEED:-3} ablate screen --grid method=gfn:predicted_rank --grid beta=1,4,16
fi
if has controls; then
  ablate controls --grid method=erm,sign_noise,gfn:rank_weighted
  ablate controls --grid method=nbr --grid target_sampling=alpha_rank
fi
if has eta; then
  CELL_SEEDS=${ETA_SEEDS:-$SEEDS} ablate eta --grid method=adv_untargeted,nbr,gfn --grid eta=0.005,0.01,0.04
fi
if has table4; then
  ablate table4 --grid "k=${K_GRID:-5,10,20,30,40}"
fi
if has table5; then
  ablate table5 --grid "alpha=${ALPHA_GRID:-0.9,0.7,0.5,0.2,0.1}"
fi
# per-severity tables (mean corruption accuracy, mCE vs the ERM model, motion blur) from ablation.json
for t in table3 screen controls eta table4 table5; do
  if has $t && [ -d "$OUT/$t$SFX" ]; then
    for s in ${SEVERITIES//,/ }; do
      "${PYTHON:-.venv/bin/python}" scripts/severity_table.py "$OUT/baseline$SFX" "$OUT/$t$SFX" \
        --severity "$s" --out "$OUT/$t$SFX/severity_$s.json"
    done
  fi
done
echo "outputs under $OUT: fig2_s*/{error_rank_summary,digit_share}.json, {baseline,table3,table4,table5}/ablation.md, <table>/severity_*.json"
