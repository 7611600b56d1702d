#!/usr/bin/env bash
# Starts a throwaway Ceph cluster for tests and benchmarks: one monitor and
# N memstore OSDs, bound to 127.0.0.1, everything (config, mon and osd data,
# logs, sockets, pid files) under the scratch directory DIR.
#
#   deploy/ceph/start.sh DIR [--osds N]     then   deploy/ceph/stop.sh DIR
#
# osd.i sits under its own CRUSH host `storage-i`, the name of the ferry
# storage node that fronts it (its `ceph_host`), so one machine stands in
# for N storage hosts: CRUSH spreads replicas and primaries over the hosts
# as it would over machines. Writes DIR/ceph.conf (pass it to librados,
# `rados -c`, `ceph -c`), creates one pool of size min(N, 3) (writes go on
# with one replica missing) and returns once every placement group is
# active+clean and a `rados put` succeeds. The last line printed is the
# path of the config file. deploy/ceph/osd.sh stops and restarts one OSD.
#
# Measured on a 2-core VM (Ceph 16), from start to every PG active+clean:
# 1 OSD in 1.0-1.9 s, 3 OSDs in 1.8-3.9 s, 5 in 4.7-7.4 s (the spread is
# the machine's other load). Resident: the monitor ~35 MiB, an idle OSD
# ~41 MiB, plus what it stores (a 64 MiB object: +64-77 MiB on each of
# the three OSDs that hold a replica).
#
# Environment:
#   FERRY_CEPH_POOL            pool to create (default: ferry)
#   FERRY_CEPH_PGS             its placement groups (default 8 for one OSD,
#                              32 for more, so every OSD is primary for some)
#   FERRY_CEPH_MEMSTORE_BYTES  each OSD's memstore size (default: 2 GiB). The
#                              cap is soft, and memstore keeps every stored
#                              byte in RAM, on every replica (and transiently
#                              more while writing): size it for the data.
#   FERRY_CEPH_READY_S         how long to wait for active+clean (default 60)
#
# Needs Debian's ceph-mon, ceph-osd and ceph-common packages. No systemd, no
# manager daemon, no cephx (auth none): this is for tests on one machine,
# never for data anyone wants to keep.
set -euo pipefail

usage() {
  echo "usage: $0 DIR [--osds N]" >&2
  exit 2
}

[ $# -ge 1 ] || usage
dir=$1
shift
osds=1
while [ $# -gt 0 ]; do
  case "$1" in
    --osds)
      [ $# -ge 2 ] || usage
      osds=$2
      shift 2
      ;;
    --osds=*)
      osds=${1#--osds=}
      shift
      ;;
    *) usage ;;
  esac
done
pool=${FERRY_CEPH_POOL:-ferry}
memstore_bytes=${FERRY_CEPH_MEMSTORE_BYTES:-$((2 << 30))}
ready_s=${FERRY_CEPH_READY_S:-60}

for value in "$osds" "$memstore_bytes" "$ready_s" "${FERRY_CEPH_PGS:-8}"; do
  case "$value" in
    '' | *[!0-9]*)
      echo "start.sh: --osds, FERRY_CEPH_PGS, FERRY_CEPH_MEMSTORE_BYTES and FERRY_CEPH_READY_S take whole numbers, got '$value'" >&2
      exit 2
      ;;
  esac
done
osds=$((10#$osds))
# Each OSD is a few dozen threads and ~45 MiB before data: more than 16 on
# one machine is not a test cluster any more.
if [ "$osds" -lt 1 ] || [ "$osds" -gt 16 ]; then
  echo "start.sh: --osds must be between 1 and 16, got $osds" >&2
  exit 2
fi
if [ "$osds" -eq 1 ]; then pgs=${FERRY_CEPH_PGS:-8}; else pgs=${FERRY_CEPH_PGS:-32}; fi
size=$((osds < 3 ? osds : 3))
# One replica may be missing and writes go on (size 3: min 2; size 2: min 1).
min_size=$((size > 1 ? size - 1 : 1))

for tool in ceph-mon ceph-osd ceph rados monmaptool; do
  if ! command -v "$tool" >/dev/null; then
    echo "start.sh: $tool not found; install with: apt-get install -y ceph-mon ceph-osd ceph-common" >&2
    exit 1
  fi
done
# The Python the ceph CLI runs on has the rados module pgs.py needs.
python=$(sed -n '1s/^#! *//p' "$(command -v ceph)")
case "$python" in */python3*) ;; *) python=/usr/bin/python3 ;; esac

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "start.sh: $dir exists and is not empty; give a fresh directory" >&2
  exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf
mkdir -p "$dir/mon" "$dir/log" "$dir/run"
: >"$dir/pids"

started_ns=$(date +%s%N)

