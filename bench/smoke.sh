#!/usr/bin/env bash
# Smoke test of the benchmark tooling, seconds long, for CI (scripts/test.sh):
#   1. ferry-bench run, closed loop and open loop, against a real `ferry up`
#      node, then ferry-bench plot of both runs; the result files must
#      exist, each JSON must say count > 0 and errors == 0, the node's CPU
#      seconds must have been read, and the plot must be an SVG with both runs.
#   2. bench/scenarios/invoke.sh, half a second per point: ferry, the floor
#      (ferry-bench floor) and, when it can be had, wasmtime serve, each
#      pinned to CPU 0; every run must be free of errors and have read the
#      server's CPU time, and the table must be written; where perf can
#      record here, with --perf, and profile.md must put some of ferry's
#      CPU in wasmtime and some in the kernel's network stack.
#   3. deploy/local/netns.sh up with 1 storage and 1 compute node at 10gbit,
#      a closed-loop run from the load generator's namespace whose calls'
#      funclets are offloaded to the storage node (the compute node's
#      ferry_offloads_total{result="accepted"} must move), then down: no
#      namespace and no node of the cluster may be left.
#   4. bench/scenarios/ndp.sh (1 MiB, wordcount and grep, 1 s points, a
#      two-rate sweep) and bench/scenarios/pays.sh (1 MiB, the four
#      functions, 10gbit and 1gbit, 1 s points): no failed point, every
#      closed-loop run free of errors, the tables and plots written.
#   5. bench/offload.sh, 1 s points, and bench/transport_floor.sh, one
#      short round (when sockperf and iperf3 are installed).
#   6. bench/scaling.sh (1 against 2 shards, overload) and bench/getmmap.sh
#      (64 MiB, with the read-path experiment), one short round each.
#   7. bench/scenarios/render.py --check: bench/README.md's tables are
#      those the committed bench/results render to.
# Every scenario writes under SCRATCH_DIR, never into bench/results.
# Needs root (network namespaces), target/release/{ferry,ferry-bench} and
# the example guests (guests/out/examples).
# Usage: bench/smoke.sh [SCRATCH_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
me=smoke.sh
ferry=$root/target/release/ferry
bench=$root/target/release/ferry-bench
netns=$root/deploy/local/netns.sh
work=${1:-$(mktemp -d)}
mkdir -p "$work"
work=$(cd "$work" && pwd)
node_pid=

fail() {
  echo "$me: FAIL: $*" >&2
  exit 1
}

cleanup() {
  if [ -n "$node_pid" ] && kill -0 "$node_pid" 2>/dev/null; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  [ ! -d "$work/netns" ] || bash "$netns" down "$work/netns" >/dev/null 2>&1 || true
}
trap cleanup EXIT

for binary in "$ferry" "$bench"; do
  [ -x "$binary" ] || fail "$binary not built (cargo build --release --workspace)"
done
[ -d "$root/guests/out/examples" ] || fail "no example guests; run: bash guests/build.sh guests/out"

# check_run DIR LABEL [MIN_CPU_NODES]: the run's files exist and its JSON
# says calls succeeded and none failed.
check_run() {
  local dir=$1 label=$2 ext
  for ext in hlog json txt; do
    [ -s "$dir/$label.$ext" ] || fail "$dir/$label.$ext missing or empty"
  done
  python3 - "$dir/$label.json" <<'EOF' || fail "$1/$2.json: see above"
import json, sys
s = json.load(open(sys.argv[1]))
problems = []
if not s.get("count", 0) > 0:
    problems.append(f"count {s.get('count')}")
if s.get("errors") != 0:
    problems.append(f"errors {s.get('errors')}: {s.get('error_samples')}")
if not s["latency_ms"]["p50"] > 0:
    problems.append(f"p50 {s['latency_ms']['p50']}")
for node in s.get("nodes", []):
    if "process_cpu_seconds_total" not in node["delta"]:
        problems.append(f"no process_cpu_seconds_total from {node['url']}")
if problems:
    print(f"{sys.argv[1]}: " + "; ".join(problems), file=sys.stderr)
    sys.exit(1)
print(f"{sys.argv[1]}: count {s['count']}, errors 0, p50 {s['latency_ms']['p50']} ms, {s['achieved_rate']:.0f} calls/s")
EOF
  grep -q '^#\[StartTime: ' "$dir/$label.hlog" || fail "$dir/$label.hlog is not an HdrHistogram interval log"
}

