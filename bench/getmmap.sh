#!/usr/bin/env bash
# getMmap of a large object into linear memory against `dd` reading the
# same file, in one run: GiB/s and CPU seconds per GiB.
#
#   ferry      a 1-shard node (`ferry up --cores 1`, pinned to CPU --cpu)
#              with its embedded store on a disk directory (not tmpfs);
#              test/mmapread (guests/c/test/mmapread.c) getMmaps the whole
#              SIZE-byte object and touches none of it; --calls calls one
#              after another, CPU from the node's /metrics
#              (process_cpu_seconds_total) before and after;
#   dd-direct  `dd if=OBJECT-FILE of=/dev/null bs=1M iflag=direct` on the
#              object's own file (header block included), --calls times;
#   dd-cached  the same without iflag=direct, the file's pages dropped
#              from the page cache first (dd iflag=nocache count=0), so
#              every read goes to the disk and through the page cache.
# dd runs pinned to the same CPU; its CPU is the kernel's account of the
# finished child (user + system). Each round runs the three in turn;
# medians over --rounds rounds. Then, on the same file and CPU, the
# getmmap_paths example (bench/examples/getmmap_paths.rs): its checks of
# what io_uring buffer registration does to memory the wasm pool manages,
# and the three ways to read into memory (glommio read + copy, READ into
# unregistered memory, READ_FIXED into a registered buffer), to
# OUT/paths.txt; --no-paths leaves it out.
#
#   bench/getmmap.sh [--size BYTES] [--calls N] [--rounds N] [--out DIR]
#       [--data DIR] [--cpu N] [--no-paths] [--no-build]
#
# Defaults: SIZE from the environment, else 1 GiB (the store's cap); 3
# calls; 3 rounds; bench/results/getmmap; the node's data in a new
# directory under target/ (removed at the end); CPU 0.
# Writes OUT/getmmap.json (every run, medians, ratios, the machine) and
# OUT/table.md, which it also prints.
set -euo pipefail
me=getmmap.sh
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/script_lib.sh
source "$root/bench/script_lib.sh"
size=${SIZE:-1073741824} calls=3 rounds=3 cpu=0 build=1 data='' paths=1
out=$root/bench/results/getmmap
command_line="bench/getmmap.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --data) data=$2; shift 2 ;;
    --cpu) cpu=$2; shift 2 ;;
    --no-paths) paths=0; shift ;;
    --no-build) build=0; shift ;;
    -h | --help) usage ;;
    *) unexpected "$1" ;;
  esac
done
[[ $size =~ ^[1-9][0-9]*$ ]] || fail "--size (SIZE) is a whole number of bytes, got '$size'"
[ "$size" -le 1073741824 ] || fail "--size is at most 1 GiB (the store's object cap), got $size"
whole --calls "$calls"
whole --rounds "$rounds"
cpu_number --cpu "$cpu"
tools taskset python3 curl dd cargo

ferry=$root/target/release/ferry
example=$root/target/release/examples/getmmap_paths
wasm=$root/guests/out/tests/test/mmapread.wasm
if [ "$build" = 1 ]; then
  echo "== building ferry"
  build_workspace
fi
[ -x "$ferry" ] || fail "$ferry not built (cargo build --release -p ferry-runtime)"
[ "$paths" = 0 ] || [ -x "$example" ] ||
  fail "$example not built (cargo build --release -p ferry-bench --examples), or --no-paths"
[ "$paths" = 0 ] || [ "$size" -ge 8388608 ] || fail "the getmmap_paths part needs --size >= 8 MiB (or --no-paths)"
if [ "$build" = 1 ] || [ ! -s "$wasm" ]; then
  echo "== building the guests (for test/mmapread)"
  bash "$root/guests/build.sh" "$root/guests/out" >/dev/null || fail "guests/build.sh failed"
  [ -s "$wasm" ] || fail "guests/build.sh built no $wasm"
fi

work=$(mktemp -d)
made_data=0
if [ -z "$data" ]; then
  mkdir -p "$root/target"
  data=$(mktemp -d "$root/target/getmmap-data.XXXXXX")
  made_data=1
fi
node_pid=''
cleanup() {
  if [ -n "$node_pid" ]; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  if [ "$made_data" = 1 ]; then
    rm -rf "$data"
  fi
}
trap cleanup EXIT
fs=$(stat -f -c %T "$data")
case "$fs" in tmpfs | ramfs) fail "$data is on $fs: O_DIRECT reads need a disk (--data DIR)" ;; esac
free_kib=$(df -Pk "$data" | awk 'NR == 2 {print $4}')
[ "$free_kib" -gt $((size * 2 / 1024 + 1048576)) ] || fail "$data has $free_kib KiB free; twice the object and 1 GiB more are needed"
mkdir -p "$out"
out=$(cd "$out" && pwd)

mkdir -p "$work/functions/test"
cp "$wasm" "$work/functions/test/mmapread.wasm"
ready=$work/ready
taskset -c "$cpu" "$ferry" up --data "$data" --http-port 0 --upload-port 0 --cores 1 \
  --functions "$work/functions" --ready-file "$ready" >"$work/ferry.log" 2>&1 &