fail() {
  echo "start.sh: $*" >&2
  for log in "$dir"/log/mon.a.log "$dir"/log/osd.*.log "$dir"/log/*.out; do
    [ -s "$log" ] || continue
    echo "--- last lines of $log" >&2
    tail -n 30 "$log" >&2
  done
  echo "start.sh: daemons that did start are still running; stop them with deploy/ceph/stop.sh $dir" >&2
  exit 1
}

# A free port for the monitor, so that several clusters can run side by
# side. Random below the kernel's ephemeral range (ip_local_port_range),
# where no outgoing connection and no port-0 listener can take it between
# this check and the monitor's bind (a port from the ephemeral range once
# became some connection's local port in that window, and the monitor
# failed to bind); free when a bind to it succeeds (python3), else when a
# connection to it fails.
pick_port() {
  local port low from=20000 span=30000
  low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
  if [ "${low:-0}" -gt 11000 ] 2>/dev/null; then
    from=10000 span=$((low - 10000))
  fi
  for _ in $(seq 1 50); do
    port=$((from + RANDOM % span))
    if command -v python3 >/dev/null; then
      python3 -c 'import socket, sys; socket.socket().bind(("127.0.0.1", int(sys.argv[1])))' "$port" \
        2>/dev/null || continue
    elif (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      continue
    fi
    echo "$port"
    return 0
  done
  return 1
}
port=$(pick_port) || fail "no free port found for the monitor"

fsid=$(uuidgen 2>/dev/null || cat /proc/sys/kernel/random/uuid)
cat >"$conf" <<EOF
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$port]
public addr = 127.0.0.1
ms bind msgr1 = false
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
keyring = /dev/null
run dir = $dir/run
log file = $dir/log/\$name.log
log to stderr = false
err to stderr = true
osd pool default size = $size
osd pool default min size = $min_size
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
# Replicas on distinct CRUSH hosts (each OSD has its own, see [osd.N]).
osd crush chooseleaf type = 1
# A hung OSD is marked down 5 s after its last heartbeat, on one peer's
# report (defaults: 20 s, stretched for laggy OSDs, two reporters). The
# monitor and the OSDs must agree on the grace, hence [global]. An OSD that
# exits is reported at once (its peers' connections are refused), and one
# stopped with TERM says so itself.
osd heartbeat interval = 1
osd heartbeat grace = 5
mon osd adjust heartbeat grace = false
mon osd min down reporters = 1

[mon]
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
mon data = $dir/mon/\$cluster-\$id
mon cluster log file = $dir/log/cluster.log
# Proposals every 100 ms instead of every second: pool creation and map
# changes take effect quickly.
paxos propose interval = 0.1
mon data avail crit = 0
mon data avail warn = 0

[osd]
pid file = $dir/run/\$name.pid
admin socket = $dir/run/\$name.asok
osd data = $dir/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = $memstore_bytes
# TERM saves memstore to DIR/osd before exiting (the fast path skips that),
# so a stopped OSD comes back with its objects (osd.sh start).
osd fast shutdown = false
# Two op shards instead of five: a few OSDs share two cores.
osd op num shards = 2
osd op num threads per shard = 1
EOF
for ((i = 0; i < osds; i++)); do
  printf '\n[osd.%d]\ncrush location = root=default host=storage-%d\n' "$i" "$i" >>"$conf"
done

# Monitor: a one-entry monitor map, an empty store, then the daemon.
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" \
  >"$dir/log/monmaptool.out" 2>&1 || fail "monmaptool failed"
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" \
  >"$dir/log/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs failed"
setsid ceph-mon -c "$conf" -i a -f </dev/null >"$dir/log/mon.out" 2>&1 &
echo "mon.a $!" >>"$dir/pids"

# Every `ceph` call is bounded: a monitor that never answers fails the start
# instead of hanging it.
ceph_cmd() {
  timeout 30 ceph -c "$conf" --connect-timeout 20 "$@"
}

# OSDs: each registered with the monitor (which also answers once it is
# up), its memstore created, then the daemon, which puts itself under its
# CRUSH host as it boots.
for ((i = 0; i < osds; i++)); do
  osd_uuid=$(uuidgen 2>/dev/null || cat /proc/sys/kernel/random/uuid)
  osd_id=$(ceph_cmd osd new "$osd_uuid" 2>"$dir/log/osd-new.out") ||
    fail "registering osd.$i with the monitor failed (is the monitor up?)"
  [ "$osd_id" = "$i" ] || fail "expected OSD id $i, the monitor gave $osd_id"
  mkdir -p "$dir/osd/ceph-$i"
  ceph-osd -c "$conf" -i "$i" --mkfs --osd-uuid "$osd_uuid" \
    >"$dir/log/osd-mkfs.$i.out" 2>&1 || fail "ceph-osd --mkfs of osd.$i failed"
  setsid ceph-osd -c "$conf" -i "$i" -f </dev/null >"$dir/log/osd.$i.out" 2>&1 &
  echo "osd.$i $!" >>"$dir/pids"
done

# The pool; its size comes from the defaults above.
ceph_cmd osd pool create "$pool" "$pgs" "$pgs" >"$dir/log/pool-create.out" 2>&1 ||
  fail "creating pool $pool failed"
ceph_cmd osd pool application enable "$pool" rados >>"$dir/log/pool-create.out" 2>&1 ||
  fail "tagging pool $pool failed"

# Ready when every PG is active+clean (all OSDs up, in, peered) and a write
# goes through.
deadline=$(($(date +%s) + ready_s))
"$python" "$(dirname "${BASH_SOURCE[0]}")/pgs.py" "$conf" "$ready_s" 2>"$dir/log/pgs.out" ||
  fail "the placement groups of $pool were not all active+clean within ${ready_s} s: $(cat "$dir/log/pgs.out")"
probe=$dir/run/probe
echo probe >"$probe"
until timeout 10 rados -c "$conf" -p "$pool" put ferry-ready-probe "$probe" >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    fail "no write into pool $pool succeeded within ${ready_s} s"
  fi
  while read -r name pid; do
    kill -0 "$pid" 2>/dev/null || fail "$name (pid $pid) exited during start-up"
  done <"$dir/pids"
  sleep 0.2
done
rados -c "$conf" -p "$pool" rm ferry-ready-probe >/dev/null 2>&1 || true

elapsed_ms=$((($(date +%s%N) - started_ns) / 1000000))
elapsed=$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))
echo "start.sh: ceph cluster up in ${elapsed} s (mon 127.0.0.1:$port, $osds OSD(s) on hosts storage-0..storage-$((osds - 1)), pool $pool of size $size with $pgs PGs all active+clean, memstore $memstore_bytes bytes per OSD)"
echo "$conf"