# A small object of a few words: wordcount's input.
words=$work/words
python3 - "$words" <<'EOF'
import sys
words = [f"w{i}" for i in range(20)]
with open(sys.argv[1], "w") as f:
    f.write(" ".join(words[i % 20] for i in range(20000)))
EOF

"$bench" --help >/dev/null || fail "ferry-bench --help"
for command in run sweep plot cold transport floor; do
  "$bench" "$command" --help >/dev/null || fail "ferry-bench $command --help"
done

echo "== ferry-bench against one node"
"$ferry" up --data "$work/node" --http-port 0 --upload-port 0 --cores 1 \
  --ready-file "$work/ready" >"$work/node.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do
  [ -s "$work/ready" ] && break
  kill -0 "$node_pid" 2>/dev/null || { tail -20 "$work/node.log" >&2; fail "ferry up exited"; }
  sleep 0.1
done
[ -s "$work/ready" ] || fail "ferry up not ready within 30 s"
http=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/ready")
upload=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["upload"])' "$work/ready")
curl -sf --noproxy '*' -X PUT --data-binary @"$words" "http://$upload/o/ndp/words" >/dev/null ||
  fail "putting ndp/words"

out=$work/results
"$bench" run --url "http://$http" --user ndp --function wordcount --input words \
  --concurrency 2 --duration 1.5 --warmup 0.3 --metrics "http://$http" \
  --out "$out/closed" --label closed >/dev/null
check_run "$out/closed" closed
"$bench" run --url "http://$http" --user ndp --function wordcount --input words \
  --rate 50 --duration 1.5 --warmup 0.3 --metrics "http://$http" \
  --out "$out/open" --label open >/dev/null
check_run "$out/open" open
python3 - "$out/open/open.json" <<'EOF' || fail "open loop did not keep its rate"
import json, sys
s = json.load(open(sys.argv[1]))
# 50 calls/s for 1.5 s: 75 calls due (give or take one at each edge of
# the window); each must have been sent and answered.
assert s["mode"] == "open" and s["target_rate"] == 50, s
assert 74 <= s["count"] <= 76, f"open loop at 50/s for 1.5 s answered {s['count']} calls, not 75"
EOF
# A failing function must show up as errors and a failed exit.
if "$bench" run --url "http://$http" --user ndp --function no_such_function \
  --concurrency 1 --duration 0.3 --warmup 0 --out "$out/bad" --label bad >/dev/null 2>&1; then
  fail "a run where every call failed exited 0"
fi
python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); assert s["count"] == 0 and s["errors"] > 0, s' \
  "$out/bad/bad.json" || fail "failed calls not counted as errors"
"$bench" plot "$out/closed" "$out/open" --out "$out/latency.svg" >/dev/null
grep -q '<svg' "$out/latency.svg" || fail "$out/latency.svg is not an SVG"
for label in closed open; do
  grep -qx "$label" "$out/latency.svg" || fail "the plot has no curve labelled $label"
done
kill -TERM "$node_pid" && wait "$node_pid" 2>/dev/null || true
node_pid=

echo "== bench/scenarios/invoke.sh: ferry, the floor, wasmtime serve"
perf_flag=()
if command -v perf >/dev/null && perf record -q -o "$work/perf-probe.data" true >/dev/null 2>&1; then
  perf_flag=(--perf)
else
  echo "smoke.sh: perf cannot record here; invoke.sh runs without --perf" >&2
fi
bash "$root/bench/scenarios/invoke.sh" --duration 0.5 --warmup 0.2 --rounds 1 --no-build "${perf_flag[@]}" \
  --out "$out/invoke" >"$work/invoke.log" 2>&1 || { tail -30 "$work/invoke.log" >&2; fail "invoke.sh failed"; }
python3 - "$out/invoke" "${perf_flag[@]}" <<'EOF' || fail "invoke.sh's results: see above"
import json, os, sys
out = sys.argv[1]
if sys.argv[2:] == ["--perf"]:
    rows = {}
    for line in open(os.path.join(out, "profile.md")):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and not cells[1].startswith("-"):
            rows[cells[0]] = cells[1:]
    for part in ("wasmtime: instantiate, call, reset", "kernel: TCP/IP and sockets"):
        if part not in rows or not float(rows[part][0]) > 0:
            sys.exit(f"invoke.sh --perf: profile.md gives ferry no CPU in {part!r}: {rows}")