node_pid=$!
for _ in $(seq 1 300); do
  [ -s "$ready" ] && break
  kill -0 "$node_pid" 2>/dev/null || { tail -20 "$work/ferry.log" >&2; fail "ferry exited before it was ready"; }
  sleep 0.1
done
[ -s "$ready" ] || fail "ferry not ready within 30 s"
read -r http upload < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["http"], r["upload"])' "$ready")

key=getmmap-bench
echo "== writing a $size-byte object test/$key"
head -c "$size" /dev/urandom >"$work/object"
status=$(curl -s --noproxy '*' -o "$work/put.out" -w '%{http_code}' -T "$work/object" "http://$upload/o/test/$key")
[ "$status" = 200 ] || [ "$status" = 201 ] || [ "$status" = 204 ] ||
  fail "PUT of the object answered $status: $(head -c 300 "$work/put.out")"
rm -f "$work/object"
# The store's file for (user, key) is <sha256(user)>/<sha256(len(user) as
# u64 LE || user || key)> under the object store's directory
# (storage/src/embedded/mod.rs), itself under the data directory.
read -r user_dir object_name < <(python3 - test "$key" <<'EOF'
import hashlib, struct, sys
user, key = sys.argv[1].encode(), sys.argv[2].encode()
print(hashlib.sha256(user).hexdigest(), hashlib.sha256(struct.pack("<Q", len(user)) + user + key).hexdigest())
EOF
)
object_file=$(find "$data" -type f -path "*/$user_dir/$object_name" | head -1)
if [ -z "$object_file" ] || [ ! -f "$object_file" ]; then
  fail "no file $user_dir/$object_name under $data"
fi
file_bytes=$(stat -c %s "$object_file")
[ "$file_bytes" -ge "$size" ] || fail "$object_file holds $file_bytes bytes, less than the object"
echo "   its file: $object_file ($file_bytes bytes, on $fs)"

metrics_cpu() {
  curl -sf --noproxy '*' "http://$http/metrics" | awk '$1 == "process_cpu_seconds_total" {print $2}'
}
# ferry_run ROUND: --calls calls of test/mmapread, one after another.
ferry_run() {
  local round=$1 c0 c1 t0 t1 answer
  c0=$(metrics_cpu)
  t0=$(date +%s.%N)
  for i in $(seq 1 "$calls"); do
    answer=$(curl -s --noproxy '*' -w '\n%{http_code}' -H 'Content-Type: application/json' \
      -d "{\"user\":\"test\",\"function\":\"mmapread\",\"input_data\":\"$key\"}" "http://$http/f/")
    [ "$(tail -1 <<<"$answer")" = 200 ] || fail "call $i of round $round: $answer"
    [ "$(head -1 <<<"$answer")" = "$size" ] || fail "call $i of round $round mapped $(head -1 <<<"$answer") bytes, not $size"
  done
  t1=$(date +%s.%N)
  c1=$(metrics_cpu)
  python3 -c 'import json, sys; print(json.dumps({"wall_s": float(sys.argv[2]) - float(sys.argv[1]), "cpu_s": float(sys.argv[4]) - float(sys.argv[3])}))' \
    "$t0" "$t1" "$c0" "$c1"
}
# dd_run FLAG: --calls dd reads of the object's file; prints wall and CPU.
dd_run() {
  local flag=$1
  python3 - "$cpu" "$calls" "$object_file" "$flag" <<'EOF'
import json, resource, subprocess, sys, time
cpu, calls, path, flag = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
wall = cpu_s = 0.0
for _ in range(calls):
    if flag == "cached":
        # Drop this file's pages from the page cache, so the read goes to the disk.
        subprocess.run(["dd", f"if={path}", "iflag=nocache", "count=0", "status=none"], check=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    args = ["taskset", "-c", cpu, "dd", f"if={path}", "of=/dev/null", "bs=1M", "status=none"]
    if flag == "direct":
        args.append("iflag=direct")
    t0 = time.monotonic()
    subprocess.run(args, check=True)
    wall += time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu_s += used
print(json.dumps({"wall_s": wall, "cpu_s": cpu_s}))
EOF
}

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# One call first, not counted: the module's first instantiation.
ferry_run 0 >/dev/null
echo "== $rounds round(s): $calls getMmap call(s) of $size bytes, then dd direct, then dd through the page cache"
: >"$work/runs.jsonl"
for round in $(seq 1 "$rounds"); do
  for way in ferry dd-direct dd-cached; do
    case "$way" in
      ferry) result=$(ferry_run "$round") ;;
      dd-direct) result=$(dd_run direct) ;;
      dd-cached) result=$(dd_run cached) ;;
    esac
    echo "{\"round\": $round, \"way\": \"$way\", \"result\": $result}" >>"$work/runs.jsonl"
    python3 - "$result" "$size" "$calls" "$round" "$way" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
