#!/usr/bin/env bash
# Issue 12's table of peak memory, rerun with today's code: the runs a new user
# tried first, at the default memory budget (2G), each under memcap CAP (default
# 4G: above the budget, so the cap only records) and /usr/bin/time -v.
#
#   NUMBACONC_CACHE=DIR bash bench/memory_table.sh OUT [row ...]
#
# Rows: quick fmnist-balls-158 fmnist-balls-316 fmnist-boxes cifar-balls cifar-best
# (default: all). FMNIST / CIFAR: the imported .h5 files (made in OUT from
# ../shared/data when unset). The neighbour lists go to $NUMBACONC_CACHE: the first
# Fashion-MNIST balls row computes its lists unless they are there, the second reads them.
# Per row OUT/ROW.log holds the memcap line and /usr/bin/time's report.
set -euo pipefail
out=${1:?usage: memory_table.sh OUT [row ...]}
shift
[ $# -gt 0 ] || set -- quick fmnist-balls-158 fmnist-balls-316 fmnist-boxes cifar-balls cifar-best
: "${NUMBACONC_CACHE:?set NUMBACONC_CACHE to a cache folder}"
here=$(cd "$(dirname "$0")" && pwd)
memcap=$here/../../shared/tools/memcap
data=$here/../../shared/data
cap=${CAP:-4G}
mkdir -p "$out"
fmnist=${FMNIST:-$out/fmnist.h5}
cifar=${CIFAR:-$out/cifar10.h5}
case " $* " in *" fmnist-"*) [ -f "$fmnist" ] ||
    numbaconc data import fashion-mnist "$data/fashion-mnist" -o "$fmnist" ;; esac
case " $* " in *" cifar-"*) [ -f "$cifar" ] ||
    numbaconc data import cifar10 "$data/cifar-10/cifar10.npz" -o "$cifar" ;; esac

run() {  # run ROW numbaconc-arguments...
    local row=$1
    shift
    /usr/bin/time -v "$memcap" "$cap" numbaconc "$@" > "$out/$row.out" 2> "$out/$row.log" || true
    echo "$row: $(grep -h '^memcap:' "$out/$row.log"); max RSS $(awk '/Maximum resident/ {print $NF}' \
        "$out/$row.log") KB; wall $(awk '/Elapsed/ {print $NF}' "$out/$row.log")"
}

for row in "$@"; do
    case $row in
    quick) run quick reproduce mnist --quick --out "$out/quick" --force ;;
    fmnist-balls-158) run "$row" measure "$fmnist" --metric l2 --method balls --clusters 10 --delta 0.05 \
        --protocol paper --epsilon 1.58 --alpha 0.05 --json "$out/$row.json" ;;
    fmnist-balls-316) run "$row" measure "$fmnist" --metric l2 --method balls --clusters 10 --delta 0.05 \
        --protocol paper --epsilon 3.16 --alpha 0.05 --json "$out/$row.json" ;;
    fmnist-boxes) run "$row" measure "$fmnist" --metric linf --method boxes --clusters 10 --q 0.6 \
        --protocol paper --epsilon 0.1 --alpha 0.05 --repeats 10 --json "$out/$row.json" ;;
    cifar-balls) run "$row" measure "$cifar" --metric l2 --method balls --clusters 5 --protocol paper \
        --epsilon 0.4905 --alpha 0.05 --json "$out/$row.json" ;;
    cifar-best) run "$row" measure "$cifar" --metric linf --method best --epsilon 8/255 --alpha 0.05 \
        --json "$out/$row.json" ;;
    *) echo "unknown row $row" >&2; exit 2 ;;
    esac
done
