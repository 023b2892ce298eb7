#!/usr/bin/env bash
# Issue 22's router study on TRAIN prompts only (BENCH.md §4): the smol train split is cut into a fitting part
# (7 of every 8 prompts, runs/study/fit.jsonl) that routers train on, and a validation slice (every 8th,
# runs/study/val.jsonl) that chooses. Every figure of the study comes from one stage of this script:
#   split     write the two prompt files
#   sweep     HoE without routers on the validation slice over the 1/4 lattice (what placement reads)
#   place     hoe place-routers: where a router could add front, greedy over 3
#   compare   one anchor (the first pick), five router objectives, same budget and seeds, then each router
#             evaluated on the validation slice at every lattice point (points it does not reach are copies)
#   ablation  one table of the five against HoE without routers (hoe ablation)
#   omd       the chosen objective's router with OMD step size η = OMD_ETA (3: the authors' value) instead of
#             30, same budget and seeds (at 30 the weights switch between objectives within a step or two and
#             the router chases them); one table of the two (runs/study/omd/)
#   batch     the chosen objective's router with BATCH (32) prompts a step and about as many samples in all
#             (8 steps instead of 15 × 16), same options otherwise; one table with the 16-prompt router
#             (runs/study/batch/)
#   longer    the chosen objective's router trained on, from its step-15 checkpoint to STEPS_LONG (45) steps,
#             evaluated the same way; one table of 15 against STEPS_LONG steps (runs/study/longer/)
# Stages are resumable: a finished router or point is kept. Usage: scripts/router_study.sh [STAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
HOE=.venv/bin/hoe
S=runs/study
BUNDLE=$S/lora6            # the 6 LoRA experts of make demo (vertices + PCB midpoints), no router
STEPS=${STEPS:-15}
EVAL=(--prompts $S/val.jsonl --grid 4 --samples 2 --batch-size 48 --no-progress)
COMMON=(--prompts $S/fit.jsonl --batch-size 16 --steps "$STEPS" --checkpoint-every 5 --no-progress --lr 1e-3
        --value-lr 1e-3 --omd-horizon 160 --omd-step-size 30 --init-kl-coef 0.02 --kl-horizon 500 --seed 0)
VARIANTS=(
  "tchebycheff-soup:--scalarisation tchebycheff --reference soup"
  "tchebycheff:--scalarisation tchebycheff --reference hoe-lora"
  "hypervolume:--scalarisation hypervolume --reference hoe-lora"
  "improvement:--scalarisation improvement --reference hoe-lora"
  "linear:--scalarisation linear --reference hoe-lora"
)

stage_split() {
  .venv/bin/python - <<'PY'
import json
from hoe.data.prompts import load_prompts
ps = load_prompts("smol", "train")
with open("runs/study/val.jsonl", "w") as v, open("runs/study/fit.jsonl", "w") as f:
    for i, p in enumerate(ps):
        (v if i % 8 == 0 else f).write(json.dumps({"id": p.id, "prompt": p.text}) + "\n")
PY
}

stage_bundle() {
  test -f runs/demo/bundle/hoe_bundle.json || .venv/bin/python scripts/demo.py
  local e=runs/demo/experts m=runs/demo/merged
  test -f $BUNDLE/hoe_bundle.json || $HOE build --base smollm2-135m-instruct --out $BUNDLE \
    --expert relevance=$e/relevance --expert positivity=$e/positivity --expert brevity=$e/brevity \
    --expert relevance-positivity=$m/relevance-positivity --expert relevance-brevity=$m/relevance-brevity \
    --expert positivity-brevity=$m/positivity-brevity
}

stage_sweep() { $HOE evaluate --model $BUNDLE --methods hoe-lora,experts "${EVAL[@]}" --out $S/val-sweep; }

stage_place() { $HOE place-routers --model $BUNDLE --results $S/val-sweep --routers 3 --out $S/placement.json; }

