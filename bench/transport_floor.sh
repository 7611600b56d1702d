#!/usr/bin/env bash
# The transport against the floor of the same loopback TCP on the same two
# cores: `sockperf ping-pong` (small TCP round trip) and `iperf3` (one
# stream), then `ferry-bench transport`, alternating, ROUNDS times; prints a
# table of each figure and the ratio ferry/floor.
#
#   bench/transport_floor.sh [--rounds N] [--server-core S] [--client-core C]
#       [--seconds T] [--rtt-requests R] [--payload-rounds P] [--out DIR]
#       [--binary PATH]   (ferry-bench; default target/release/ferry-bench)
#
# Round trip: sockperf with --full-rtt (the whole round trip, as ferry-bench
# times it; without it sockperf prints half), 64-byte messages (an Accept
# framed is 56), p50. Throughput: iperf3's received rate, one stream of
# 128 KiB writes (its default) for T seconds, against ferry-bench's median
# 64 MiB ObjectWrite (one frame) in GiB/s. iperf3 sends one cache-resident
# 128 KiB buffer over and over; ferry moves 64 MiB that does not fit in
# cache, so memory bandwidth bounds it first. Ratios: ferry p50 / sockperf p50 (target <= 1.3) and ferry
# GiB/s / iperf3 GiB/s (target >= 0.8).
#
# Extra arguments after -- go to ferry-bench transport (e.g. -- --spin-us 50).
#
# Needs sockperf and iperf3 (scripts/setup.sh installs them) and a release
# build of ferry-bench (target/release/ferry-bench).
set -euo pipefail

extra=()
rounds=3 server_core=0 client_core=1 seconds=3 rtt_requests=20000 payload_rounds=10
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/target/transport-floor"
bench="$root/target/release/ferry-bench"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --server-core) server_core=$2; shift 2 ;;
    --client-core) client_core=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --rtt-requests) rtt_requests=$2; shift 2 ;;
    --payload-rounds) payload_rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --binary) bench=$2; shift 2 ;;
    --) shift; extra=("$@"); break ;;
    -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "transport_floor.sh: unexpected argument '$1'" >&2; exit 2 ;;
  esac
done
for tool in sockperf iperf3 taskset python3; do
  command -v "$tool" >/dev/null || { echo "transport_floor.sh: $tool not found (scripts/setup.sh)" >&2; exit 1; }
done
[ -x "$bench" ] || { echo "transport_floor.sh: $bench not built (cargo build --release -p ferry-bench)" >&2; exit 1; }
mkdir -p "$out"

server_pid=''
stop_server() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=''
  fi
}
trap stop_server EXIT

# A free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Waits until the server writing log $1 says it listens (a test connection
# would use up iperf3's one test).
wait_listening() {
  for _ in $(seq 100); do
    grep -q 'listening' "$1" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "transport_floor.sh: the server of $1 did not start" >&2
  return 1
}

# sockperf ping-pong p50 round trip in us.
run_sockperf() {
  local port log=$out/sockperf.$1.log
  port=$(free_port)
  taskset -c "$server_core" sockperf server --tcp -i 127.0.0.1 -p "$port" >"$out/sockperf-server.$1.log" 2>&1 &
  server_pid=$!
  sleep 0.3
  taskset -c "$client_core" sockperf ping-pong --tcp -i 127.0.0.1 -p "$port" -m 64 -t "$seconds" --full-rtt >"$log" 2>&1
  stop_server
  sed 's/\x1b\[[0-9;]*m//g' "$log" | awk '/percentile 50.000 =/ { print $NF }'
}

# iperf3 single-stream received rate in GiB/s; $2: bytes per write (iperf3
# -l, at most 1M), default 128 KiB.
run_iperf3() {
  local port json=$out/iperf3.$1.${2:-128K}.json
  port=$(free_port)
  taskset -c "$server_core" iperf3 -s -1 --forceflush -B 127.0.0.1 -p "$port" >"$out/iperf3-server.$1.log" 2>&1 &
  server_pid=$!
  wait_listening "$out/iperf3-server.$1.log"
  taskset -c "$client_core" iperf3 -c 127.0.0.1 -p "$port" -t "$seconds" -l "${2:-128K}" -J >"$json"
  stop_server
  python3 -c 'import json, sys; print("%.3f" % (json.load(open(sys.argv[1]))["end"]["sum_received"]["bits_per_second"] / 8 / 2**30))' "$json"
}

# ferry-bench transport: "p50_us gib_per_s".
run_ferry() {
  local log=$out/ferry.$1.log
  "$bench" transport --server-core "$server_core" --client-core "$client_core" \
    --rtt-requests "$rtt_requests" --payload-rounds "$payload_rounds" --out "$out/ferry.$1" \
    "${extra[@]}" >"$log" 2>&1
  awk '/round trip/ { for (i = 1; i < NF; i++) if ($i == "p50") p50 = $(i + 1) }
       /MiB payload/ { for (i = 1; i < NF; i++) if ($i == "GiB/s;") { gib = $(i - 1); exit } }
       END { print p50, gib }' "$log"
}

echo "transport floor: servers on core $server_core, clients on core $client_core, $rounds rounds; logs in $out"
rows=()
for r in $(seq "$rounds"); do
  sock=$(run_sockperf "$r")
  iperf=$(run_iperf3 "$r")
  read -r ferry_p50 ferry_gib < <(run_ferry "$r")
  rows+=("$r $sock $ferry_p50 $iperf $ferry_gib")
  echo "round $r: sockperf p50 $sock us, ferry p50 $ferry_p50 us; iperf3 $iperf GiB/s, ferry $ferry_gib GiB/s" >&2
done

printf '%s\n' "${rows[@]}" | python3 -c '
import statistics, sys
rows = [line.split() for line in sys.stdin if line.strip()]
head = "%-6s %13s %10s %7s %9s %9s %7s"
print(head % ("round", "sockperf p50", "ferry p50", "ratio", "iperf3", "ferry", "ratio"))
print(head % ("", "us", "us", "<=1.3", "GiB/s", "GiB/s", ">=0.8"))
rtt, thr = [], []
for r, sock, fp50, iperf, fgib in rows:
    a = float(fp50) / float(sock)
    b = float(fgib) / float(iperf)
    rtt.append(a); thr.append(b)
    print("%-6s %13s %10s %7.2f %9s %9s %7.2f" % (r, sock, fp50, a, iperf, fgib, b))
col = lambda i: [float(row[i]) for row in rows]
med = statistics.median
print("%-6s %13.1f %10.1f %7.2f %9.3f %9.3f %7.2f" % ("median", med(col(1)), med(col(2)), med(rtt), med(col(3)), med(col(4)), med(thr)))
print("ratio spread: round trip %.2f-%.2f, throughput %.2f-%.2f" % (min(rtt), max(rtt), min(thr), max(thr)))
' | tee "$out/table.txt"
