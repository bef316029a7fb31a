#!/usr/bin/env bash
# The exact all-pairs l1 kNN (k = 50) on prefixes of MNIST-1M (issue 12): the
# generator's row i depends only on the seed and i, so `--n N` writes the first N
# rows of MNIST-1M. Each prefix runs under memcap 2G at the default budget; the
# script prints the memcap peak, wall and CPU of each, then the exponent between
# the two largest prefixes and the extrapolated wall at 1,000,000 rows. Run alone
# on the machine for timings of record:
#   bash bench/knn_prefix.sh /path/to/out "100000 200000"
set -euo pipefail
out=${1:-runs/knn-prefix}
sizes=${2:-"100000 200000"}
mkdir -p "$out"
memcap=$(dirname "$0")/../../shared/tools/memcap
for n in $sizes; do
  # a fresh cache folder per run: a cached list would be served instead of computed
  export NUMBACONC_CACHE="$out/cache-$n"
  rm -rf "$NUMBACONC_CACHE"
  [ -f "$out/MNIST-$n.h5" ] || numbaconc data synth augment mnist --n "$n" -o "$out/MNIST-$n.h5" \
      --seed 0 > /dev/null
  /usr/bin/time -f "knn-$n wall %e s, user %U s, sys %S s, max RSS %M KB" "$memcap" 2G \
      numbaconc knn "$out/MNIST-$n.h5" --metric l1 --k 50 --out "$out/knn-$n.h5" --force \
      > "$out/knn-$n.out" 2> "$out/knn-$n.log"
  grep -h "wall\|memcap:" "$out/knn-$n.log"
  rm -rf "$NUMBACONC_CACHE"
done
python - "$out" $sizes <<'PY'
import math, re, sys
out, sizes = sys.argv[1], [int(s) for s in sys.argv[2:]]
wall = {n: float(re.search(r"wall ([0-9.]+) s", open(f"{out}/knn-{n}.log").read()).group(1))
        for n in sizes}
if len(sizes) >= 2:
    a, b = sizes[-2], sizes[-1]
    p = math.log(wall[b] / wall[a]) / math.log(b / a)
    print(f"exponent between {a} and {b} rows: {p:.2f}")
    for q in (p, 2.0):
        print(f"extrapolated wall at 1,000,000 rows (exponent {q:.2f}): "
              f"{wall[b] * (1e6 / b) ** q / 60:.0f} min")
PY
