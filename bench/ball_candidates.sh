#!/usr/bin/env bash
# Sampled ball candidates (issue 12, item 4) against the exact greedy, and the
# balls and --method best (l2) on MNIST-1M under a 2G cap at the default budget.
# Results: bench/RESULTS-memory.md.
#
#   bash bench/ball_candidates.sh OUT_DIR [M ...]      (default M: 5000 10000)
#
# Every run is under memcap (peak memory printed on stderr, kept in OUT_DIR/*.log);
# /usr/bin/time -v gives the CPU seconds (user + sys). Set NUMBACONC_CACHE to a
# cache folder first (neighbour lists are kept there).
set -euo pipefail
out=${1:?usage: ball_candidates.sh OUT_DIR [M ...]}
shift
[ $# -gt 0 ] || set -- 5000 10000
sizes=("$@")
memcap=${MEMCAP:-$(dirname "$0")/../../shared/tools/memcap}
mkdir -p "$out"

run() {  # name cap args...
    local name=$1 cap=$2
    shift 2
    /usr/bin/time -v "$memcap" "$cap" numbaconc measure "$@" --json "$out/$name.json" \
        > "$out/$name.out" 2> "$out/$name.log"
    grep -E "^memcap:|User time|System time|Maximum resident" "$out/$name.log"
}

# MNIST-60k: exact greedy against sampled candidates (same seed and options)
common=(mnist --metric l2 --epsilon 3.16 --alpha 0.01 --method balls --protocol holdout --seed 0)
run mnist-exact 4G "${common[@]}"
for m in "${sizes[@]}"; do
    run "mnist-m$m" 4G "${common[@]}" --ball-candidates "$m"
done

# MNIST-1M (generated), sampled candidates, under memcap 2G at the default budget
data=${NUMBACONC_CACHE:?set NUMBACONC_CACHE}/MNIST-1M.h5
[ -f "$data" ] || "$memcap" 2G numbaconc data synth augment mnist --n 1000000 -o "$data" --seed 0
m1m=("$data" --metric l2 --epsilon 3.16 --alpha 0.01 --protocol holdout --seed 0)
for m in "${sizes[@]}"; do
    run "mnist1m-m$m" 2G "${m1m[@]}" --method balls --ball-candidates "$m"
done
# the best of the l2 families (the sampled balls and the half-space search, which
# takes its fixed-pass strategy at this size); the JSON's families hold both
run mnist1m-best-m"${sizes[0]}" 2G "${m1m[@]}" --method best --ball-candidates "${sizes[0]}"