result = json.load(open(os.path.join(out, "invoke.json")))
servers = result["servers"]
problems = [f"{name} did not run" for name in ("ferry", "floor") if name not in servers]
for name, s in servers.items():
    if s["errors"] != 0:
        problems.append(f"{name}: {s['errors']} errors")
    if not (s["max_calls_per_s"] or 0) > 0 or not (s["half_calls_per_s"] or 0) > 0:
        problems.append(f"{name}: no calls answered")
    if not (s["max_cpu_us_per_call"] or 0) > 0:
        problems.append(f"{name}: the server's CPU time was not read")
if "ferry/floor" not in result["ratios"]:
    problems.append("no ferry/floor ratio")
if not os.path.getsize(os.path.join(out, "table.md")):
    problems.append("table.md is empty")
if problems:
    sys.exit("invoke.sh: " + "; ".join(problems))
missing = result["context"].get("wasmtime_missing")
print("invoke.sh: " + ", ".join(f"{n} {s['max_calls_per_s']:.0f} calls/s" for n, s in servers.items())
      + (f" (wasmtime left out: {missing})" if missing else ""))
EOF

echo "== deploy/local/netns.sh: 1 storage, 1 compute, 10gbit"
cluster=$work/netns
bash "$netns" up "$cluster" --compute 1 --storage 1 --rate 10gbit >/dev/null 2>"$work/netns-up.log" ||
  { cat "$work/netns-up.log" >&2; fail "netns.sh up failed"; }
prefix=$(awk '$1 == "loadgen" {print $2}' "$cluster/netns")
prefix=${prefix%-loadgen}
[ "$(ip netns list | grep -c "^$prefix-")" = 4 ] || fail "expected 4 namespaces $prefix-*"
tc -n "$prefix-switch" qdisc show dev s0 | grep -q 'tbf.*rate 10Gbit' || fail "the storage link is not shaped"
bash "$netns" exec "$cluster" loadgen curl -sf --noproxy '*' -X PUT --data-binary @"$words" \
  http://10.77.1.1:8002/o/ndp/words >/dev/null || fail "putting ndp/words through the compute node"
bash "$netns" exec "$cluster" loadgen "$bench" run --url http://10.77.1.1:8080 --user ndp \
  --function wordcount --input words --concurrency 1 --duration 2 --warmup 0.5 \
  --metrics http://10.77.1.1:8080 http://10.77.2.1:8080 --out "$out/netns" --label netns >/dev/null
