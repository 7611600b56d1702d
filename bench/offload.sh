#!/usr/bin/env bash
# Offload on loopback: a local cluster (1 compute, 2 storage nodes, one
# process each, deploy/local/cluster.sh), then with `ferry-bench run`
# (closed loop, 1 connection, HdrHistogram) in one run:
#   - the offload round trip with 0, 1, 16 and 64 MiB of dirty pages each
#     way (test/probe; DIRTY_KIB sets the sizes, in KiB: 262144 sends
#     256 MiB, in 32 MiB parts), NDP against forbid_ndp (the same call,
#     run on the compute node);
#   - a wordcount of a 64 MiB object, NDP against forbid_ndp, and the bytes
#     each moved between the nodes (offload pages from the compute node's
#     /metrics; for forbid_ndp the object's bytes, read over the transport).
# Each point writes OUT_DIR/LABEL.{hlog,json,txt} (the JSON with the compute
# node's counters and CPU seconds per call); `ferry-bench plot OUT_DIR --out
# F.svg` draws them.
# Usage: bench/offload.sh [OUT_DIR] [SECONDS_PER_POINT]
# BACKEND=ceph runs it on Ceph instead: 3 storage nodes, each fronting one
# memstore OSD (deploy/ceph/start.sh --osds 3, replication 3); a funclet goes
# to the node of its object's primary OSD, and forbid_ndp reads RADOS from
# the compute node.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
backend="${BACKEND:-embedded}"
case "$backend" in
  embedded) storage=2 results=offload ;;
  ceph) storage=3 results=offload-ceph ;;
  *) echo "offload.sh: BACKEND is embedded or ceph, got '$backend'" >&2; exit 2 ;;
esac
out="${1:-$root/bench/results/$results}"
seconds="${2:-5}"
dir="$(mktemp -d)"
bench="$root/target/release/ferry-bench"
trap '"$root/deploy/local/cluster.sh" stop "$dir" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
mkdir -p "$out"

"$root/deploy/local/cluster.sh" start "$dir" --compute 1 --storage "$storage" --backend "$backend" \
  --functions "$root/guests/out/examples" --functions "$root/guests/out/tests" >/dev/null
compute_invoke=$(awk '$2 == "compute" {print $3; exit}' "$dir/endpoints")
compute_upload=$(awk '$2 == "compute" {print $4; exit}' "$dir/endpoints")
compute_invoke=${compute_invoke%/}
compute_upload=${compute_upload%/}

metric() { # metric SAMPLE: the compute node's value of one /metrics sample
  curl -s --noproxy '*' "$compute_invoke/metrics" | awk -v s="$1" '$1 == s {print $2}'
}
run() { # run LABEL FUNCTION USER INPUT [--forbid-ndp]
  "$bench" run --url "$compute_invoke" --user "$3" --function "$2" --input "$4" ${5:-} \
    --concurrency 1 --duration "$seconds" --warmup 1 --metrics "$compute_invoke" \
    --out "$out" --label "$1" >/dev/null
  printf '%-28s %s\n' "$1" "$(grep -E '^latency ms' "$out/$1.txt" | tr -s ' ' | tr '\n' ' ')"
}

echo "== offload round trip (test/probe: dirty pages both ways), whole call latency"
for kib in ${DIRTY_KIB:-0 1024 16384 65536}; do
  run "probe-${kib}k-ndp" probe test "k0 0 $kib 0"
  run "probe-${kib}k-forbid" probe test "k0 0 $kib 0" --forbid-ndp
done

echo "== wordcount of a 64 MiB object"
python3 - "$dir/words" <<'EOF'
import random, sys
random.seed(1)
words = [f"w{i}" for i in range(40)]
with open(sys.argv[1], "w") as f:
    out, n = [], 0
    while n < 64 << 20:
        w = random.choice(words) + " "
        out.append(w); n += len(w)
    f.write("".join(out)[: 64 << 20])
EOF
curl -s --noproxy '*' -X PUT --data-binary @"$dir/words" "$compute_upload/o/ndp/big" >/dev/null
for mode in ndp forbid; do
  flag=""; [ "$mode" = forbid ] && flag="--forbid-ndp"
  sent0=$(metric 'ferry_offload_bytes_total{direction="sent"}')
  recv0=$(metric 'ferry_offload_bytes_total{direction="received"}')
  curl -s --noproxy '*' -X POST "$compute_invoke/f/" \
    -d "{\"user\": \"ndp\", \"function\": \"wordcount\", \"input_data\": \"big\", \"forbid_ndp\": $([ $mode = forbid ] && echo true || echo false)}" >/dev/null
  sent1=$(metric 'ferry_offload_bytes_total{direction="sent"}')
  recv1=$(metric 'ferry_offload_bytes_total{direction="received"}')
  echo "wordcount-64m-$mode: offload pages sent $((${sent1%.*} - ${sent0%.*})) B, received $((${recv1%.*} - ${recv0%.*})) B"
  run "wordcount-64m-$mode" wordcount ndp big $flag
done
if [ "$backend" = ceph ]; then
  echo "(forbid_ndp reads the object from RADOS on the compute node: 67108864 B from its primary OSD per call)"
else
  echo "(forbid_ndp moves the object itself: 67108864 B over the transport per call)"
fi
echo "results in $out"
