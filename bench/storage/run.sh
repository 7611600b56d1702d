#!/usr/bin/env bash
# Storage read benchmarks, each beside its baseline twin and reported as a
# ratio (see bench/README.md, "## Storage"):
#
#  (a) RADOS: ferry's RadosStore read path (storage/examples/read_bench.rs:
#      read_into from a glommio shard through the store's librados threads)
#      against `rados bench seq` and `rados bench rand`, same cluster, same
#      object count and size, same number of reads in flight.
#  (b) Embedded: the embedded store's O_DIRECT reads through glommio against
#      `dd iflag=direct bs=1M` over the same number of bytes, same disk.
#
# Environment (defaults in brackets):
#   OBJECTS [256] SIZE [4194304] IN_FLIGHT [16]   for (a)
#   E_OBJECTS [16] E_SIZE [67108864]              for (b), one read at a time
#   REPS [3]            each measurement is the median of this many runs
#   FERRY_BENCH_DIR     where (b) writes: the disk under test
#                       [storage-bench in the cargo target directory]
#   CARGO_TARGET_DIR    as for cargo [target]
#
# Needs ceph-mon, ceph-osd, ceph-common (deploy/ceph/start.sh) and a
# filesystem with O_DIRECT (ext4, xfs) under FERRY_BENCH_DIR.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "$0")/../.." && pwd)
objects=${OBJECTS:-256}
size=${SIZE:-4194304}
in_flight=${IN_FLIGHT:-16}
e_objects=${E_OBJECTS:-16}
e_size=${E_SIZE:-67108864}
reps=${REPS:-3}
target=${CARGO_TARGET_DIR:-$root/target}
bench_dir=${FERRY_BENCH_DIR:-$target/storage-bench}

cd "$root"
cargo build --release -p ferry-storage --example read_bench
read_bench=$target/release/examples/read_bench

mkdir -p "$bench_dir"
log=$bench_dir/run.log
: >"$log"
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ferry-storage-bench.XXXXXX")
ceph_dir=$scratch/ceph
cleanup() {
  if [ -f "$ceph_dir/pids" ]; then
    bash "$root/deploy/ceph/stop.sh" "$ceph_dir" >/dev/null || true
  fi
  rm -rf "$scratch" "$bench_dir/store" "$bench_dir/dd.bin"
}
trap cleanup EXIT

# Median of the numbers on stdin.
median() {
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'
}
# Runs "$@" once, logging its output; prints the MiB/s that the parser
# named in $1 finds in it.
once() {
  local parse=$1 value
  shift
  value=$("$@" 2>&1 | tee -a "$log" | "$parse")
  if [ -z "$value" ]; then
    echo "run.sh: no throughput in the output of: $*" >&2
    return 1
  fi
  echo "$value"
}
parse_ferry() { sed -n 's/^MiB\/s=//p'; }
# rados bench prints "Bandwidth (MB/sec):"; its MB is 2^20 bytes.
parse_rados() { sed -n 's/^Bandwidth (MB\/sec): *//p'; }
# dd's last line: "N bytes (...) copied, S s, ..."
parse_dd() { awk '/copied/ { printf "%.1f\n", $1 / $(NF - 3) / 1048576 }'; }

echo "== (a) RADOS: $objects objects of $size bytes, $in_flight reads in flight"
data_bytes=$((objects * size))
# ferry's objects and rados bench's, and memstore's ~2x overhead.
FERRY_CEPH_MEMSTORE_BYTES=$((4 * data_bytes + (1 << 30))) \
  bash deploy/ceph/start.sh "$ceph_dir" | tee -a "$log"
conf=$ceph_dir/ceph.conf
rados_cmd=(rados -c "$conf" -p ferry)

ferry_rados() {
  "$read_bench" --backend rados --conf "$conf" --objects "$objects" --size "$size" \
    --in-flight "$in_flight" "$@"
}
# rados bench's objects, for seq and rand to read.
"${rados_cmd[@]}" bench 60 write -b "$size" -O "$size" -t "$in_flight" --max-objects "$objects" \
  --no-cleanup >>"$log" 2>&1
# Each repetition runs every variant once, so that load from elsewhere on
# the machine spreads over all of them.
: >"$scratch/once" >"$scratch/seq" >"$scratch/long" >"$scratch/rand" >"$scratch/default"
for _ in $(seq 1 "$reps"); do
  once parse_ferry ferry_rados --threads "$in_flight" >>"$scratch/once"
  once parse_rados "${rados_cmd[@]}" bench 10 seq -t "$in_flight" --no-verify >>"$scratch/seq"
  once parse_ferry ferry_rados --threads "$in_flight" --seconds 10 >>"$scratch/long"
  once parse_rados "${rados_cmd[@]}" bench 10 rand -t "$in_flight" --no-verify >>"$scratch/rand"
  once parse_ferry ferry_rados >>"$scratch/default"
done
ferry_once=$(median <"$scratch/once")
rados_seq=$(median <"$scratch/seq")
ferry_long=$(median <"$scratch/long")
rados_rand=$(median <"$scratch/rand")
ferry_default=$(median <"$scratch/default")
"${rados_cmd[@]}" cleanup >>"$log" 2>&1
bash deploy/ceph/stop.sh "$ceph_dir" >/dev/null

echo "== (b) embedded: $e_objects objects of $e_size bytes, one read at a time, in $bench_dir"
rm -rf "$bench_dir/store"
e_bytes=$((e_objects * e_size))
dd if=/dev/urandom of="$bench_dir/dd.bin" bs=1M count=$((e_bytes >> 20)) oflag=direct status=none
: >"$scratch/embedded" >"$scratch/dd"
for _ in $(seq 1 "$reps"); do
  once parse_ferry "$read_bench" --backend embedded --dir "$bench_dir/store" \
    --objects "$e_objects" --size "$e_size" --in-flight 1 --passes 2 >>"$scratch/embedded"
  once parse_dd dd if="$bench_dir/dd.bin" of=/dev/null bs=1M iflag=direct >>"$scratch/dd"
done
embedded=$(median <"$scratch/embedded")
dd_mib=$(median <"$scratch/dd")

row() { printf '    %-58s %10s\n' "$1" "$2"; }
echo
echo "== Storage reads, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, median of $reps runs (MiB/s)"
echo "(a) RADOS, one memstore OSD on 127.0.0.1, $objects x $size bytes, $in_flight in flight"
row "ferry RadosStore, $in_flight threads, each object once" "$ferry_once"
row "rados bench 10 seq -t $in_flight --no-verify" "$rados_seq"
row "ratio ferry / rados bench seq" "$(ratio "$ferry_once" "$rados_seq")"
row "ferry RadosStore, $in_flight threads, round and round for 10 s" "$ferry_long"
row "rados bench 10 rand -t $in_flight --no-verify" "$rados_rand"
row "ratio ferry / rados bench rand" "$(ratio "$ferry_long" "$rados_rand")"
row "ferry RadosStore, default threads, each object once" "$ferry_default"
echo "(b) embedded store vs dd, $e_objects x $e_size bytes, O_DIRECT, same disk"
row "ferry EmbeddedStore read_into, one object at a time" "$embedded"
row "dd if=FILE of=/dev/null bs=1M iflag=direct" "$dd_mib"
row "ratio ferry / dd" "$(ratio "$embedded" "$dd_mib")"
cat <<EOF

Per-object latency of each ferry run (full output in $log):
$(grep '^read_bench [a-z]*:' "$log" | sed 's/^/    /')
EOF
