#!/usr/bin/env bash
# Shards share nothing on the call path: the CPU a no-op call costs with
# two shards against one, and what a node does past saturation, in one run.
#
# Every round starts `ferry up --cores 1` (pinned to CPU 0) and `ferry up
# --cores 2` (CPUs 0 and 1), in turn (1 then 2 in odd rounds, 2 then 1 in
# even ones, so drift on a shared machine falls on both), each serving
# test/noop (guests/out/tests/test/noop.wasm), and on each:
#   1. warm-up: closed loop, not recorded;
#   2. max: closed loop, --concurrency connections (16), --duration s;
#   3. open: open loop at one rate for both nodes (--rate, default half of
#      the 1-shard node's max in round 1), --duration s;
#   4. saturated: `overload` (bench/src/bin/overload.rs, a lean HTTP/1.1
#      client) in closed loop on --overload-connections (512) connections,
#      --duration s: the node's max rate, with less load-generator CPU
#      per call than ferry-bench's;
#   5. overload: open loop at --overload-factor (2) times the higher of the
#      two maxima, on the same connections, for --overload-s s, with
#      `overload`, which records every answer's latency from its due time,
#      503s included, checks each 503 for Retry-After, and samples the
#      node's ferry_calls_in_flight (what admission counts) every 100 ms.
# Then once more, a 1-shard node started with --calls-in-flight-max
# --busy-in-flight-max (1) takes the overload of round 1's 1-shard node: the
# defaults never refuse a no-op (see the note at the end of the rounds), so
# this is where 503s and their Retry-After are checked.
# The load generator (ferry-bench, overload) is pinned to CPU --client-cpu
# (1): with two shards it shares that CPU with shard 1, so compare CPU per
# call, not calls/s. CPU per call is the node's `process_cpu_seconds_total`
# (/metrics, read by the load generator when the window opens and closes)
# over the calls of the window; around step 3 the node's context switches
# (all threads, /proc/PID/task/*/status) are counted too.
#
#   bench/scaling.sh [--duration S] [--rounds N] [--out DIR] [--warmup S]
#       [--concurrency C] [--rate R] [--overload-factor F] [--overload-s S]
#       [--overload-connections N] [--busy-in-flight-max N] [--client-cpu N]
#       [--perf] [--no-build]
#
# Defaults: 5 s, 3 rounds, bench/results/scaling, 1 s warm-up, 16
# connections, overload 2x for 5 s on 512 connections, load on CPU 1.
# --perf: also `perf record -g` each node during step 3 of round 1
# (OUT/perf-sN.data, with OUT/perf-sN.txt, the top of `perf report`).
# Writes OUT/runs/sN-{max,open,saturated,overload}-rR.{json,hlog} and
# OUT/runs/s1-busy-overload.{json,hlog} (ferry-bench's and
# overload's files), OUT/runs/sN-rR.log (the node's output),
# OUT/scaling.json (medians, ratios, every run, the machine) and
# OUT/table.md, which it also prints.
set -euo pipefail
me=scaling.sh
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/script_lib.sh
source "$root/bench/script_lib.sh"
duration=5 rounds=3 warmup=1 concurrency=16 rate='' factor=2 overload_s=5
overload_connections=512 client_cpu=1 perf=0 build=1 busy_in_flight_max=1
out=$root/bench/results/scaling
command_line="bench/scaling.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --overload-factor) factor=$2; shift 2 ;;
    --overload-s) overload_s=$2; shift 2 ;;
    --overload-connections) overload_connections=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --busy-in-flight-max) busy_in_flight_max=$2; shift 2 ;;
    --perf) perf=1; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) usage ;;
    *) unexpected "$1" ;;
  esac
done
number --duration "$duration"
number --warmup "$warmup"
number --overload-factor "$factor"
number --overload-s "$overload_s"
[ -z "$rate" ] || number --rate "$rate"
whole --rounds "$rounds"
whole --concurrency "$concurrency"
whole --overload-connections "$overload_connections"
cpu_number --client-cpu "$client_cpu"
whole --busy-in-flight-max "$busy_in_flight_max"
[ "$(nproc)" -ge 2 ] || fail "two CPUs are needed (nproc says $(nproc))"
tools taskset python3 cargo
[ "$perf" = 0 ] || command -v perf >/dev/null || fail "--perf: perf not found"

