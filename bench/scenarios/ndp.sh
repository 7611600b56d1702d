#!/usr/bin/env bash
# NDP against forbid_ndp over an emulated 10 Gbit/s network: wordcount of a
# 1 MiB and a 16 MiB object, on a cluster of 1 compute and 1 storage node,
# each in its own network namespace with the storage link shaped to 10gbit
# (deploy/local/netns.sh), load from the load generator's namespace.
#
#   bench/scenarios/ndp.sh [OUT_DIR] [SECONDS_PER_POINT]
#
# (default bench/results/ndp, 10 s per point after 1 s of warm-up; root.)
# For each size and mode, `ferry-bench run` closed loop, 1 connection, with
# both nodes' /metrics read around the window (CPU seconds, offloads and
# their bytes per call) writes OUT_DIR/wordcount-SIZE-MODE.{hlog,json,txt};
# one call of each alone, with the storage link's veth counters read before
# and after, writes OUT_DIR/wordcount-SIZE-MODE.link.json (the bytes that
# crossed that link for one call, each way, headers included). Then
# OUT_DIR/latency.svg (ferry-bench plot) and OUT_DIR/table.md
# (bench/scenarios/table.py). The answers with and without NDP must be the
# same, and every run must be free of errors.
# Environment: RATE (default 10gbit), SIZES (object sizes in MiB, default
# "1 16"), FERRY_BENCH (the ferry-bench binary).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
me=ndp.sh
out=${1:-$root/bench/results/ndp}
seconds=${2:-10}
rate=${RATE:-10gbit}
sizes=${SIZES:-1 16}
bench=${FERRY_BENCH:-$root/target/release/ferry-bench}
netns=$root/deploy/local/netns.sh
case "$seconds" in '' | *[!0-9.]*) echo "$me: SECONDS_PER_POINT is a number, got '$seconds'" >&2; exit 2 ;; esac
[ -x "$bench" ] || { echo "$me: $bench not built (cargo build --release -p ferry-bench)" >&2; exit 1; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
cluster=$work/cluster
trap 'bash "$netns" down "$cluster" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

bash "$netns" up "$cluster" --compute 1 --storage 1 --rate "$rate" >/dev/null
compute=$(awk '$2 == "compute" {print $3; exit}' "$cluster/endpoints")
compute_upload=$(awk '$2 == "compute" {print $4; exit}' "$cluster/endpoints")
storage=$(awk '$2 == "storage" {print $3; exit}' "$cluster/endpoints")
compute=${compute%/} compute_upload=${compute_upload%/} storage=${storage%/}
switch=$(awk '$1 == "loadgen" {print $2}' "$cluster/netns")
switch=${switch%-loadgen}-switch
in_loadgen() { bash "$netns" exec "$cluster" loadgen "$@"; }
# Bytes the switch's end of storage-0's link has sent (to storage) and
# received (from storage).
link_bytes() {
  echo "$(ip netns exec "$switch" cat /sys/class/net/s0/statistics/tx_bytes)" \
    "$(ip netns exec "$switch" cat /sys/class/net/s0/statistics/rx_bytes)"
}
call() { # call KEY FORBID(true|false) OUTPUT_FILE
  in_loadgen curl -sf --noproxy '*' -o "$3" -X POST "$compute/f/" \
    -d "{\"user\": \"ndp\", \"function\": \"wordcount\", \"input_data\": \"$1\", \"forbid_ndp\": $2}"
}

echo "== wordcount, NDP vs forbid_ndp, storage link $rate ($cluster)"
for size in $sizes; do
  key=words-${size}m
  python3 - "$work/$key" "$size" <<'EOF'
import random, sys
random.seed(1)
words = [f"w{i}" for i in range(40)]
size = int(sys.argv[2]) << 20
# One MiB of random words, repeated: a 1024 MiB object in seconds.
out, n = [], 0
while n < 1 << 20:
    w = random.choice(words) + " "
    out.append(w); n += len(w)
chunk = "".join(out)[: 1 << 20]
with open(sys.argv[1], "w") as f:
    for _ in range(size >> 20):
        f.write(chunk)
EOF
  in_loadgen curl -sf --noproxy '*' -X PUT --data-binary @"$work/$key" "$compute_upload/o/ndp/$key" >/dev/null
  call "$key" false "$work/$key.ndp.out"
  call "$key" true "$work/$key.forbid.out"
  cmp -s "$work/$key.ndp.out" "$work/$key.forbid.out" ||
    { echo "$me: wordcount of $key differs with and without NDP" >&2; exit 1; }
  for mode in ndp forbid; do
    label=wordcount-${size}m-$mode
    forbid=false flag=()
    [ "$mode" = forbid ] && forbid=true flag=(--forbid-ndp)
    read -r to0 from0 < <(link_bytes)
    call "$key" "$forbid" /dev/null
    read -r to1 from1 < <(link_bytes)
    printf '{"label": "%s", "calls": 1, "to_storage_bytes": %d, "from_storage_bytes": %d}\n' \
      "$label" $((to1 - to0)) $((from1 - from0)) >"$out/$label.link.json"
    in_loadgen "$bench" run --url "$compute" --user ndp --function wordcount --input "$key" "${flag[@]}" \
      --concurrency 1 --duration "$seconds" --warmup 1 --metrics "$compute" "$storage" \
      --out "$out" --label "$label" >/dev/null
    python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); sys.exit(0 if s["errors"] == 0 and s["count"] > 0 else 1)' \
      "$out/$label.json" || { echo "$me: $label had errors; see $out/$label.txt" >&2; exit 1; }
    head -3 "$out/$label.txt" | tail -2 | tr '\n' ' ' | sed "s/^/$label: /"
    echo
  done
done
"$bench" plot "$out" --out "$out/latency.svg" --title "wordcount, NDP vs forbid_ndp, $rate storage link" >/dev/null
{
  echo "wordcount NDP vs forbid_ndp, 1 compute + 1 storage node in network namespaces, storage link $rate (tbf),"
  echo "closed loop, 1 connection, $seconds s per point; $(date -u +%Y-%m-%dT%H:%M:%SZ); bench/scenarios/ndp.sh"
  echo
  python3 "$root/bench/scenarios/table.py" "$out"
} >"$out/table.md"
cat "$out/table.md"
echo "results in $out"
