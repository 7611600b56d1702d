#!/usr/bin/env bash
# Stops or restarts one OSD of a cluster started by deploy/ceph/start.sh, to
# watch Ceph (and ferry's placement) follow the OSD map.
#
#   deploy/ceph/osd.sh DIR stop ID     TERM osd.ID and wait for it to exit
#   deploy/ceph/osd.sh DIR start ID    start osd.ID again; returns once the
#                                      OSD map shows it up and every PG is
#                                      active+clean again
#
# A stopped OSD tells the monitor it is going down (the map marks it down
# at once) and saves its memstore under DIR/osd, so it comes back with its
# objects and catches up by log recovery. DIR/pids follows the daemon's
# pid, so deploy/ceph/stop.sh still stops everything.
#
# Environment:
#   FERRY_CEPH_READY_S  how long `start` waits for the OSD to be up and the
#                       PGs clean (default 60)
set -euo pipefail

if [ $# -ne 3 ] || { [ "$2" != stop ] && [ "$2" != start ]; }; then
  echo "usage: $0 DIR stop|start ID" >&2
  exit 2
fi
dir=$1 command=$2 id=$3
case "$id" in
  '' | *[!0-9]*)
    echo "osd.sh: ID is an OSD number, got '$id'" >&2
    exit 2
    ;;
esac
ready_s=${FERRY_CEPH_READY_S:-60}
if [ ! -f "$dir/pids" ] || [ ! -f "$dir/ceph.conf" ]; then
  echo "osd.sh: $dir holds no cluster from deploy/ceph/start.sh" >&2
  exit 1
fi
dir=$(cd "$dir" && pwd)
conf=$dir/ceph.conf

# The running pid of osd.ID, if it is still the daemon start.sh launched.
running() {
  local name pid
  while read -r name pid; do
    [ "$name" = "osd.$id" ] || continue
    case "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" in
      "ceph-osd -c $conf -i $id "*) echo "$pid" && return 0 ;;
    esac
  done <"$dir/pids"
  return 1
}

case "$command" in
  stop)
    pid=$(running) || {
      echo "osd.sh: osd.$id is not running" >&2
      exit 1
    }
    kill -TERM "$pid"
    # The OSD waits for the monitor's acknowledgement (at most
    # osd_mon_shutdown_timeout, 5 s), then writes its memstore to DIR/osd.
    for _ in $(seq 1 600); do
      running >/dev/null || break
      sleep 0.05
    done
    if running >/dev/null; then
      echo "osd.sh: osd.$id (pid $pid) did not exit within 30 s of TERM" >&2
      exit 1
    fi
    echo "osd.sh: osd.$id stopped"
    ;;
  start)
    if pid=$(running); then
      echo "osd.sh: osd.$id is already running (pid $pid)" >&2
      exit 1
    fi
    grep -q "^osd\.$id " "$dir/pids" || {
      echo "osd.sh: no osd.$id in $dir/pids" >&2
      exit 1
    }
    setsid ceph-osd -c "$conf" -i "$id" -f </dev/null >>"$dir/log/osd.$id.out" 2>&1 &
    pid=$!
    sed -i "s/^osd\.$id .*/osd.$id $pid/" "$dir/pids"
    deadline=$(($(date +%s) + ready_s))
    until timeout 30 ceph -c "$conf" --connect-timeout 20 osd dump 2>/dev/null |
      grep -q "^osd\.$id up "; do
      kill -0 "$pid" 2>/dev/null || {
        echo "osd.sh: osd.$id exited while starting; see $dir/log/osd.$id.log" >&2
        exit 1
      }
      if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "osd.sh: osd.$id not up within ${ready_s} s" >&2
        exit 1
      fi
      sleep 0.2
    done
    python=$(sed -n '1s/^#! *//p' "$(command -v ceph)")
    case "$python" in */python3*) ;; *) python=/usr/bin/python3 ;; esac
    left=$((deadline - $(date +%s)))
    "$python" "$(dirname "${BASH_SOURCE[0]}")/pgs.py" "$conf" "$((left > 1 ? left : 1))" || {
      echo "osd.sh: osd.$id is up but the PGs are not all active+clean" >&2
      exit 1
    }
    echo "osd.sh: osd.$id up (pid $pid), every PG active+clean"
    ;;
esac
