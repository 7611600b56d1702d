#!/usr/bin/env bash
# A ferry cluster on this machine's loopback: M compute nodes and N storage
# nodes, each its own `ferry node` process on its own 127.x address, all
# described by one cluster config, everything under the scratch directory DIR.
#
#   deploy/local/cluster.sh start DIR [--compute M] [--storage N]
#       [--backend embedded|ceph] [--functions D]... [--binary PATH] [--cores C]
#   deploy/local/cluster.sh stop DIR
#   deploy/local/cluster.sh status DIR
#
# Addresses: compute-j listens on 127.0.1.(j+1), storage-i on 127.0.2.(i+1),
# each on the default ports (8080 invocations, 8002 uploads, 7000 transport).
# Linux routes all of 127.0.0.0/8 to lo, so no setup and no root is needed.
#
# `start` writes
#   DIR/cluster.toml     the cluster config every node reads (README, "A cluster")
#   DIR/endpoints        one line per node: NAME ROLE INVOKE_URL UPLOAD_URL
#   DIR/NAME/{data,log,pid,ready}
# and returns once every node's GET /healthz answers 200. With --backend ceph
# it first starts a Ceph with one memstore OSD per storage node
# (deploy/ceph/start.sh DIR/ceph --osds N): osd.i sits under CRUSH host
# `storage-i`, which is storage-i's `ceph_host`, so a funclet goes to the
# storage node of its object's primary OSD, and follows the OSD map when an
# OSD stops (deploy/ceph/osd.sh DIR/ceph stop|start I).
#
# `stop` sends TERM to every node, KILL to any still running after
# FERRY_CLUSTER_STOP_S, stops the Ceph it started, and keeps DIR's data and
# logs. `status` prints each node and whether /healthz answers (exit 1 if
# any does not).
#
# Environment:
#   FERRY_CLUSTER_READY_S  how long `start` waits for /healthz (default 60)
#   FERRY_CLUSTER_STOP_S   how long `stop` waits after TERM (default 10)
#   FERRY_LOG              the nodes' log filter (default info)
#   FERRY_CEPH_POOL, FERRY_CEPH_MEMSTORE_BYTES, FERRY_CEPH_READY_S
#                          passed to deploy/ceph/start.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
me=cluster.sh
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<EOF
usage: deploy/local/cluster.sh start DIR [--compute M] [--storage N]
           [--backend embedded|ceph] [--functions D]... [--binary PATH] [--cores C]
       deploy/local/cluster.sh stop DIR
       deploy/local/cluster.sh status DIR

  --compute M    compute nodes, on 127.0.1.1.. (default 1)
  --storage N    storage nodes, on 127.0.2.1.. (default 2)
  --backend B    embedded (objects on the storage nodes' disks, default) or
                 ceph (a Ceph with one OSD per storage node, in DIR/ceph)
  --functions D  a <user>/<function>.wasm tree every node loads; repeatable
                 (default: guests/out/examples)
  --binary PATH  the ferry binary (default: target/release/ferry)
  --cores C      shards per node (default 1)
EOF
}

# A whole number in [min, max], or a usage error naming the flag.

# The layout of DIR; every command derives paths from here.
set_dir() {
  # The path goes into TOML strings unescaped.
  case "$PWD/$1" in
    *'"'* | *\\* | *[[:space:]]*) die "$1: use a directory path without quotes, backslashes or spaces" ;;
  esac
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  config=$dir/cluster.toml
  endpoints=$dir/endpoints
  ceph_dir=$dir/ceph
}

# Whether PID is still the ferry node NAME of this cluster (a recycled pid,
# or a node of another cluster, is left alone).
ours() {
  local pid=$1 name=$2 cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  case "$cmdline" in
    *" node --config $config --name $name "*) return 0 ;;
    *) return 1 ;;
  esac
}

# The node names that have a directory under DIR with a pid file.

# The pid of node NAME if it is running, else nothing (and status 1).
running_pid() {
  local name=$1 pid
  pid=$(cat "$dir/$name/pid" 2>/dev/null) || return 1
  case "$pid" in '' | *[!0-9]*) return 1 ;; esac
  ours "$pid" "$name" || return 1
  echo "$pid"
}

ceph_running() {
  local pid
  [ -f "$ceph_dir/pids" ] || return 1
  while read -r _ pid; do
    [ -n "$pid" ] || continue
    case "$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline")" in
      ceph-*"$ceph_dir/ceph.conf"*) return 0 ;;
    esac
  done <"$ceph_dir/pids"
  return 1
}