ferry=$root/target/release/ferry
bench=$root/target/release/ferry-bench
overload=$root/target/release/overload
noop=$root/guests/out/tests/test/noop.wasm
if [ "$build" = 1 ]; then
  echo "== building ferry, ferry-bench, overload"
  build_workspace
fi
for binary in "$ferry" "$bench" "$overload"; do
  [ -x "$binary" ] || fail "$binary not built (cargo build --release --workspace)"
done
if [ ! -s "$noop" ]; then
  echo "== building the guests (for test/noop)"
  bash "$root/guests/build.sh" >/dev/null || fail "guests/build.sh failed"
  [ -s "$noop" ] || fail "guests/build.sh built no $noop"
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
runs=$out/runs
rm -rf "$runs"
mkdir -p "$runs"
work=$(mktemp -d)
node_pid='' perf_pid=''
stop_node() {
  if [ -n "$perf_pid" ]; then
    kill -INT "$perf_pid" 2>/dev/null || true
    wait "$perf_pid" 2>/dev/null || true
    perf_pid=''
  fi
  if [ -n "$node_pid" ]; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
    node_pid=''
  fi
}
trap 'stop_node; rm -rf "$work"' EXIT
mkdir -p "$work/functions/test"
cp "$noop" "$work/functions/test/noop.wasm"

