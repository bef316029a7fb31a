#!/usr/bin/env bash
# The half-space search in fixed passes at MNIST-1M and MNIST-10M (issue 12):
# measure (l-inf, eps 0.3, alpha 0.01, halfspace) and evaluate of the saved
# region, each under memcap 2G at the default budget (2G). Prints the memcap
# peak, wall and CPU (user + sys) of each run, then every stage of the
# measure JSON with its CPU seconds per million fitting rows. Run alone on
# the machine for timings of record:
#   bash bench/halfspace_passes.sh /path/to/out     (default: runs/halfspace-passes)
set -euo pipefail
out=${1:-runs/halfspace-passes}
mkdir -p "$out"
memcap=$(dirname "$0")/../../shared/tools/memcap
export NUMBACONC_CACHE=${NUMBACONC_CACHE:-$out/cache}
run() {  # run LABEL CMD...: memcap peak, wall and CPU into $out/LABEL.log
  local label=$1; shift
  /usr/bin/time -f "$label wall %e s, user %U s, sys %S s, max RSS %M KB" "$memcap" 2G "$@" \
      > "$out/$label.out" 2> "$out/$label.log"
  grep -h "wall\|memcap:" "$out/$label.log"
}
for tag in 1M 10M; do
  n=$([ "$tag" = 1M ] && echo 1000000 || echo 10000000)
  [ -f "$out/MNIST-$tag.h5" ] || run "generate-$tag" numbaconc data synth augment mnist \
      --n "$n" -o "$out/MNIST-$tag.h5" --seed 0
  run "measure-$tag" numbaconc -v measure "$out/MNIST-$tag.h5" --metric linf --epsilon 0.3 \
      --alpha 0.01 --method halfspace --json "$out/measure-$tag.json" --region "$out/region-$tag.h5"
  run "evaluate-$tag" numbaconc evaluate "$out/region-$tag.h5" "$out/MNIST-$tag.h5" \
      --json "$out/evaluate-$tag.json"
  python - "$out/measure-$tag.json" <<'EOF' || echo "stage table failed"
import json, sys
r = json.load(open(sys.argv[1]))
n_fit = next(s["n_fit"] for s in r["stages"] if s["stage"] == "halfspace")
for s in r["stages"]:
    print(f'{s["stage"]:22s} {s.get("kind", ""):13s} cpu {s["cpu_seconds"]:9.1f} s '
          f'({s["cpu_seconds"] / n_fit * 1e6:7.1f} per million fitting rows) '
          f'wall {s["seconds"]:9.1f} s peak {s["peak_bytes"] / 2**20:6.0f} MiB')
EOF
done
