#!/usr/bin/env bash
# Stops a cluster started by deploy/ceph/start.sh DIR and removes DIR.
#
# Only the processes recorded in DIR/pids are signalled, and only while they
# are still the Ceph daemons that start.sh launched there (a recycled pid is
# left alone). OSDs get KILL (their in-memory stores are thrown away with
# DIR), the monitor TERM and KILL if still running 5 s later.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
dir=$1
if [ ! -d "$dir" ]; then
  echo "stop.sh: $dir does not exist; nothing to stop" >&2
  exit 0
fi
dir=$(cd "$dir" && pwd)
if [ ! -f "$dir/pids" ] && [ ! -f "$dir/ceph.conf" ]; then
  echo "stop.sh: $dir holds neither pids nor ceph.conf; not a cluster from start.sh, left as is" >&2
  exit 1
fi

# Whether PID is still a ceph daemon started with this directory's config.
ours() {
  local pid=$1 cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  case "$cmdline" in
    ceph-*"$dir/ceph.conf"*) return 0 ;;
    *) return 1 ;;
  esac
}

names=()
pids=()
if [ -f "$dir/pids" ]; then
  while read -r name pid; do
    [ -n "$pid" ] || continue
    if ours "$pid"; then
      names+=("$name")
      pids+=("$pid")
    fi
  done <"$dir/pids"
fi

# The OSDs first, then the monitor. An OSD gets KILL at once: TERM would
# have it save its memstore to DIR/osd (osd fast shutdown = false), which
# is about to be removed. The monitor gets TERM.
for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
  pid=${pids[i]}
  case "${names[i]}" in
    osd*) kill -KILL "$pid" 2>/dev/null || true ;;
    *) kill -TERM "$pid" 2>/dev/null || true ;;
  esac
  for _ in $(seq 1 100); do
    ours "$pid" || break
    sleep 0.05
  done
  if ours "$pid"; then
    echo "stop.sh: ${names[i]} (pid $pid) did not exit within 5 s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do
      ours "$pid" || break
      sleep 0.05
    done
  fi
  if ours "$pid"; then
    echo "stop.sh: pid $pid survived KILL; leaving $dir in place" >&2
    exit 1
  fi
done

rm -rf "$dir"
echo "stop.sh: stopped ${#pids[@]} daemon(s), removed $dir"
