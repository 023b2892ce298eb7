#!/usr/bin/env bash
# Issue 22, after scripts/router_study.sh chose on train prompts: train the shipped routers with the chosen
# objective and measure once on the eval prompts (BENCH.md §4). Stages (resumable):
#   choose    the router objective with the highest HV(hoe) / HV(hoe-lora) on the validation slice
#             (runs/study/compare/results.json), ties by the order of the study
#   train     the placement's next picks with it, each on the bundle of the previous (--anchor auto)
#   eval      on smol:eval (147 prompts, grid 1/4, 2 samples, the make-results protocol): the final bundle's
#             hoe and hoe-lora (the previous Tchebycheff routers are measured in results/smol3: on this
#             machine their merged experts differ in the last bits, so make demo cannot attach them)
#   apart     the routers at their anchors on the apart prompts (32, written apart from smol), 4 samples
#   lora3     the same protocol for the 3 single-objective LoRA experts alone
#   midpoints the 3 LoRA experts with a router at each edge midpoint instead of a merged expert
#   ablation  hoe ablation -> results/smol3-ablation/
# Usage: scripts/router_final.sh [STAGE...]
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
HOE=.venv/bin/hoe
S=runs/study
F=runs/final
STEPS=${STEPS:-15}
PROTOCOL=(--prompts smol:eval --grid 4 --samples 2 --batch-size 48 --no-progress)
COMMON=(--prompts $S/fit.jsonl --batch-size 16 --steps "$STEPS" --checkpoint-every 5 --no-progress --lr 1e-3
        --value-lr 1e-3 --omd-horizon 160 --omd-step-size 30 --init-kl-coef 0.02 --kl-horizon 500 --seed 0)
declare -A OPTS=(
  [tchebycheff-soup]="--scalarisation tchebycheff --reference soup"
  [tchebycheff]="--scalarisation tchebycheff --reference hoe-lora"
  [hypervolume]="--scalarisation hypervolume --reference hoe-lora"
  [improvement]="--scalarisation improvement --reference hoe-lora"
  [linear]="--scalarisation linear --reference hoe-lora"
)

chosen() {
  .venv/bin/python - <<'PY'
import json
rows = json.load(open("runs/study/compare/results.json"))["rows"]
best = max((r for r in rows if r.startswith("+ router")), key=lambda r: rows[r]["ratio"])
print(best.removeprefix("+ router, "))
PY
}

stage_choose() { mkdir -p $F; chosen | tee $F/chosen.txt; }

stage_train() {
  local name; name=$(cat $F/chosen.txt)
  local prev=$S/cmp/$name   # its first router (the first pick) was trained by the study, same options
  for k in 2; do
    local out=$F/routers-$k
    if [ ! -f $out/hoe_bundle.json ]; then
      local resume=(); [ -d $F/.routers-$k.partial ] && resume=(--resume)
      $HOE train-router --model $prev --anchor auto --placement $S/placement.json --out $out "${COMMON[@]}" \
        ${OPTS[$name]} "${resume[@]}"
    fi
    prev=$out
  done
  ln -sfn "$(realpath $prev)" $F/bundle
}

stage_eval() {
  $HOE evaluate --model $F/bundle --methods hoe,hoe-lora "${PROTOCOL[@]}" --out $F/eval/final
}

stage_lora3() {
  # another set of experts, so no point is shared (even the vertices' keys name the bundle's experts)
  $HOE evaluate --model $S/lora3 --methods hoe-lora "${PROTOCOL[@]}" --out $F/eval/lora3
}

stage_apart() {
  local prefs=()
  for a in $(.venv/bin/python -c "
import json; [print(','.join(str(v) for v in p['anchor'])) for p in json.load(open('$S/placement.json'))['chosen']]"); do
    prefs+=(--preference "$a")
  done
  $HOE evaluate --model $F/bundle --methods hoe,hoe-lora --prompts apart --grid 1 "${prefs[@]}" --samples 4 \
    --batch-size 32 --no-progress --out $F/eval/apart
}

stage_midpoints() {
  # the paper's other question: a router at each edge midpoint of the 3 LoRA experts, instead of a merged expert
  local name; name=$(cat $F/chosen.txt)
  local prev=$S/lora3
  for a in "relevance=0.5,positivity=0.5,brevity=0" "relevance=0.5,positivity=0,brevity=0.5" \
           "relevance=0,positivity=0.5,brevity=0.5"; do
    local tag; tag=$(echo "$a" | tr -cd '0-9,' | tr ',' '-')
    local out=$F/mid/$tag
    if [ ! -f $out/hoe_bundle.json ]; then
      local resume=(); [ -d $F/mid/.$tag.partial ] && resume=(--resume)
      $HOE train-router --model $prev --anchor "$a" --name "mid-$tag" --out $out "${COMMON[@]}" ${OPTS[$name]} \
        "${resume[@]}"
    fi
    prev=$out
  done
  mkdir -p $F/eval/lora3-mid/points && cp -rn $F/eval/lora3/points/hoe-lora $F/eval/lora3-mid/points/ 2>/dev/null || true
  $HOE evaluate --model $prev --methods hoe,hoe-lora "${PROTOCOL[@]}" --out $F/eval/lora3-mid
}

stage_ablation() {
  # the routers as make demo ships them (saved in float16, then make results): a row when that sweep exists
  local shipped=(); [ -f runs/eval/smol3/results.json ] &&
    shipped=(--row "6 LoRA + the same 2 routers as shipped (float16, make results)=runs/eval/smol3:hoe")
  $HOE ablation --out results/smol3-ablation --reference "6 LoRA (HoE-LoRA)" \
    --row "3 LoRA=$F/eval/lora3:hoe-lora" \
    --row "3 LoRA + 3 routers at the edge midpoints ($(cat $F/chosen.txt))=$F/eval/lora3-mid:hoe" \
    --row "6 LoRA (HoE-LoRA)=$F/eval/final:hoe-lora" \
    --row "6 LoRA + 2 placed routers ($(cat $F/chosen.txt))=$F/eval/final:hoe" "${shipped[@]}"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(choose train eval apart lora3 midpoints ablation)
for s in "${stages[@]}"; do echo "== $s"; "stage_$s"; done
