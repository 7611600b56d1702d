#!/usr/bin/env bash
# NDP against forbid_ndp over an emulated 10 Gbit/s network, by object
# size: each function of FUNCS (default "wordcount grep") on an object of
# words of each size of SIZES MiB (default "1 16 256 1024"), on a cluster of
# 1 compute and 1 storage node, each in its own network namespace with the
# storage link shaped to RATE (deploy/local/netns.sh; storage-0 pinned to
# CPU 0, compute-0 to CPU 1), load from the load generator's namespace.
#
#   bench/scenarios/ndp.sh [OUT_DIR] [SECONDS_PER_POINT]
#
# (default bench/results/ndp, 10 s per point; root.) Per size, the object
# (bench/scenarios/gen.py words) is put over HTTP through the compute node;
# per function, one call with NDP and one with forbid_ndp, each alone with
# the storage link's veth counters read around it, must answer the same
# (closed/FUNC-SIZEm-MODE.link.json: link bytes each way, call time,
# answer size and hash); then `ferry-bench run` closed loop, 1 connection,
# SECONDS_PER_POINT s with both nodes' /metrics read around the window
# (CPU seconds, offloads and their bytes), 1 s of warm-up unless one call
# takes over a third of the window (closed/FUNC-SIZEm-MODE.{hlog,json,txt});
# every run must be free of errors, and its funclets must have run where
# its mode puts them. A point that fails leaves
# closed/FUNC-SIZEm.failed.json (the error's text, the nodes' warnings)
# and the scenario goes on, then exits 1. Then at SWEEP_SIZE MiB (default
# 16, when in SIZES) an open-loop `ferry-bench sweep` per function and
# mode (sweep/FUNC/FUNC-SIZEm-MODE-rR.*) at SWEEP_RATES calls/s (default:
# 0.25, 0.5, 0.75, 1 and 1.5 times 1 / p50 of that function's closed-loop
# NDP run at that size, what one connection gets through back to back),
# SWEEP_SECONDS s per rate (default SECONDS_PER_POINT; with the default
# rates at least 3 calls' worth of the lowest). Last: FUNC-latency.svg and
# FUNC-sweep.svg (ferry-bench plot), meta.json (bench/scenarios/meta.py:
# date, kernel, CPU, load average) and table.md (bench/scenarios/render.py
# ndp OUT_DIR).
#
# Environment: FUNCS, SIZES, RATE (default 10gbit), GREP_REGEX (default
# "w1[0-9] w39 w39": ~41 matches per MiB), SWEEP_SIZE, SWEEP_RATES,
# SWEEP_SECONDS, WARMUP (s before each closed-loop window, default 1),
# FERRY_BENCH (the ferry-bench binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
me=ndp.sh
out=${1:-$root/bench/results/ndp}
seconds=${2:-10}
funcs=${FUNCS:-wordcount grep}
sizes=${SIZES:-1 16 256 1024}
rate=${RATE:-10gbit}
grep_regex=${GREP_REGEX:-w1[0-9] w39 w39}
sweep_size=${SWEEP_SIZE:-16}
sweep_rates=${SWEEP_RATES:-}
sweep_seconds=${SWEEP_SECONDS:-$seconds}
bench=${FERRY_BENCH:-$root/target/release/ferry-bench}
for value in "$seconds" "$sweep_seconds"; do
  case "$value" in '' | *[!0-9.]*) echo "$me: seconds are a number, got '$value'" >&2; exit 2 ;; esac
done
for size in $sizes $sweep_size; do
  case "$size" in '' | *[!0-9]* | 0) echo "$me: sizes are whole MiB, got '$size'" >&2; exit 2 ;; esac
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