# The HTTP status of GET URL (000 when nothing answers). Never through a
# proxy: this is loopback traffic.
http_status() {
  curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" 2>/dev/null || true
}

# Whether something accepts connections on HOST:PORT.
listening() {
  timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null
}

# Stops every node (TERM, then KILL after the wait) and the Ceph in DIR/ceph.
# Status 1 if anything survived.
stop_all() {
  local name pid i survivors=0 stop_s=${FERRY_CLUSTER_STOP_S:-10} deadline
  check_count FERRY_CLUSTER_STOP_S "$stop_s" 1 600
  local -a names=() pids=()
  for name in $(node_names); do
    if pid=$(running_pid "$name"); then
      names+=("$name")
      pids+=("$pid")
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  deadline=$(($(date +%s) + stop_s))
  for i in "${!pids[@]}"; do
    while ours "${pids[i]}" "${names[i]}" && [ "$(date +%s)" -lt "$deadline" ]; do
      sleep 0.1
    done
    if ours "${pids[i]}" "${names[i]}"; then
      echo "$me: ${names[i]} (pid ${pids[i]}) still running ${stop_s} s after TERM; killing it" >&2
      kill -KILL "${pids[i]}" 2>/dev/null || true
      for _ in $(seq 1 50); do
        ours "${pids[i]}" "${names[i]}" || break
        sleep 0.1
      done
    fi
    if ours "${pids[i]}" "${names[i]}"; then
      echo "$me: ${names[i]} (pid ${pids[i]}) survived KILL" >&2
      survivors=1
    else
      rm -f "$dir/${names[i]}/pid" "$dir/${names[i]}/ready"
    fi
  done
  # Pid files of nodes that had already exited.
  for name in $(node_names); do
    running_pid "$name" >/dev/null || rm -f "$dir/$name/pid" "$dir/$name/ready"
  done
  if [ -d "$ceph_dir" ]; then
    bash "$root/deploy/ceph/stop.sh" "$ceph_dir" >&2 || survivors=1
  fi
  echo "$me: stopped ${#pids[@]} node(s) in $dir" >&2
  return "$survivors"
}

# Whether PID exists and has not exited. Unlike `ours`, true from the fork
# on, before setsid and ferry are exec'd.

# The last lines of node NAME's log, on stderr.
log_tail() {
  echo "--- last lines of $dir/$1/log" >&2
  tail -n 40 "$dir/$1/log" >&2 2>/dev/null || echo "(no log)" >&2
}

