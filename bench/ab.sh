#!/usr/bin/env bash
# A/B timing of one benchmark on two versions of numbaconc, run alternately
# (A B A B ...) so that background load hits both alike; prints the timing
# lines of every run, grouped by version. Run alone on the machine for
# figures of record.
#
#   bash bench/ab.sh A B ROUNDS SCRIPT [ARGS...]
#
# A, B: a checkout folder, or a git revision of this repository (exported
# with `git archive` into $AB_WORK, next to a link `shared` -> ../shared, so
# the benchmarks find ../shared/data). SCRIPT: a file under bench/ of each
# version. Each run imports its own version (PYTHONPATH) and has its own Numba
# cache; the first run of each version compiles, the scripts exclude that.
# Examples (the lead's A/B for issue 13):
#   bash bench/ab.sh 88acd65 kernels 2 bench_knn.py --repeats 3
#   bash bench/ab.sh 88acd65 kernels 2 bench_kmeans.py --repeats 5
# Environment: PYTHON (default: python; the benchmarks' peers, e.g. faiss-cpu,
# must be importable by it), AB_WORK (default: /tmp/numbaconc-ab),
# AB_PATTERN (grep -E pattern of the lines to show; default: per script).
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,20p' "$0"; exit 2; }
a=$1 b=$2 rounds=$3 script=$4
shift 4
repo=$(cd "$(dirname "$0")/.." && pwd)
work=${AB_WORK:-/tmp/numbaconc-ab}
python=${PYTHON:-python}
mkdir -p "$work/logs"
[ -e "$work/shared" ] || ln -s "$repo/../shared" "$work/shared"

checkout() {  # a folder as it is, or a revision exported once
  if [ -d "$1/numbaconc" ]; then (cd "$1" && pwd); return; fi
  local rev dir
  rev=$(git -C "$repo" rev-parse --short "$1")
  dir="$work/$rev"
  if [ ! -d "$dir" ]; then
    mkdir -p "$dir.tmp" && git -C "$repo" archive "$rev" | tar -x -C "$dir.tmp" && mv "$dir.tmp" "$dir"
  fi
  # the installed names of data/ and cli/ (pyproject's package-dir), for PYTHONPATH
  [ -e "$dir/numbaconc_data" ] || ln -s data "$dir/numbaconc_data"
  [ -e "$dir/numbaconc_cli" ] || ln -s cli "$dir/numbaconc_cli"
  echo "$dir"
}

out=()  # bench_knn / bench_kmeans write a report: keep it out of the checkout
case "$script" in
  *bench_knn*) default_pattern='^== |^ours '; out=(--out) ;;
  *bench_kmeans*) default_pattern='numbaconc'; out=(--out) ;;
  *) default_pattern='.' ;;
esac
pattern=${AB_PATTERN:-$default_pattern}
dir_a=$(checkout "$a")
dir_b=$(checkout "$b")
echo "A = $a ($dir_a)"
echo "B = $b ($dir_b)"
echo "bench: $script $*; $rounds rounds; $(uptime)"
for r in $(seq 1 "$rounds"); do
  for side in A B; do
    dir=$([ $side = A ] && echo "$dir_a" || echo "$dir_b")
    log="$work/logs/$side-$r.log"
    echo "-- round $r, $side" >&2
    (cd "$dir" && PYTHONPATH="$dir" NUMBA_CACHE_DIR="$work/numba-cache-$side" \
      "$python" "bench/$(basename "$script")" ${out[@]+"${out[@]}" "$work/logs/$side-$r.md"} "$@" > "$log" 2>&1) \
      || { echo "run $side round $r failed: see $log" >&2; exit 1; }
  done
done
for side in A B; do
  echo "== $side: $([ $side = A ] && echo "$a" || echo "$b")"
  for r in $(seq 1 "$rounds"); do
    echo "round $r:"
    grep -E "$pattern" "$work/logs/$side-$r.log" | sed 's/^/  /'
  done
done
echo "done: $(uptime)"