gib = int(sys.argv[2]) * int(sys.argv[3]) / 2**30
print(f"  round {sys.argv[4]} {sys.argv[5]}: {gib / r['wall_s']:.2f} GiB/s, {r['cpu_s'] / gib:.3f} CPU s/GiB")
EOF
  done
done

CONTEXT_DATE=$(date -u +%Y-%m-%dT%H:%M:%SZ) CONTEXT_COMMAND=$command_line \
  CONTEXT_LOAD_BEFORE=$load_before CONTEXT_LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg) \
  CONTEXT_SIZE=$size CONTEXT_CALLS=$calls CONTEXT_ROUNDS=$rounds CONTEXT_CPU=$cpu CONTEXT_FS=$fs \
  CONTEXT_DEVICE=$(df -P "$data" | awk 'NR == 2 {print $1}') \
  CONTEXT_COMMIT=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown) \
  python3 - "$work/runs.jsonl" "$out" <<'EOF'
import json, os, platform, statistics, sys
e = os.environ
runs = [json.loads(line) for line in open(sys.argv[1])]
out = sys.argv[2]
size, calls = int(e["CONTEXT_SIZE"]), int(e["CONTEXT_CALLS"])
gib = size * calls / 2**30
ways = ["ferry", "dd-direct", "dd-cached"]
for r in runs:
    r["gib_per_s"] = gib / r["result"]["wall_s"]
    r["cpu_s_per_gib"] = r["result"]["cpu_s"] / gib
med = {w: {k: statistics.median(r[k] for r in runs if r["way"] == w) for k in ("gib_per_s", "cpu_s_per_gib")}
       for w in ways}
ratios = {f"ferry/{w}": {k: med["ferry"][k] / med[w][k] for k in ("gib_per_s", "cpu_s_per_gib")}
          for w in ("dd-direct", "dd-cached")}
context = {"date": e["CONTEXT_DATE"], "command": e["CONTEXT_COMMAND"].strip(),
           "load_average_before": e["CONTEXT_LOAD_BEFORE"], "load_average_after": e["CONTEXT_LOAD_AFTER"],
           "kernel": platform.release(), "cpus": os.cpu_count(), "cpu": int(e["CONTEXT_CPU"]),
           "size_bytes": size, "calls_per_round": calls, "rounds": int(e["CONTEXT_ROUNDS"]),
           "filesystem": e["CONTEXT_FS"], "device": e["CONTEXT_DEVICE"], "ferry_commit": e["CONTEXT_COMMIT"]}
json.dump({"context": context, "medians": med, "ratios": ratios, "runs": runs},
          open(os.path.join(out, "getmmap.json"), "w"), indent=2)
c = context
names = {"ferry": "ferry getMmap (test/mmapread, 1 shard)", "dd-direct": "dd bs=1M iflag=direct",
         "dd-cached": "dd bs=1M through the page cache (cold)"}
lines = [f"getMmap of a {size / 2**30:g} GiB object against dd on its file, {c['date']}: {c['cpus']} CPUs, "
         f"everything on CPU {c['cpu']}, {c['filesystem']} on {c['device']}; load average "
         f"{c['load_average_before']} before, {c['load_average_after']} after. Medians of {c['rounds']} "
         f"round(s) of {calls} read(s) each. `{c['command']}`", "",
         "| way | GiB/s | CPU s/GiB |", "| --- | ---: | ---: |"]
for w in ways:
    lines.append(f"| {names[w]} | {med[w]['gib_per_s']:.2f} | {med[w]['cpu_s_per_gib']:.3f} |")
lines += ["", "| ratio | GiB/s | CPU s/GiB |", "| --- | ---: | ---: |"]
for name, r in ratios.items():
    lines.append(f"| {name} | {r['gib_per_s']:.2f} | {r['cpu_s_per_gib']:.2f} |")
lines += ["", "Every run:", "", "| round | way | wall s | CPU s | GiB/s | CPU s/GiB |", "| ---: | --- | ---: | ---: | ---: | ---: |"]
for r in runs:
    lines.append(f"| {r['round']} | {r['way']} | {r['result']['wall_s']:.3f} | {r['result']['cpu_s']:.3f} | "
                 f"{r['gib_per_s']:.2f} | {r['cpu_s_per_gib']:.3f} |")
text = "\n".join(lines) + "\n"
open(os.path.join(out, "table.md"), "w").write(text)
print(text)
EOF
if [ "$paths" = 1 ]; then
  # The node's memory is not needed any more; the example maps twice SIZE.
  kill -TERM "$node_pid" 2>/dev/null || true
  wait "$node_pid" 2>/dev/null || true
  node_pid=''
  echo "== getmmap_paths on the same file, CPU $cpu"
  paths_size=$(( (file_bytes < 1073741824 ? file_bytes : 1073741824) / 1048576 * 1048576 ))
  taskset -c "$cpu" "$example" "$object_file" "$paths_size" "$rounds" | tee "$out/paths.txt" ||
    fail "getmmap_paths failed (see above)"
fi
echo "results in $out"
