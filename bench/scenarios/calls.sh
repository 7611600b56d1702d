#!/usr/bin/env bash
# Warm and cold calls of test/noop on one node (2 shards, every core),
# printed as a markdown table: a warm call on 1 connection and on 4
# (closed loop, ferry-bench run), and first calls after upload
# (ferry-bench cold: the wasm uploaded under N new names, each called
# once; the upload is not timed).
#
#   bench/scenarios/calls.sh [SECONDS] [COLD_CALLS]     (defaults 5, 300)
#
# Keep a run with: bash bench/scenarios/record.sh calls -- bash bench/scenarios/calls.sh
set -euo pipefail
me=calls.sh
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-5}
cold_calls=${2:-300}
ferry=$root/target/release/ferry
bench=$root/target/release/ferry-bench
noop=$root/guests/out/tests/test/noop.wasm
for f in "$ferry" "$bench" "$noop"; do
  [ -e "$f" ] || { echo "$me: $f missing (cargo build --release --workspace; bash guests/build.sh guests/out)" >&2; exit 1; }
done
work=$(mktemp -d)
node_pid=
cleanup() {
  [ -z "$node_pid" ] || { kill "$node_pid" 2>/dev/null || true; wait "$node_pid" 2>/dev/null || true; }
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/functions/test"
cp "$noop" "$work/functions/test/noop.wasm"
"$ferry" up --data "$work/data" --http-port 0 --upload-port 0 --functions "$work/functions" \
  --ready-file "$work/ready" >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do [ -s "$work/ready" ] && break; sleep 0.1; done
[ -s "$work/ready" ] || { tail -20 "$work/node.log" >&2; echo "$me: the node did not start" >&2; exit 1; }
read -r http upload < <(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["http"], r["upload"])' "$work/ready")
url=http://$http upload_url=http://$upload
out=$work/out
"$bench" run --url "$url" --user test --function noop --concurrency 1 --duration "$seconds" --warmup 1 \
  --out "$out" --label warm-1conn >/dev/null
"$bench" run --url "$url" --user test --function noop --concurrency 4 --duration "$seconds" --warmup 1 \
  --out "$out" --label warm-4conn >/dev/null
"$bench" cold --url "$url" --upload-url "$upload_url" --user test --function noop --wasm "$noop" \
  --calls "$cold_calls" --out "$out" --label cold >/dev/null
python3 - "$out" "$cold_calls" <<'PY'
import json, os, sys
out, cold = sys.argv[1], sys.argv[2]
print("| measurement | p50 ms | p99 ms | calls/s | errors |")
print("| --- | ---: | ---: | ---: | ---: |")
for label, what in (("warm-1conn", "warm call, 1 connection"),
                    ("warm-4conn", "warm calls, 4 connections, every shard"),
                    ("cold", f"cold call (first call after upload), {cold} functions")):
    s = json.load(open(os.path.join(out, label + ".json")))
    rate = "-" if label == "cold" else f"{s['achieved_rate']:,.0f}"
    print(f"| {what} | {s['latency_ms']['p50']:.3f} | {s['latency_ms']['p99']:.3f} | {rate} | {s['errors']} |")
PY