stage_compare() {
  for v in "${VARIANTS[@]}"; do
    local name=${v%%:*} opts=${v#*:} out=$S/cmp/${v%%:*}
    if [ -f $out/hoe_bundle.json ]; then
      echo "$name: trained"
    elif [ -d $S/cmp/.$name.partial ]; then
      $HOE train-router --model $BUNDLE --anchor auto --placement $S/placement.json --out $out "${COMMON[@]}" $opts --resume
    else
      $HOE train-router --model $BUNDLE --anchor auto --placement $S/placement.json --out $out "${COMMON[@]}" $opts
    fi
    mkdir -p $S/cmp-eval/$name/points
    cp -rn $S/val-sweep/points/hoe-lora $S/cmp-eval/$name/points/ 2>/dev/null || true
    $HOE evaluate --model $out --methods hoe,hoe-lora "${EVAL[@]}" --out $S/cmp-eval/$name
  done
}

stage_ablation() {
  local rows=(--row "HoE-LoRA (6 LoRA)=$S/cmp-eval/linear:hoe-lora")
  for v in "${VARIANTS[@]}"; do rows+=(--row "+ router, ${v%%:*}=$S/cmp-eval/${v%%:*}:hoe"); done
  $HOE ablation "${rows[@]}" --out $S/compare
}

stage_omd() {
  local name; name=$(cat runs/final/chosen.txt 2>/dev/null || echo hypervolume)
  local eta=${OMD_ETA:-3} opts
  opts=$(printf '%s\n' "${VARIANTS[@]}" | sed -n "s/^$name://p")
  local out=$S/cmp/$name-eta$eta resume=()
  [ -d $S/cmp/.$name-eta$eta.partial ] && resume=(--resume)
  [ -f $out/hoe_bundle.json ] || $HOE train-router --model $BUNDLE --anchor auto --placement $S/placement.json \
    --out $out "${COMMON[@]}" --omd-step-size "$eta" $opts "${resume[@]}"  # the later --omd-step-size wins
  $HOE evaluate --model $out --methods hoe "${EVAL[@]}" --out $S/cmp-eval/$name-eta$eta
  $HOE ablation --row "HoE-LoRA (6 LoRA)=$S/cmp-eval/linear:hoe-lora" \
    --row "+ router, $name, OMD η 30=$S/cmp-eval/$name:hoe" \
    --row "+ router, $name, OMD η $eta=$S/cmp-eval/$name-eta$eta:hoe" --out $S/omd
}

stage_batch() {
  local name; name=$(cat runs/final/chosen.txt 2>/dev/null || echo hypervolume)
  local batch=${BATCH:-32} opts
  local steps=$(( (STEPS * 16 + batch - 1) / batch ))
  opts=$(printf '%s\n' "${VARIANTS[@]}" | sed -n "s/^$name://p")
  local out=$S/cmp/$name-batch$batch resume=()
  [ -d $S/cmp/.$name-batch$batch.partial ] && resume=(--resume)
  [ -f $out/hoe_bundle.json ] || $HOE train-router --model $BUNDLE --anchor auto --placement $S/placement.json \
    --out $out "${COMMON[@]}" --batch-size "$batch" --steps "$steps" $opts "${resume[@]}"  # later flags win
  $HOE evaluate --model $out --methods hoe "${EVAL[@]}" --out $S/cmp-eval/$name-batch$batch
  $HOE ablation --row "HoE-LoRA (6 LoRA)=$S/cmp-eval/linear:hoe-lora" \
    --row "+ router, $name, $STEPS steps x 16=$S/cmp-eval/$name:hoe" \
    --row "+ router, $name, $steps steps x $batch=$S/cmp-eval/$name-batch$batch:hoe" --out $S/batch
}

stage_longer() {
  local name; name=$(cat runs/final/chosen.txt 2>/dev/null || echo hypervolume)
  local long=${STEPS_LONG:-45} opts
  opts=$(printf '%s\n' "${VARIANTS[@]}" | sed -n "s/^$name://p")
  local out=$S/long/$name-$long
  if [ ! -f $out/hoe_bundle.json ]; then
    # resuming a copy of the finished 15-step run continues it (--steps may grow on --resume)
    [ -d $out ] || [ -d $S/long/.$name-$long.partial ] || { mkdir -p $S/long && cp -r $S/cmp/$name $out; }
    $HOE train-router --model $BUNDLE --anchor auto --placement $S/placement.json --out $out \
      "${COMMON[@]}" --steps "$long" $opts --resume  # the later --steps wins
  fi
  $HOE evaluate --model $out --methods hoe "${EVAL[@]}" --out $S/cmp-eval/$name-$long
  $HOE ablation --row "HoE-LoRA (6 LoRA)=$S/cmp-eval/linear:hoe-lora" \
    --row "+ router, $name, $STEPS steps=$S/cmp-eval/$name:hoe" \
    --row "+ router, $name, $long steps=$S/cmp-eval/$name-$long:hoe" --out $S/longer
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(split bundle sweep place compare ablation)
for s in "${stages[@]}"; do echo "== $s"; "stage_$s"; done
