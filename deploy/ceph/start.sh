#!/usr/bin/env bash
# Starts a throwaway Ceph cluster for tests and benchmarks: one monitor and
# one memstore OSD, bound to 127.0.0.1, everything (config, mon and osd data,
# logs, sockets, pid files) under the scratch directory DIR.
#
#   deploy/ceph/start.sh DIR        then   deploy/ceph/stop.sh DIR
#
# Writes DIR/ceph.conf (pass it to librados, `rados -c`, `ceph -c`), creates
# one pool of size 1 and returns once a `rados put` into it succeeds. The last
# line printed is the path of the config file.
#
# Environment:
#   FERRY_CEPH_POOL            pool to create (default: ferry)
#   FERRY_CEPH_MEMSTORE_BYTES  the OSD's memstore size (default: 2 GiB). The
#                              cap is soft, and memstore keeps about twice
#                              the stored bytes in RAM: size it for the data.
#   FERRY_CEPH_READY_S         how long to wait for the first write (default 60)
#
# Needs Debian's ceph-mon, ceph-osd and ceph-common packages. No systemd, no
# manager daemon, no cephx (auth none): this is for tests on one machine,
# never for data anyone wants to keep.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
pool=${FERRY_CEPH_POOL:-ferry}
memstore_bytes=${FERRY_CEPH_MEMSTORE_BYTES:-$((2 << 30))}
ready_s=${FERRY_CEPH_READY_S:-60}

for value in "$memstore_bytes" "$ready_s"; do
  case "$value" in
    '' | *[!0-9]*)
      echo "start.sh: FERRY_CEPH_MEMSTORE_BYTES and FERRY_CEPH_READY_S take whole numbers, got '$value'" >&2
      exit 2
      ;;
  esac
done

for tool in ceph-mon ceph-osd ceph rados monmaptool; do
  if ! command -v "$tool" >/dev/null; then
    echo "start.sh: $tool not found; install with: apt-get install -y ceph-mon ceph-osd ceph-common" >&2
    exit 1
  fi
done

if [ -e "$dir" ] && [ -n "$(ls -A "$dir" 2>/dev/null)" ]; then
  echo "start.sh: $dir exists and is not empty; give a fresh directory" >&2
  exit 1
fi
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf
mkdir -p "$dir/mon" "$dir/osd/ceph-0" "$dir/log" "$dir/run"
: >"$dir/pids"

started_ns=$(date +%s%N)

fail() {
  echo "start.sh: $*" >&2
  for log in "$dir"/log/mon.a.log "$dir"/log/osd.0.log "$dir"/log/*.out; do
    [ -s "$log" ] || continue
    echo "--- last lines of $log" >&2
    tail -n 30 "$log" >&2
  done
  echo "start.sh: daemons that did start are still running; stop them with deploy/ceph/stop.sh $dir" >&2
  exit 1
}

# A free port for the monitor, so that several clusters can run side by
# side. Random in the upper range; a port is taken if a connection to it
# succeeds. The window between the check and the monitor's bind is a
# fraction of a second.
pick_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
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
osd pool default size = 1
osd pool default min size = 1
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0

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
EOF

# Monitor: a one-entry monitor map, an empty store, then the daemon.
monmaptool --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$port]" "$dir/monmap" \
  >"$dir/log/monmaptool.out" 2>&1 || fail "monmaptool failed"
ceph-mon -c "$conf" --mkfs -i a --monmap "$dir/monmap" \
  >"$dir/log/mon-mkfs.out" 2>&1 || fail "ceph-mon --mkfs failed"
setsid ceph-mon -c "$conf" -i a -f </dev/null >"$dir/log/mon.out" 2>&1 &
echo "mon $!" >>"$dir/pids"

# Every `ceph` call is bounded: a monitor that never answers fails the start
# instead of hanging it.
ceph_cmd() {
  timeout 30 ceph -c "$conf" --connect-timeout 20 "$@"
}

# OSD: registered with the monitor (which also answers once it is up), its
# memstore created, then the daemon.
osd_uuid=$(uuidgen 2>/dev/null || cat /proc/sys/kernel/random/uuid)
osd_id=$(ceph_cmd osd new "$osd_uuid" 2>"$dir/log/osd-new.out") ||
  fail "registering the OSD with the monitor failed (is the monitor up?)"
[ "$osd_id" = 0 ] || fail "expected OSD id 0, the monitor gave $osd_id"
ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" \
  >"$dir/log/osd-mkfs.out" 2>&1 || fail "ceph-osd --mkfs failed"
setsid ceph-osd -c "$conf" -i 0 -f </dev/null >"$dir/log/osd.out" 2>&1 &
echo "osd $!" >>"$dir/pids"

# The pool; size 1 comes from the defaults above.
ceph_cmd osd pool create "$pool" 8 8 >"$dir/log/pool-create.out" 2>&1 ||
  fail "creating pool $pool failed"
ceph_cmd osd pool application enable "$pool" rados >>"$dir/log/pool-create.out" 2>&1 ||
  fail "tagging pool $pool failed"

# Ready when a write goes through: the OSD is up, in, and its PGs active.
probe=$dir/run/probe
echo probe >"$probe"
deadline=$(( $(date +%s) + ready_s ))
until timeout 10 rados -c "$conf" -p "$pool" put ferry-ready-probe "$probe" >/dev/null 2>&1; do
  if [ "$(date +%s)" -ge "$deadline" ]; then
    fail "no write into pool $pool succeeded within ${ready_s} s"
  fi
  for entry in $(cut -d' ' -f2 "$dir/pids"); do
    kill -0 "$entry" 2>/dev/null || fail "a daemon (pid $entry) exited during start-up"
  done
  sleep 0.2
done
rados -c "$conf" -p "$pool" rm ferry-ready-probe >/dev/null 2>&1 || true

elapsed_ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
elapsed=$((elapsed_ms / 1000)).$(printf %03d $((elapsed_ms % 1000)))
echo "start.sh: ceph cluster up in ${elapsed} s (mon 127.0.0.1:$port, pool $pool, memstore $memstore_bytes bytes)"
echo "$conf"
