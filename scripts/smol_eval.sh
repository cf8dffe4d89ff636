#!/bin/bash
# The smol pair's bars (docs/ZOO.md), on two cores: export the finished training state, materialize, then
# detailed-caption facts + draft MAT on the 200 test videos (two halves, one per core), short-question
# accuracy on the 200 test examples, and MAT under pruning at 0.9, 0.95 and 0.98 on the first 32 videos.
# Usage: scripts/smol_eval.sh OUT_DIR [WORK_DIR [RECIPE]]   (after `hippo zoo train-pretrained --start-from-shipped
# --no-export [--work-dir WORK_DIR] [--recipe RECIPE]`; WORK_DIR defaults to the job's default folder, RECIPE to
# third; a recipe without draft phases exports the target only and the committed draft is evaluated beside it)
set -e
out=${1:?usage: scripts/smol_eval.sh OUT_DIR [WORK_DIR [RECIPE]]}
work=()
[ -n "$2" ] && work=(--work-dir "$(realpath "$2")")
recipe=${3:-third}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export OMP_NUM_THREADS=1
hippo zoo train-pretrained --export-only --recipe "$recipe" "${work[@]}" > "$out/export.out" 2>&1
hippo zoo materialize smol --no-fetch > "$out/materialize.out" 2>&1
(taskset -c 0 hippo zoo detail smol -n 100 --first 0 --methods none --no-pearl --json "$out/detail-a.json" > "$out/detail-a.out" 2>&1
 taskset -c 0 hippo zoo accuracy smol-target --split test -n 200 > "$out/accuracy.out" 2>&1
 taskset -c 0 hippo zoo detail smol -n 32 --methods hippo specvlm random --ratios 0.95 0.98 --no-pearl --json "$out/detail-prune-extreme.json" > "$out/detail-prune-extreme.out" 2>&1) &
(taskset -c 1 hippo zoo detail smol -n 100 --first 100 --methods none --no-pearl --json "$out/detail-b.json" > "$out/detail-b.out" 2>&1
 taskset -c 1 hippo zoo detail smol -n 32 --methods hippo specvlm random --ratios 0.9 --no-pearl --json "$out/detail-prune.json" > "$out/detail-prune.out" 2>&1) &
wait
hippo zoo detail-table "$out/detail-a.json" "$out/detail-b.json" > "$out/detail-table.md"