check_run "$out/netns" netns
python3 - "$out/netns/netns.json" <<'EOF' || fail "no funclet was offloaded through the emulated cluster"
import json, sys
s = json.load(open(sys.argv[1]))
compute = next(n for n in s["nodes"] if "10.77.1.1" in n["url"])
storage = next(n for n in s["nodes"] if "10.77.2.1" in n["url"])
accepted = compute["delta"].get('ferry_offloads_total{result="accepted"}', 0)
ran = storage["delta"].get("ferry_funclets_local_total", 0)
assert accepted > 0 and ran > 0, f"offloads accepted {accepted}, funclets run on storage {ran}"
print(f"offloaded {accepted:.0f} funclets to storage-0 ({ran:.0f} ran there)")
EOF
pids=$(cat "$cluster"/*/pid)
bash "$netns" down "$cluster" >/dev/null 2>&1 || fail "netns.sh down failed"
[ -z "$(ip netns list | grep "^$prefix-" || true)" ] || fail "namespaces left after down: $(ip netns list | grep "^$prefix-")"
for pid in $pids; do
  state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
  case "$state" in '' | Z | X) ;; *) fail "node pid $pid still running after down (state $state)" ;; esac
done
echo "== bench/scenarios/ndp.sh and pays.sh, 1 MiB, 1 s points"
SIZES=1 FUNCS="wordcount grep" SWEEP_SIZE=1 SWEEP_RATES=5,10 SWEEP_SECONDS=1 WARMUP=0.3 \
  bash "$root/bench/scenarios/ndp.sh" "$out/ndp" 1 >"$work/ndp.log" 2>&1 ||
  { tail -30 "$work/ndp.log" >&2; fail "ndp.sh failed"; }
SIZE=1 WARMUP=0.3 bash "$root/bench/scenarios/pays.sh" "$out/pays" 1 >"$work/pays.log" 2>&1 ||
  { tail -30 "$work/pays.log" >&2; fail "pays.sh failed"; }
python3 - "$out/ndp" "$out/pays" <<'EOF' || fail "the NDP scenarios' results: see above"
import glob, json, os, sys
ndp, pays = sys.argv[1:]
problems = []
closed = [os.path.join(ndp, "closed", f"{f}-1m-{m}.json") for f in ("wordcount", "grep") for m in ("ndp", "forbid")]
closed += [os.path.join(pays, r, f"{f}-{m}.json") for r in ("10gbit", "1gbit")
           for f in ("countstr", "sumcol", "wordcount", "grep") for m in ("ndp", "forbid")]
sweeps = [os.path.join(ndp, "sweep", f, f"{f}-1m-{m}-r{r}.json") for f in ("wordcount", "grep")
          for m in ("ndp", "forbid") for r in (5, 10)]
for path in closed + sweeps:
    if not os.path.exists(path):
        problems.append(f"{path} missing")
        continue
    s = json.load(open(path))
    if s["count"] == 0 or (path in closed and s["errors"] != 0):
        problems.append(f"{path}: count {s['count']}, errors {s['errors']}")
    if path in closed and not os.path.exists(path[: -len(".json")] + ".link.json"):
        problems.append(f"{path}: no .link.json")
for d in (ndp, pays):
    for path in glob.glob(os.path.join(d, "**", "*.failed.json"), recursive=True):
        problems.append(f"{path}: {json.load(open(path)).get('error')}")
    meta = json.load(open(os.path.join(d, "meta.json")))
    if not meta.get("ended") or not meta.get("load_average_start"):
        problems.append(f"{d}/meta.json incomplete: {meta}")
    if open(os.path.join(d, "table.md")).read().count("**") < 4:
        problems.append(f"{d}/table.md has no ratios")
for name in ("wordcount-latency.svg", "grep-latency.svg", "wordcount-sweep.svg", "grep-sweep.svg"):
    path = os.path.join(ndp, name)
    if not os.path.exists(path) or "<svg" not in open(path).read():
        problems.append(f"{path} is not an SVG")
if problems:
    sys.exit("\n".join(problems))
print("ndp.sh and pays.sh: every point ran, tables and plots written")
EOF

echo "== bench/offload.sh, 1 s points"
bash "$root/bench/offload.sh" "$out/offload" 1 >"$work/offload.log" 2>&1 ||
  { tail -30 "$work/offload.log" >&2; fail "offload.sh failed"; }
ls "$out/offload"/*.json >/dev/null 2>&1 || fail "offload.sh wrote no results in $out/offload"
if command -v sockperf >/dev/null && command -v iperf3 >/dev/null; then
  echo "== bench/transport_floor.sh, one short round"
  bash "$root/bench/transport_floor.sh" --rounds 1 --seconds 1 --rtt-requests 2000 --payload-rounds 2 \
    --out "$out/transport-floor" >"$work/transport_floor.log" 2>&1 ||
    { tail -30 "$work/transport_floor.log" >&2; fail "transport_floor.sh failed"; }
else
  echo "== bench/transport_floor.sh left out: sockperf or iperf3 not installed (scripts/setup.sh)"
fi

echo "== bench/scaling.sh and bench/getmmap.sh, one short round each"
bash "$root/bench/scaling.sh" --no-build --rounds 1 --duration 1 --warmup 0.3 --rate 500 \
  --overload-s 1 --out "$out/scaling" >"$work/scaling.log" 2>&1 ||
  { tail -30 "$work/scaling.log" >&2; fail "scaling.sh failed"; }
[ -s "$out/scaling/table.md" ] && [ -s "$out/scaling/scaling.json" ] ||
  fail "scaling.sh wrote no table in $out/scaling"
bash "$root/bench/getmmap.sh" --no-build --size 67108864 --calls 1 --rounds 1 \
  --out "$out/getmmap" >"$work/getmmap.log" 2>&1 ||
  { tail -30 "$work/getmmap.log" >&2; fail "getmmap.sh failed"; }
[ -s "$out/getmmap/table.md" ] && [ -s "$out/getmmap/paths.txt" ] ||
  fail "getmmap.sh wrote no table in $out/getmmap"

echo "== bench/idle_connections.py, 64 connections, 1 s"
python3 "$root/bench/idle_connections.py" --connections 0,64 --seconds 1 >"$work/idle.log" 2>&1 ||
  { tail -30 "$work/idle.log" >&2; fail "idle_connections.py failed"; }
grep -q '^| 64 |' "$work/idle.log" || { cat "$work/idle.log" >&2; fail "idle_connections.py printed no row for 64"; }

echo "== bench/scenarios/render.py --check"
python3 "$root/bench/scenarios/render.py" --check >"$work/render.log" 2>&1 ||
  { cat "$work/render.log" >&2; fail "bench/README.md's tables are stale; run bench/scenarios/render.py"; }
echo "$me: ok"