# This run's files replace the last run's.
rm -rf "$out/closed" "$out/sweep"
rm -f "$out"/*.svg "$out/table.md" "$out/meta.json"
mkdir -p "$out/closed" "$out/sweep"
python3 "$root/bench/scenarios/meta.py" start "$out" ndp -- "bench/scenarios/ndp.sh" "${@}" \
  "(FUNCS=\"$funcs\" SIZES=\"$sizes\" RATE=$rate SWEEP_SIZE=$sweep_size SWEEP_SECONDS=$sweep_seconds)"
echo "== $funcs, NDP vs forbid_ndp, storage link $rate, load average $(cut -d' ' -f1-3 /proc/loadavg)"
ndp_up "$work/cluster" "$rate"
failed=

input_of() { # input_of FUNCTION KEY
  case "$1" in
    wordcount) echo "$2" ;;
    grep) echo "$2 $grep_regex" ;;
    countstr) echo "$2 w39 w39" ;;
    sumcol) echo "$2 1" ;;
  esac
}

for size in $sizes; do
  key=words-${size}m
  python3 "$root/bench/scenarios/gen.py" words "$work/$key" "$size"
  ndp_put "$key" "$work/$key"
  rm -f "$work/$key"
  for function in $funcs; do
    input=$(input_of "$function" "$key")
    stem=$function-${size}m
    ndp_point "$function" "$input" "$out/closed" "$stem" "$seconds"
    if [ "$point_ok" = 0 ]; then
      failed="$failed $stem"
      continue
    fi
    for mode in ndp forbid; do
      python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print("%s: %d calls, p50 %.1f ms" % (s["label"], s["count"], s["latency_ms"]["p50"]))' \
        "$out/closed/$stem-$mode.json"
    done
  done
  in_loadgen curl -sf --noproxy '*' -X DELETE "$compute_upload/o/ndp/$key" >/dev/null || true
done

case " $sizes " in
  *" $sweep_size "*)
    key=words-${sweep_size}m
    python3 "$root/bench/scenarios/gen.py" words "$work/$key" "$sweep_size"
    ndp_put "$key" "$work/$key"
    for function in $funcs; do
      rates=$sweep_rates
      duration=$sweep_seconds
      if [ -z "$rates" ]; then
        # Around what one connection gets through back to back (1 / p50 of
        # the closed-loop NDP run), and a window long enough for a few
        # calls at the lowest rate.
        read -r rates duration < <(python3 -c '
import json, sys
p50_s = json.load(open(sys.argv[1]))["latency_ms"]["p50"] / 1000
r = 1 / p50_s
rates = [float(f"{r * k:.2g}") for k in (0.25, 0.5, 0.75, 1, 1.5)]
print(",".join(f"{x:g}" for x in rates), max(float(sys.argv[2]), round(3 / rates[0], 1)))' \
          "$out/closed/$function-${sweep_size}m-ndp.json" "$sweep_seconds")
      fi
      for mode in ndp forbid; do
        flag=()
        [ "$mode" = forbid ] && flag=(--forbid-ndp)
        echo "sweep $function ${sweep_size} MiB $mode at $rates calls/s"
        in_loadgen "$bench" sweep --url "$compute" --user ndp --function "$function" \
          --input "$(input_of "$function" "$key")" "${flag[@]}" --rates "$rates" \
          --duration "$duration" --warmup 1 --timeout 120s --metrics "$compute" "$storage" \
          --out "$out/sweep/$function" --label "$function-${sweep_size}m-$mode" >/dev/null ||
          echo "$me: the $function $mode sweep reported failed calls (overload); see $out/sweep" >&2
      done
      "$bench" plot "$out/sweep/$function" --kind rate --out "$out/$function-sweep.svg" \
        --title "$function ${sweep_size} MiB, open loop, NDP vs forbid_ndp, $rate storage link" >/dev/null 2>&1 ||
        echo "$me: plotting the $function sweep failed" >&2
    done
    ;;
esac

ndp_down
for function in $funcs; do
  mkdir -p "$work/plot-$function"
  cp "$out/closed/$function"-*.json "$work/plot-$function/"
  rm -f "$work/plot-$function"/*.link.json
  "$bench" plot "$work/plot-$function" --out "$out/$function-latency.svg" \
    --title "$function, NDP vs forbid_ndp by object size, $rate storage link, closed loop" >/dev/null
done
python3 "$root/bench/scenarios/meta.py" end "$out"
python3 "$root/bench/scenarios/render.py" ndp "$out" >"$out/table.md"
cat "$out/table.md"
echo "results in $out"
if [ -n "$failed" ]; then
  echo "$me: failed points:$failed (see $out/closed/*.failed.json)" >&2
  exit 1
fi