# Waits until every node in NAMES answers /healthz with 200; a node that
# exits or the deadline fails the start.
wait_healthy() {
  local deadline=$1 name host
  local -a pending
  shift
  while :; do
    pending=()
    for name in "$@"; do
      host=${hosts[$name]}
      if [ "$(http_status "http://$host:8080/healthz")" != 200 ]; then
        alive "$(cat "$dir/$name/pid")" || {
          log_tail "$name"
          die "$name exited during start-up"
        }
        pending+=("$name")
      fi
    done
    [ "${#pending[@]}" -eq 0 ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for name in "${pending[@]}"; do log_tail "$name"; done
      die "no 200 from /healthz of ${pending[*]} within ${ready_s} s"
    fi
    sleep 0.2
  done
}

# Starts node NAME in the background; its pid goes to DIR/NAME/pid.
launch() {
  local name=$1 node_dir=$dir/$1 d
  local -a functions_args=()
  for d in "${functions[@]}"; do functions_args+=(--functions "$d"); done
  mkdir -p "$node_dir/data"
  rm -f "$node_dir/ready"
  # setsid: the node outlives this script and the terminal's signals. The
  # node's argv starts with `node --config FILE --name NAME`: `ours` matches
  # on it.
  # NO_COLOR: the log is a file, not a terminal (tracing-subscriber honours it).
  FERRY_LOG=${FERRY_LOG:-info} NO_COLOR=${NO_COLOR:-1} setsid "$binary" node --config "$config" --name "$name" \
    --data "$node_dir/data" --ready-file "$node_dir/ready" --cores "$cores" \
    "${functions_args[@]}" </dev/null >"$node_dir/log" 2>&1 &
  echo "$!" >"$node_dir/pid"
}

# Every node's ready file names the pid that serves; it must be the one we
# recorded, or stop would signal the wrong process.
check_ready_pids() {
  local name recorded reported
  for name in "$@"; do
    recorded=$(cat "$dir/$name/pid")
    reported=$(sed -n 's/.*"pid": *\([0-9]*\).*/\1/p' "$dir/$name/ready" 2>/dev/null || true)
    if [ -n "$reported" ] && [ "$reported" != "$recorded" ]; then
      die "$name serves as pid $reported but was started as pid $recorded"
    fi
  done
}

# The EXIT trap of a start in progress: a start that fails stops what it
# started.
on_start_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "$me: start failed; stopping what it started" >&2
    stop_all || true
  fi
}

cmd_start() {
  local compute=1 storage=2 backend=embedded cores=1 binary=$root/target/release/ferry
  local -a functions=()
  while [ $# -gt 0 ]; do
    local flag=$1 value
    case "$flag" in
      --*=*)
        value=${flag#*=}
        flag=${flag%%=*}
        shift
        ;;
      -h | --help) usage; exit 0 ;;
      --*)
        [ $# -ge 2 ] || die_usage "$flag needs a value"
        value=$2
        shift 2
        ;;
      *) die_usage "unexpected argument '$flag'" ;;
    esac
    case "$flag" in
      --compute) check_count "$flag" "$value" 1 254 && compute=$((10#$value)) ;;
      --storage) check_count "$flag" "$value" 1 254 && storage=$((10#$value)) ;;
      --cores) check_count "$flag" "$value" 1 1024 && cores=$((10#$value)) ;;
      --backend)
        case "$value" in
          embedded | ceph) backend=$value ;;
          *) die_usage "--backend is embedded or ceph, got '$value'" ;;
        esac
        ;;
      --functions)
        [ -d "$value" ] || die "--functions $value: no such directory"
        functions+=("$(cd "$value" && pwd)")
        ;;
      --binary) binary=$value ;;
      *) die_usage "unknown option '$flag'" ;;
    esac
  done
  ready_s=${FERRY_CLUSTER_READY_S:-60}
  check_count FERRY_CLUSTER_READY_S "$ready_s" 1 3600
  # One OSD per storage node, and start.sh runs at most 16.
  [ "$backend" != ceph ] || check_count --storage "$storage" 1 16
  set_dir "$dir_arg"

  if [ "${#functions[@]}" -eq 0 ]; then
    [ -d "$root/guests/out/examples" ] ||
      die "$root/guests/out/examples not found; build the examples with: bash guests/build.sh guests/out"
    functions=("$root/guests/out/examples")
  fi
  case "$binary" in /*) ;; *) binary=$PWD/$binary ;; esac
  [ -x "$binary" ] ||
    die "$binary not found; build it with: cargo build --release -p ferry-runtime --features rdma"
  command -v curl >/dev/null || die "curl not found; install with: apt-get install -y curl"

  # Refuse to start over a running cluster: its nodes would hold the
  # addresses and its pid files would be overwritten.
  local name
  for name in $(node_names); do
    if running_pid "$name" >/dev/null; then
      die "$dir already holds a running cluster ($name is up); stop it first: $0 stop $dir"
    fi
  done
  if ceph_running; then
    die "$dir/ceph holds a running Ceph; stop it first: $0 stop $dir"
  fi
  # Leftovers of a cluster that died: start.sh wants a fresh Ceph directory.
  if [ -d "$ceph_dir" ]; then
    bash "$root/deploy/ceph/stop.sh" "$ceph_dir" >&2 ||
      die "could not clear the old Ceph directory $ceph_dir"
  fi

  declare -gA hosts=() roles=()
  local -a compute_names=() storage_names=()
  local i
  for ((i = 0; i < storage; i++)); do
    storage_names+=("storage-$i")
    hosts[storage-$i]=127.0.2.$((i + 1))
    roles[storage-$i]=storage
  done
  for ((i = 0; i < compute; i++)); do
    compute_names+=("compute-$i")
    hosts[compute-$i]=127.0.1.$((i + 1))
    roles[compute-$i]=compute
  done
  local -a all_names=("${storage_names[@]}" "${compute_names[@]}")

  # Every address must be free before anything starts: a stray listener
  # would otherwise answer /healthz for a node that failed to bind.
  local port
  for name in "${all_names[@]}"; do
    for port in 8080 8002 7000; do
      if listening "${hosts[$name]}" "$port"; then
        die "${hosts[$name]}:$port is already in use (another cluster or a ferry up?)"
      fi
    done
  done

  # From here on, a failed start stops whatever it started.
  trap on_start_exit EXIT
  trap 'exit 130' INT TERM

  local storage_table='[storage]
backend = "embedded"'
  if [ "$backend" = ceph ]; then
    local pool=${FERRY_CEPH_POOL:-ferry}
    echo "$me: starting a Ceph with $storage OSD(s) in $ceph_dir" >&2
    FERRY_CEPH_POOL=$pool bash "$root/deploy/ceph/start.sh" "$ceph_dir" --osds "$storage" >"$dir/ceph.out" ||
      die "deploy/ceph/start.sh failed (its output: $dir/ceph.out)"
    storage_table="[storage]
backend = \"ceph\"
ceph_conf = \"$ceph_dir/ceph.conf\"
ceph_pool = \"$pool\""
  fi

  {
    echo "# Written by deploy/local/cluster.sh; every node reads it with"
    echo "# ferry node --config $config --name NAME"
    echo "$storage_table"
    for name in "${all_names[@]}"; do
      echo
      echo "[[nodes]]"
      echo "name = \"$name\""
      echo "role = \"${roles[$name]}\""
      echo "host = \"${hosts[$name]}\""
      echo "http_port = 8080"
      echo "upload_port = 8002"
      echo "transport_port = 7000"
      # The CRUSH host of this node's OSD (deploy/ceph/start.sh names them).
      if [ "$backend" = ceph ] && [ "${roles[$name]}" = storage ]; then
        echo "ceph_host = \"$name\""
      fi
    done
  } >"$config"
  for name in "${all_names[@]}"; do
    echo "$name ${roles[$name]} http://${hosts[$name]}:8080/ http://${hosts[$name]}:8002/"
  done >"$endpoints"

  # Storage nodes first: a compute node's first calls go to them. Each phase
  # waits for /healthz, which answers once the start-up uploads are done.
  local started_s
  started_s=$(date +%s)
  for name in "${storage_names[@]}"; do launch "$name"; done
  wait_healthy $(($(date +%s) + ready_s)) "${storage_names[@]}"
  for name in "${compute_names[@]}"; do launch "$name"; done
  wait_healthy $(($(date +%s) + ready_s)) "${compute_names[@]}"
  check_ready_pids "${all_names[@]}"

  trap - EXIT INT TERM
  echo "$me: $compute compute and $storage storage node(s) healthy in $(($(date +%s) - started_s)) s ($backend backend); endpoints in $endpoints:" >&2
  cat "$endpoints"
}

cmd_stop() {
  [ $# -eq 0 ] || die_usage "stop takes no options"
  if [ ! -f "$config" ] && [ -z "$(node_names)" ] && [ ! -d "$ceph_dir" ]; then
    echo "$me: $dir holds no cluster; nothing to stop" >&2
    return 0
  fi
  stop_all || die "something in $dir is still running"
}

cmd_status() {
  [ $# -eq 0 ] || die_usage "status takes no options"
  [ -f "$endpoints" ] || die "$dir holds no cluster ($endpoints is missing)"
  local name role invoke upload pid health code all_ok=0
  printf '%-12s %-8s %-8s %-12s %-24s %s\n' NAME ROLE PID HEALTHZ INVOKE UPLOAD
  while read -r name role invoke upload; do
    [ -n "$name" ] || continue
    pid=$(running_pid "$name") || pid=-
    code=$(http_status "${invoke}healthz")
    if [ "$code" = 200 ]; then health=ok; else health="down($code)"; all_ok=1; fi
    printf '%-12s %-8s %-8s %-12s %-24s %s\n' "$name" "$role" "$pid" "$health" "$invoke" "$upload"
  done <"$endpoints"
  if [ -d "$ceph_dir" ]; then
    if ceph_running; then
      echo "ceph: running, conf $ceph_dir/ceph.conf"
    else
      echo "ceph: not running ($ceph_dir)"
      all_ok=1
    fi
  fi
  return "$all_ok"
}

[ $# -ge 1 ] || die_usage "no command"
case "$1" in
  -h | --help | help) usage; exit 0 ;;
  start | stop | status) ;;
  *) die_usage "unknown command '$1'" ;;
esac
command=$1
[ $# -ge 2 ] || die_usage "$command needs a directory"
case "$2" in -h | --help) usage; exit 0 ;; -*) die_usage "$command needs a directory before options" ;; esac
for arg in "${@:3}"; do
  case "$arg" in -h | --help) usage; exit 0 ;; esac
done
if [ "$command" != start ] && [ ! -d "$2" ]; then
  echo "$me: $2 does not exist; no cluster there" >&2
  [ "$command" = stop ] && exit 0
  exit 1
fi
dir_arg=$2
shift 2
# start creates DIR once its arguments are checked.
[ "$command" = start ] || set_dir "$dir_arg"
"cmd_$command" "$@"
