#!/usr/bin/env bash
# Streaming stages on datasets larger than memory (issue 12, part 2).
# Generates MNIST-1M and MNIST-10M, then measures the half-space family and
# evaluates its saved region on each, every step under a cgroup cap
# (../shared/tools/memcap prints the peak, page cache charged to the run
# included). Run alone on the machine for timings of record:
#   bash bench/streaming.sh /path/to/out     (default: runs/streaming)
set -euo pipefail
out=${1:-runs/streaming}
mkdir -p "$out"
memcap=$(dirname "$0")/../../shared/tools/memcap
run() {  # run LABEL CAP CMD...: wall time and memcap peak into $out/LABEL.log
  local label=$1 cap=$2; shift 2
  /usr/bin/time -f "$label wall %e s, max RSS %M KB" "$memcap" "$cap" "$@" > "$out/$label.out" 2> "$out/$label.log"
  grep -h "wall\|memcap:" "$out/$label.log"
}
for tag in 1M 10M; do
  n=$([ "$tag" = 1M ] && echo 1000000 || echo 10000000)
  [ -f "$out/MNIST-$tag.h5" ] || run "generate-$tag" 2G numbaconc --memory 1500M data synth augment mnist \
      --n "$n" -o "$out/MNIST-$tag.h5" --seed 0
  run "measure-$tag" 2G numbaconc --memory 1500M measure "$out/MNIST-$tag.h5" --metric linf \
      --method halfspace --alpha 0.01 --epsilon 0.1 --json "$out/measure-$tag.json" --region "$out/region-$tag.h5"
  run "evaluate-$tag" 2G numbaconc --memory 1500M evaluate "$out/region-$tag.h5" "$out/MNIST-$tag.h5" \
      --json "$out/evaluate-$tag.json"
done
