#!/usr/bin/env bash
# The boxes' density score from a reference sample (issue 12, item 4).
# 1. MNIST-60k (holdout, l-inf, eps 0.3, alpha 0.01, tight boxes, tuned, seed 0,
#    10 k-means restarts at the chosen (T, q)): the exact all-pairs density score
#    against samples of 20,000, 10,000 and 1,000 fitting rows.
# 2. MNIST-1M (generated here): `measure --method boxes` with the sampled score
#    (auto: 20,000 rows) under memcap 2G, per-stage CPU seconds (bench/stage_cpu.py).
# Every run under /usr/bin/time and ../shared/tools/memcap (peak incl. page cache).
#   bash bench/boxes_density.sh OUT [60k|1m|all]     (default: runs/boxes-density all)
set -euo pipefail
out=${1:-runs/boxes-density}
which=${2:-all}
mkdir -p "$out"
here=$(cd "$(dirname "$0")" && pwd)
memcap=$here/../../shared/tools/memcap
py=${PYTHON:-python}
run() {  # run LABEL CAP NUMBACONC-ARGS...: stage CPU json, wall, RSS and memcap peak in $out/LABEL.*
  local label=$1 cap=$2; shift 2
  /usr/bin/time -f "$label wall %e s, user %U s, sys %S s, max RSS %M KB" \
      "$memcap" "$cap" "$py" "$here/stage_cpu.py" "$out/$label.cpu.json" "$@" \
      > "$out/$label.out" 2> "$out/$label.log"
  grep -h "wall\|memcap:" "$out/$label.log"
}
common=(--metric linf --epsilon 0.3 --alpha 0.01 --method boxes --box tight --seed 0)
if [ "$which" = 60k ] || [ "$which" = all ]; then
  for variant in exact 20000 10000 1000; do
    run "mnist-$variant" 4G measure mnist "${common[@]}" --tune --repeats 10 \
        --density-sample "$variant" --json "$out/mnist-$variant.json" --force
  done
fi
if [ "$which" = 1m ] || [ "$which" = all ]; then
  [ -f "$out/MNIST-1M.h5" ] || run generate-1M 2G --memory 1500M data synth augment mnist \
      --n 1000000 -o "$out/MNIST-1M.h5" --seed 0
  run mnist1m-boxes-T10 2G --memory 1500M measure "$out/MNIST-1M.h5" "${common[@]}" --clusters 10 \
      --json "$out/mnist1m-boxes-T10.json" --region "$out/mnist1m-boxes-T10.h5" --force
fi