# start SHARDS ROUND [FLAGS...]: starts a node of SHARDS shards on CPUs 0..SHARDS-1;
# sets node_pid and url.
start() {
  local shards=$1 round=$2 log=$work/s$1-r$2.log ready=$work/s$1-r$2.ready
  shift 2
  taskset -c "0-$((shards - 1))" "$ferry" up --data "$work/data-s$shards-r$round" --http-port 0 \
    --upload-port 0 --cores "$shards" --functions "$work/functions" --ready-file "$ready" "$@" \
    >"$log" 2>&1 &
  node_pid=$!
  for _ in $(seq 1 300); do
    [ -s "$ready" ] && break
    kill -0 "$node_pid" 2>/dev/null || { tail -20 "$log" >&2; fail "ferry ($shards shards) exited before it was ready"; }
    sleep 0.1
  done
  [ -s "$ready" ] || fail "ferry ($shards shards) not ready within 30 s"
  url=http://$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["http"])' "$ready")
}
# load LABEL ARGS...: one ferry-bench run against the node, its counters
# read from /metrics.
load() {
  local label=$1
  shift
  taskset -c "$client_cpu" "$bench" run --url "$url" --user test --function noop "$@" \
    --duration "$duration" --warmup 0 --metrics "$url" --out "$runs" --label "$label" >/dev/null ||
    fail "$label: ferry-bench run failed"
  python3 - "$runs/$label.json" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
node = s["nodes"][0] if s.get("nodes") else {}
cpu = node.get("per_call", {}).get("process_cpu_seconds_total")
cpu = f"{cpu * 1e6:.1f} us/call" if cpu is not None else "CPU not read"
print(f"  {s['label']}: {s['achieved_rate']:.0f} calls/s, errors {s['errors']}, "
      f"p50 {s['latency_ms']['p50']:.3f} ms, p99 {s['latency_ms']['p99']:.3f} ms, {cpu}")
EOF
}
# Context switches of all the node's threads so far (voluntary: a shard
# that parks for want of work; involuntary: preempted).
context_switches() {
  cat /proc/"$node_pid"/task/*/status 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}'
}
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $rounds round(s) of 1 and 2 shards, test/noop, load on CPU $client_cpu, $duration s per point"
for round in $(seq 1 "$rounds"); do
  order="1 2"
  [ $((round % 2)) = 0 ] && order="2 1"
  for shards in $order; do
    echo "-- round $round, $shards shard(s)"
    start "$shards" "$round"
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$warmup"; then
      taskset -c "$client_cpu" "$bench" run --url "$url" --user test --function noop \
        --concurrency "$concurrency" --duration "$warmup" --warmup 0 --out "$work/warmup" \
        --label "s$shards-r$round" >/dev/null || fail "the warm-up run failed"
    fi
    load "s$shards-max-r$round" --concurrency "$concurrency"
    max=$(field "$runs/s$shards-max-r$round.json" achieved_rate)
    if [ -z "$rate" ]; then
      [ "$shards" = 1 ] || fail "the open-loop rate comes from the 1-shard node of round 1"
      rate=$(python3 -c 'import sys; print(round(float(sys.argv[1]) / 2))' "$max")
      echo "  open-loop rate for every node: $rate calls/s (half the 1-shard max)"
    fi
    if [ "$perf" = 1 ] && [ "$round" = 1 ]; then
      perf record -F 999 -g -p "$node_pid" -o "$out/perf-s$shards.data" -- sleep "$duration" \
        >"$work/perf-s$shards.log" 2>&1 &
      perf_pid=$!
    fi
    switches0=$(context_switches)
    load "s$shards-open-r$round" --rate "$rate"
    echo $(($(context_switches) - switches0)) >"$runs/s$shards-open-r$round.switches"
    if [ -n "$perf_pid" ]; then
      wait "$perf_pid" || fail "perf record failed: $(tail -3 "$work/perf-s$shards.log")"
      perf_pid=''
      perf report -i "$out/perf-s$shards.data" --no-children --percent-limit 1 --stdio \
        >"$out/perf-s$shards.txt" 2>/dev/null || fail "perf report failed"
    fi
    # The node's saturated rate: `overload` in closed loop on many
    # connections. ferry-bench's closed loop above is bound by the load
    # generator's CPU (a general HTTP client); this one is less so.
    taskset -c "$client_cpu" "$overload" --url "$url" --user test --function noop \
      --duration "$duration" --warmup 1 --connections "$overload_connections" --metrics "$url" \
      --out "$runs" --label "s$shards-saturated-r$round" | sed 's/^/  /' ||
      fail "s$shards-saturated-r$round: overload failed"
    saturated=$(field "$runs/s$shards-saturated-r$round.json" ok_rate)
    over=$(python3 -c 'import sys; print(round(max(float(sys.argv[1]), float(sys.argv[2])) * float(sys.argv[3])))' \
      "$max" "$saturated" "$factor")
    taskset -c "$client_cpu" "$overload" --url "$url" --user test --function noop --rate "$over" \
      --duration "$overload_s" --warmup 1 --connections "$overload_connections" --metrics "$url" \
      --out "$runs" --label "s$shards-overload-r$round" | sed 's/^/  /' ||
      fail "s$shards-overload-r$round: overload failed"
    stop_node
    cp "$work/s$shards-r$round.log" "$runs/s$shards-r$round.log"
  done
done

# The refusal path itself: default limits never refuse a no-op (a call
# that never yields leaves at most a few calls in flight per shard, far
# under calls_in_flight_max), so one more 1-shard node with
# --calls-in-flight-max BUSY takes the same overload as the 1-shard nodes.
echo "-- refusals: 1 shard, --calls-in-flight-max $busy_in_flight_max"
start 1 busy --calls-in-flight-max "$busy_in_flight_max"
busy_rate=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["target_rate"])' "$runs/s1-overload-r1.json")
taskset -c "$client_cpu" "$overload" --url "$url" --user test --function noop --rate "$busy_rate" \
  --duration "$overload_s" --warmup 1 --connections "$overload_connections" --metrics "$url" \
  --out "$runs" --label "s1-busy-overload" | sed 's/^/  /' || fail "s1-busy-overload: overload failed"
stop_node
cp "$work/s1-rbusy.log" "$runs/s1-busy.log"

CONTEXT_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) CONTEXT_COMMAND=$command_line CONTEXT_CPUS=$(nproc) \
  CONTEXT_LOAD_BEFORE=$load_before CONTEXT_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg) \
  CONTEXT_CLIENT_CPU=$client_cpu CONTEXT_DURATION=$duration CONTEXT_ROUNDS=$rounds \
  CONTEXT_CONCURRENCY=$concurrency CONTEXT_RATE=$rate CONTEXT_FACTOR=$factor \
  CONTEXT_OVERLOAD_S=$overload_s CONTEXT_OVERLOAD_CONNECTIONS=$overload_connections \
  CONTEXT_BUSY=$busy_in_flight_max \
  CONTEXT_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
  python3 - "$out" <<'EOF'
import json, os, platform, statistics, sys
out = sys.argv[1]
e = os.environ
rounds = int(e["CONTEXT_ROUNDS"])
def load(name):
    return json.load(open(os.path.join(out, "runs", name + ".json")))
def cpu_per_call_us(s):
    nodes = s.get("nodes") or [{}]
    v = nodes[0].get("per_call", {}).get("process_cpu_seconds_total")
    return None if v is None else v * 1e6
def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else float("nan")
runs, medians = [], {}
for shards in (1, 2):
    mx = [load(f"s{shards}-max-r{r}") for r in range(1, rounds + 1)]
    op = [load(f"s{shards}-open-r{r}") for r in range(1, rounds + 1)]
    ov = [load(f"s{shards}-overload-r{r}") for r in range(1, rounds + 1)]
    sa = [load(f"s{shards}-saturated-r{r}") for r in range(1, rounds + 1)]
    for r in range(rounds):
        runs.append({"shards": shards, "round": r + 1,
                     "max_rate": mx[r]["achieved_rate"], "max_cpu_us_per_call": cpu_per_call_us(mx[r]),
                     "max_errors": mx[r]["errors"],
                     "open_rate": op[r]["achieved_rate"], "open_cpu_us_per_call": cpu_per_call_us(op[r]),
                     "open_errors": op[r]["errors"],
                     "open_switches_per_call": int(open(os.path.join(out, "runs", f"s{shards}-open-r{r + 1}.switches")).read())
                     / max(1, op[r]["count"] + op[r]["errors"]),
                     "open_p50_ms": op[r]["latency_ms"]["p50"], "open_p99_ms": op[r]["latency_ms"]["p99"],
                     "saturated_rate": sa[r]["ok_rate"], "saturated_cpu_us_per_answer": sa[r]["node_cpu_us_per_answer"],
                     "overload_in_flight_max": ov[r]["node_calls_in_flight_max"],
                     "overload_rate": ov[r]["target_rate"], "overload_calls": ov[r]["calls"],
                     "overload_ok_share": ov[r]["ok_share"], "overload_busy_share": ov[r]["busy_share"],
                     "overload_busy_without_retry_after": ov[r]["busy_503_without_retry_after"],
                     "overload_other": ov[r]["other_status"], "overload_failed": ov[r]["failed"],
                     "overload_ok_rate": ov[r]["ok_rate"], "overload_answer_rate": ov[r]["answer_rate"],
                     "overload_all_ms": ov[r]["latency_ms"]["all"],
                     "overload_from_send_ms": ov[r]["latency_ms"]["all_from_send"],
                     "overload_ok_ms": ov[r]["latency_ms"]["ok"],
                     "overload_busy_ms": ov[r]["latency_ms"]["busy_503"],
                     "overload_cpu_us_per_answer": ov[r]["node_cpu_us_per_answer"]})
    mine = [x for x in runs if x["shards"] == shards]
    def pct(key, q):
        return med([x[key][q] if x[key] else None for x in mine])
    medians[shards] = {
        "max_rate": med([x["max_rate"] for x in mine]),
        "max_cpu_us_per_call": med([x["max_cpu_us_per_call"] for x in mine]),
        "open_rate": med([x["open_rate"] for x in mine]),
        "open_cpu_us_per_call": med([x["open_cpu_us_per_call"] for x in mine]),
        "open_switches_per_call": med([x["open_switches_per_call"] for x in mine]),
        "open_p50_ms": med([x["open_p50_ms"] for x in mine]),
        "open_p99_ms": med([x["open_p99_ms"] for x in mine]),
        "saturated_rate": med([x["saturated_rate"] for x in mine]),
        "saturated_cpu_us_per_answer": med([x["saturated_cpu_us_per_answer"] for x in mine]),
        "overload_in_flight_max": max((x["overload_in_flight_max"] or 0) for x in mine),
        "overload_rate": med([x["overload_rate"] for x in mine]),
        "overload_ok_rate": med([x["overload_ok_rate"] for x in mine]),
        "overload_answer_rate": med([x["overload_answer_rate"] for x in mine]),
        "overload_cpu_us_per_answer": med([x["overload_cpu_us_per_answer"] for x in mine]),
        "overload_busy_share": med([x["overload_busy_share"] for x in mine]),
        "overload_busy_without_retry_after": sum(x["overload_busy_without_retry_after"] for x in mine),
        "overload_other_or_failed": sum(x["overload_other"] + x["overload_failed"] for x in mine),
        "overload_p50_ms": pct("overload_all_ms", "p50"),
        "overload_p99_ms": pct("overload_all_ms", "p99"),
        "overload_max_ms": pct("overload_all_ms", "max"),
        "overload_ok_p99_ms": pct("overload_ok_ms", "p99"),
        "overload_send_p50_ms": pct("overload_from_send_ms", "p50"),
        "overload_send_p99_ms": pct("overload_from_send_ms", "p99"),
        "overload_send_max_ms": pct("overload_from_send_ms", "max"),
        "overload_busy_p99_ms": pct("overload_busy_ms", "p99"),
    }
ratio = {k: medians[2][k] / medians[1][k]
         for k in ("max_cpu_us_per_call", "open_cpu_us_per_call", "saturated_cpu_us_per_answer")}
context = {
    "date": e["CONTEXT_DATE"], "command": e["CONTEXT_COMMAND"].strip(), "cpus": int(e["CONTEXT_CPUS"]),
    "load_average_before": e["CONTEXT_LOAD_BEFORE"], "load_average_after": e["CONTEXT_LOAD_AFTER"],
    "kernel": platform.release(), "client_cpu": int(e["CONTEXT_CLIENT_CPU"]),
    "duration_s": float(e["CONTEXT_DURATION"]), "rounds": rounds,
    "concurrency": int(e["CONTEXT_CONCURRENCY"]), "open_rate": float(e["CONTEXT_RATE"]),
    "overload_factor": float(e["CONTEXT_FACTOR"]), "overload_s": float(e["CONTEXT_OVERLOAD_S"]),
    "overload_connections": int(e["CONTEXT_OVERLOAD_CONNECTIONS"]), "ferry_commit": e["CONTEXT_COMMIT"],
    "busy_in_flight_max": int(e["CONTEXT_BUSY"]),
}
json.dump({"context": context, "medians": {str(k): v for k, v in medians.items()},
           "ratio_2_over_1": ratio, "runs": runs, "refusals": load("s1-busy-overload")}, open(os.path.join(out, "scaling.json"), "w"), indent=2)
f = lambda v, d=1: "n/a" if v != v else f"{v:,.{d}f}"
c = context
lines = [
    f"No-op call on 1 and 2 shards, {c['date']}: {c['cpus']} CPUs, load on CPU {c['client_cpu']} "
    f"(shared with shard 1 of the 2-shard node); load average {c['load_average_before']} before, "
    f"{c['load_average_after']} after. Medians of {rounds} round(s), {c['duration_s']:g} s per point; "
    f"max: closed loop, {c['concurrency']} connections; open: {c['open_rate']:g} calls/s for both; "
    f"overload: {c['overload_factor']:g}x each node's max for {c['overload_s']:g} s on "
    f"{c['overload_connections']} connections. `{c['command']}`",
    "",
    "| shards | max calls/s | CPU us/call at max | open calls/s | CPU us/call open | context switches/call open "
    "| open p50 ms | open p99 ms | saturated calls/s | CPU us/call saturated |",
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
]
for s in (1, 2):
    m = medians[s]
    lines.append(f"| {s} | {f(m['max_rate'], 0)} | {f(m['max_cpu_us_per_call'])} | {f(m['open_rate'], 0)} | "
                 f"{f(m['open_cpu_us_per_call'])} | {f(m['open_switches_per_call'], 2)} | "
                 f"{f(m['open_p50_ms'], 3)} | {f(m['open_p99_ms'], 3)} | "
                 f"{f(m['saturated_rate'], 0)} | {f(m['saturated_cpu_us_per_answer'])} |")
lines += ["", f"CPU per call, 2 shards / 1 shard: {ratio['max_cpu_us_per_call']:.3f} at max, "
              f"{ratio['open_cpu_us_per_call']:.3f} open loop, {ratio['saturated_cpu_us_per_answer']:.3f} saturated "
              "(goal: at most 1.10)", "",
          "Past saturation (latency of every answer, 200s and 503s alike, from its due time, so a call's wait "
          "for a free connection counts; and from when it was sent, what the node adds):", "",
          "| node | offered calls/s | answers/s | 200s/s | node CPU us/answer | 503 share | 503s without Retry-After | other/failed | "
          "p50 ms | p99 ms | max ms | p99 ms of 200s | p99 ms of 503s | from send: p50 ms | p99 ms | max ms "
          "| calls in flight, most seen |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
busy = load("s1-busy-overload")
nan = {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
over_rows = [(f"{s} shard(s), median", medians[s]) for s in (1, 2)] + [(
    f"1 shard, calls_in_flight_max {e['CONTEXT_BUSY']}", {
        "overload_rate": busy["target_rate"], "overload_ok_rate": busy["ok_rate"],
        "overload_answer_rate": busy["answer_rate"],
        "overload_cpu_us_per_answer": busy["node_cpu_us_per_answer"] or float("nan"),
        "overload_busy_share": busy["busy_share"],
        "overload_busy_without_retry_after": busy["busy_503_without_retry_after"],
        "overload_other_or_failed": busy["other_status"] + busy["failed"],
        "overload_p50_ms": (busy["latency_ms"]["all"] or nan)["p50"],
        "overload_p99_ms": (busy["latency_ms"]["all"] or nan)["p99"],
        "overload_max_ms": (busy["latency_ms"]["all"] or nan)["max"],
        "overload_ok_p99_ms": (busy["latency_ms"]["ok"] or nan)["p99"],
        "overload_busy_p99_ms": (busy["latency_ms"]["busy_503"] or nan)["p99"],
        "overload_send_p50_ms": (busy["latency_ms"]["all_from_send"] or nan)["p50"],
        "overload_send_p99_ms": (busy["latency_ms"]["all_from_send"] or nan)["p99"],
        "overload_send_max_ms": (busy["latency_ms"]["all_from_send"] or nan)["max"],
        "overload_in_flight_max": busy["node_calls_in_flight_max"] or 0})]
for name, m in over_rows:
    lines.append(f"| {name} | {f(m['overload_rate'], 0)} | {f(m['overload_answer_rate'], 0)} | "
                 f"{f(m['overload_ok_rate'], 0)} | {f(m['overload_cpu_us_per_answer'])} | "
                 f"{f(m['overload_busy_share'] * 100)}% | {m['overload_busy_without_retry_after']} | "
                 f"{m['overload_other_or_failed']} | {f(m['overload_p50_ms'], 3)} | {f(m['overload_p99_ms'], 3)} | "
                 f"{f(m['overload_max_ms'], 3)} | {f(m['overload_ok_p99_ms'], 3)} | {f(m['overload_busy_p99_ms'], 3)} | "
                 f"{f(m['overload_send_p50_ms'], 3)} | {f(m['overload_send_p99_ms'], 3)} | {f(m['overload_send_max_ms'], 3)} | "
                 f"{m['overload_in_flight_max']:g} |")
lines += ["", "Every run:", "",
          "| run | max calls/s | us/call | open calls/s | us/call | open p99 ms | overload offered | 503 share | p99 ms | max ms |",
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for x in runs:
    a = x["overload_all_ms"] or {"p99": float("nan"), "max": float("nan")}
    lines.append(f"| s{x['shards']}-r{x['round']} | {f(x['max_rate'], 0)} | {f(x['max_cpu_us_per_call'] or float('nan'))} | "
                 f"{f(x['open_rate'], 0)} | {f(x['open_cpu_us_per_call'] or float('nan'))} | {f(x['open_p99_ms'], 3)} | "
                 f"{f(x['overload_rate'], 0)} | {f(x['overload_busy_share'] * 100)}% | {f(a['p99'], 3)} | {f(a['max'], 3)} |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
EOF
echo "results in $out"
