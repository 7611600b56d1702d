#!/usr/bin/env bash
# Where NDP pays: countstr, sumcol, wordcount and grep on one object size
# (SIZE MiB, default 256), NDP against forbid_ndp, with the storage link at
# each rate of RATES (default "10gbit 1gbit"), on a cluster of 1 compute and
# 1 storage node in network namespaces (deploy/local/netns.sh; storage-0 on
# CPU 0, compute-0 on CPU 1), load from the load generator's namespace.
# countstr, wordcount and grep read an object of words (bench/scenarios/gen.py
# words; countstr counts "w39 w39", grep matches "w1[0-9] w39 w39"), sumcol
# a CSV object (gen.py csv; column 1, a signed amount, 1 line in 1,000 bad).
#
#   bench/scenarios/pays.sh [OUT_DIR] [SECONDS_PER_POINT]
#
# (default bench/results/pays, 5 s per point; root.) Per rate, a fresh
# cluster; per function, one call with NDP and one with forbid_ndp alone,
# the storage link's counters read around each (RATE/FUNC-MODE.link.json),
# must answer the same; then `ferry-bench run` closed loop, 1 connection,
# both nodes' /metrics (RATE/FUNC-MODE.{hlog,json,txt}), free of errors and
# with its funclets where its mode puts them; a point that fails leaves
# RATE/FUNC.failed.json (the error's text), the others still run, and the
# scenario exits 1. meta.json (date, kernel, CPU,
# load average) and table.md (bench/scenarios/render.py pays OUT_DIR: per
# function and rate, p50 NDP / p50 forbid_ndp).
#
# Environment: SIZE, RATES, FUNCS (default "countstr sumcol wordcount
# grep"), WARMUP (s before each window, default 1), FERRY_BENCH (the
# ferry-bench binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
me=pays.sh
out=${1:-$root/bench/results/pays}
seconds=${2:-5}
size=${SIZE:-256}
rates=${RATES:-10gbit 1gbit}
funcs=${FUNCS:-countstr sumcol wordcount grep}
bench=${FERRY_BENCH:-$root/target/release/ferry-bench}
case "$seconds" in '' | *[!0-9.]*) echo "$me: SECONDS_PER_POINT is a number, got '$seconds'" >&2; exit 2 ;; esac
case "$size" in '' | *[!0-9]* | 0) echo "$me: SIZE is whole MiB, got '$size'" >&2; exit 2 ;; esac
for rate in $rates; do
  case "$rate" in *[!0-9a-z.]* | '') echo "$me: RATES are tc rates (10gbit), got '$rate'" >&2; exit 2 ;; esac
done
for function in $funcs; do
  case "$function" in wordcount | grep | countstr | sumcol) ;; *) echo "$me: no input known for function '$function'" >&2; exit 2 ;; esac
done
[ -x "$bench" ] || { echo "$me: $bench not built (cargo build --release -p ferry-bench)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
cluster=
trap 'ndp_down; rm -rf "$work"' EXIT
# shellcheck source=bench/scenarios/ndp_lib.sh
. "$root/bench/scenarios/ndp_lib.sh"

find "$out" -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +
rm -f "$out/table.md" "$out/meta.json"
python3 "$root/bench/scenarios/meta.py" start "$out" pays -- "bench/scenarios/pays.sh" "${@}" \
  "(SIZE=$size RATES=\"$rates\" FUNCS=\"$funcs\")"
python3 "$root/bench/scenarios/gen.py" words "$work/words" "$size"
python3 "$root/bench/scenarios/gen.py" csv "$work/csv" "$size"

input_of() { # input_of FUNCTION
  case "$1" in
    wordcount) echo "words-${size}m" ;;
    grep) echo "words-${size}m w1[0-9] w39 w39" ;;
    countstr) echo "words-${size}m w39 w39" ;;
    sumcol) echo "csv-${size}m 1" ;;
  esac
}

failed=
for rate in $rates; do
  echo "== where NDP pays: $funcs at $size MiB, storage link $rate, load average $(cut -d' ' -f1-3 /proc/loadavg)"
  mkdir -p "$out/$rate"
  ndp_up "$work/cluster-$rate" "$rate"
  ndp_put "words-${size}m" "$work/words"
  ndp_put "csv-${size}m" "$work/csv"
  for function in $funcs; do
    input=$(input_of "$function")
    ndp_point "$function" "$input" "$out/$rate" "$function" "$seconds"
    if [ "$point_ok" = 0 ]; then
      failed="$failed $rate/$function"
      continue
    fi
    python3 -c '
import json, sys
n, f = (json.load(open(f"{sys.argv[1]}-{m}.json"))["latency_ms"]["p50"] for m in ("ndp", "forbid"))
print(f"{sys.argv[2]} at {sys.argv[3]}: p50 NDP {n:.1f} ms, forbid_ndp {f:.1f} ms, ratio {n / f:.3f}")' \
      "$out/$rate/$function" "$function" "$rate"
  done
  ndp_down
done
python3 "$root/bench/scenarios/meta.py" end "$out"
python3 "$root/bench/scenarios/render.py" pays "$out" >"$out/table.md"
cat "$out/table.md"
echo "results in $out"
if [ -n "$failed" ]; then
  echo "$me: failed points:$failed (see $out/RATE/*.failed.json)" >&2
  exit 1
fi
