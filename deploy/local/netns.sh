#!/usr/bin/env bash
# An emulated cluster on this machine: every ferry node and the load
# generator in its own network namespace, joined by veth pairs to one bridge,
# every storage node's link shaped with tc (tbf) to a given rate, so that
# what crosses a storage link costs what it would on a real network of that
# speed. Root and iproute2 only.
#
#   deploy/local/netns.sh up DIR [--compute M] [--storage N] [--rate 10gbit]
#       [--burst BYTES] [--delay-us D] [--functions D]... [--binary PATH] [--cores C]
#       [--pin spread|none]
#   deploy/local/netns.sh down DIR
#   deploy/local/netns.sh exec DIR NAME COMMAND [ARGS...]
#   deploy/local/netns.sh status DIR
#
# Topology (all of it inside namespaces named fy<hash of DIR>-*, so clusters
# in different directories never meet, and the root namespace is untouched):
#
#   fyXXXXXX-switch: bridge br0, one veth end per member (s0.., c0.., lg)
#   fyXXXXXX-storage-i: eth0 10.77.2.(i+1)/16   tbf on eth0 and on its switch end
#   fyXXXXXX-compute-j: eth0 10.77.1.(j+1)/16
#   fyXXXXXX-loadgen:   eth0 10.77.0.1/16        (where ferry-bench runs)
#
# A storage link is shaped both ways: the storage node's eth0 (what it
# sends) and its veth end in the switch namespace (what it receives). Other
# links run at veth speed (18.6 Gbit/s of iperf3 measured on this machine;
# tbf at 10gbit held it to 8.9 Gbit/s). --burst is tbf's bucket (default:
# 200 us worth of --rate, at least 256 KiB): larger lets short transfers
# through at veth speed, smaller costs throughput to timer granularity, and
# on the development VM (Linux 6.18, veth gso_max_size 64 KiB) a 64 KiB
# bucket stalled 16 MiB transfers between nodes for good (no drops
# counted) where 128 KiB and up did not: hence the 256 KiB floor.
#
# Delay: --delay-us D puts a netem qdisc (delay D us) above each storage
# link's tbf. This needs sch_netem; a kernel without it (as on the
# development VM, which has tbf and htb but no netem, fq or cake) refuses
# --delay-us with a message, and links then have veth latency (tens of us).
#
# `up` writes, like deploy/local/cluster.sh,
#   DIR/cluster.toml   the cluster config (deploy/swarm/cluster_config.py)
#   DIR/endpoints      one line per node: NAME ROLE INVOKE_URL UPLOAD_URL
#   DIR/netns          one line per member: NAME NAMESPACE ADDRESS
#   DIR/NAME/{data,log,pid,ready}
# starts storage nodes, then compute nodes, each in its namespace, and
# returns once every node's /healthz answers 200 from the load generator's
# namespace (through the bridge and the shaped links).
# `exec DIR NAME COMMAND...` runs COMMAND in NAME's namespace (`loadgen`,
# `storage-0`, ...): `netns.sh exec DIR loadgen ferry-bench run --url
# http://10.77.1.1:8080 ...`.
# `down` stops every node (TERM, KILL after FERRY_CLUSTER_STOP_S), ends any
# other process left in the cluster's namespaces, deletes the namespaces
# (and with them every veth, the bridge and the qdiscs) and checks that
# none is left; DIR's data and logs stay.
#
# CPUs: a node pins one shard per core to the first --cores CPUs it may
# use, so on one machine every node would sit on CPU 0. With --pin spread
# (the default) node k (storage nodes first, then compute nodes) may use
# only CPUs k*C .. k*C+C-1 (modulo the machine's CPUs; taskset), so nodes
# get cores of their own while there are enough; --pin none leaves them all
# the machine's CPUs.
#
# Environment: FERRY_CLUSTER_READY_S (default 60), FERRY_CLUSTER_STOP_S
# (default 10), FERRY_LOG (the nodes' log filter, default info).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
me=netns.sh
# shellcheck source=deploy/local/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
subnet_prefix=10.77

usage() {
  cat <<EOF
usage: deploy/local/netns.sh up DIR [--compute M] [--storage N] [--rate RATE]
           [--burst BYTES] [--delay-us D] [--functions D]... [--binary PATH] [--cores C]
           [--pin spread|none]
       deploy/local/netns.sh down DIR
       deploy/local/netns.sh exec DIR NAME COMMAND [ARGS...]
       deploy/local/netns.sh status DIR

  --compute M    compute nodes, 10.77.1.1.. (default 1)
  --storage N    storage nodes, 10.77.2.1.. (default 1)
  --rate RATE    each storage link's rate, both ways, in tc's units
                 (default 10gbit; e.g. 1gbit, 25gbit, 500mbit)
  --burst BYTES  tbf bucket of a storage link (default: 200 us of RATE, >= 262144)
  --delay-us D   one-way delay added on each storage link (needs sch_netem)
  --functions D  a <user>/<function>.wasm tree every node loads; repeatable
                 (default: guests/out/examples)
  --binary PATH  the ferry binary (default: target/release/ferry)
  --cores C      shards per node (default 1)
  --pin P        spread: node k runs on CPUs k*C.. (modulo the CPUs; default);
                 none: every node may use every CPU

The load generator's namespace is 'loadgen', at 10.77.0.1.
EOF
}

# A tc rate (digits, optional fraction, a unit of bit, kbit, mbit, gbit or
# tbit) in bits per second.
rate_bits() {
  local value=$1 number unit scale
  number=$(sed -n 's/^\([0-9][0-9]*\(\.[0-9]*\)\{0,1\}\)\([a-z]*\)$/\1/p' <<<"$value")
  unit=$(sed -n 's/^\([0-9][0-9]*\(\.[0-9]*\)\{0,1\}\)\([a-z]*\)$/\3/p' <<<"$value")
  [ -n "$number" ] || return 1
  case "$unit" in
    bit) scale=1 ;;
    kbit) scale=1000 ;;
    mbit) scale=1000000 ;;
    gbit) scale=1000000000 ;;
    tbit) scale=1000000000000 ;;
    *) return 1 ;;
  esac
  awk -v n="$number" -v s="$scale" 'BEGIN { v = n * s; if (v < 8000) exit 1; printf "%.0f\n", v }'
}

set_dir() {
  case "$PWD/$1" in
    *'"'* | *\\* | *[[:space:]]*) die "$1: use a directory path without quotes, backslashes or spaces" ;;
  esac
  mkdir -p "$1"
  dir=$(cd "$1" && pwd)
  config=$dir/cluster.toml
  endpoints=$dir/endpoints
  members=$dir/netns
  # Namespaces are named after DIR, so two clusters in two directories
  # never share one, and `down DIR` finds its own even if DIR/netns is lost.
  prefix=fy$(printf '%s' "$dir" | sha256sum | cut -c1-6)
  switch=$prefix-switch
}

# The cluster's namespaces that exist now.
our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$prefix-" || true
}

http_status() { # http_status NAMESPACE URL
  ip netns exec "$1" curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$2" 2>/dev/null || true
}

# Whether PID is still node NAME of this cluster.
ours() {
  local pid=$1 name=$2 cmdline
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  case "$cmdline" in
    *" node --config $config --name $name "*) return 0 ;;
    *) return 1 ;;
  esac
}

# Stops the nodes, then anything else still in the cluster's namespaces,
# then deletes the namespaces. Status 1 if something survived.
teardown() {
  local name pid i stop_s=${FERRY_CLUSTER_STOP_S:-10} deadline ns left=0
  check_count FERRY_CLUSTER_STOP_S "$stop_s" 1 600
  local -a names=() pids=()
  for name in $(node_names); do
    pid=$(cat "$dir/$name/pid" 2>/dev/null) || continue
    case "$pid" in '' | *[!0-9]*) continue ;; esac
    if ours "$pid" "$name"; then
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
    fi
    # A process loses its command line before it has finished exiting;
    # wait until it has.
    for _ in $(seq 1 100); do
      alive "${pids[i]}" || break
      sleep 0.05
    done
  done
  for name in $(node_names); do rm -f "$dir/$name/pid" "$dir/$name/ready"; done
  # Whatever else runs in our namespaces (a load generator started with
  # `exec`) was started into this cluster; it goes with it.
  for ns in $(our_namespaces); do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do
      kill -KILL "$pid" 2>/dev/null || true
    done
  done
  for ns in $(our_namespaces); do
    for _ in $(seq 1 50); do
      [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
      sleep 0.1
    done
    ip netns delete "$ns" 2>/dev/null || true
  done
  if [ -n "$(our_namespaces)" ]; then
    echo "$me: namespaces still present: $(our_namespaces | tr '\n' ' ')" >&2
    left=1
  fi
  echo "$me: stopped ${#pids[@]} node(s) and removed the namespaces of $dir" >&2
  return "$left"
}

on_up_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    echo "$me: up failed; removing what it made" >&2
    teardown || true
  fi
}

# Adds member NAME with ADDRESS: its namespace, a veth pair to the switch
# (SWITCH_END in the switch, eth0 in the member), addresses, links up.
add_member() {
  local name=$1 address=$2 switch_end=$3 ns=$prefix-$1
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$switch" link add "$switch_end" type veth peer name eth0 netns "$ns"
  ip -n "$switch" link set "$switch_end" master br0
  ip -n "$switch" link set "$switch_end" up
  ip -n "$ns" addr add "$address/16" dev eth0
  ip -n "$ns" link set eth0 up
  echo "$name $ns $address" >>"$members"
}

# Shapes one end of a storage link: netem (with --delay-us) above tbf.
shape() {
  local ns=$1 dev=$2
  if [ "$delay_us" -gt 0 ]; then
    tc -n "$ns" qdisc add dev "$dev" root handle 1: netem delay "${delay_us}us"
    tc -n "$ns" qdisc add dev "$dev" parent 1:1 handle 10: tbf rate "$rate" burst "$burst" latency 20ms
  else
    tc -n "$ns" qdisc add dev "$dev" root handle 10: tbf rate "$rate" burst "$burst" latency 20ms
  fi
}

launch() { # launch NAME INDEX
  local name=$1 index=$2 node_dir=$dir/$1 d j cpus=''
  local -a functions_args=() pin_args=()
  for d in "${functions[@]}"; do functions_args+=(--functions "$d"); done
  if [ "$pin" = spread ]; then
    for ((j = 0; j < cores; j++)); do
      cpus+=${cpus:+,}$(((index * cores + j) % ncpu))
    done
    pin_args=(taskset -c "$cpus")
  fi
  mkdir -p "$node_dir/data"
  rm -f "$node_dir/ready"
  # `ip netns exec` and setsid both exec in place (a background job of a
  # script is no process group leader), so $! is the node's own pid.
  # taskset execs in place too.
  FERRY_LOG=${FERRY_LOG:-info} NO_COLOR=${NO_COLOR:-1} ip netns exec "$prefix-$name" \
    "${pin_args[@]}" setsid "$binary" node --config "$config" --name "$name" \
    --data "$node_dir/data" --ready-file "$node_dir/ready" --cores "$cores" \
    "${functions_args[@]}" </dev/null >"$node_dir/log" 2>&1 &
  echo "$!" >"$node_dir/pid"
}

wait_healthy() {
  local deadline=$1 name
  local -a pending
  shift
  while :; do
    pending=()
    for name in "$@"; do
      if [ "$(http_status "$prefix-loadgen" "http://${addresses[$name]}:8080/healthz")" != 200 ]; then
        alive "$(cat "$dir/$name/pid")" || {
          tail -n 40 "$dir/$name/log" >&2 || true
          die "$name exited during start-up (log: $dir/$name/log)"
        }
        pending+=("$name")
      fi
    done
    [ "${#pending[@]}" -eq 0 ] && return 0
    if [ "$(date +%s)" -ge "$deadline" ]; then
      for name in "${pending[@]}"; do tail -n 20 "$dir/$name/log" >&2 || true; done
      die "no 200 from /healthz of ${pending[*]} within ${ready_s} s"
    fi
    sleep 0.2
  done
}

cmd_up() {
  local compute=1 storage=1 binary=$root/target/release/ferry
  rate=10gbit burst='' delay_us=0 cores=1 pin=spread
  functions=()
  while [ $# -gt 0 ]; do
    local flag=$1 value
    case "$flag" in
      --*=*) value=${flag#*=}; flag=${flag%%=*}; shift ;;
      -h | --help) usage; exit 0 ;;
      --*)
        [ $# -ge 2 ] || die_usage "$flag needs a value"
        value=$2
        shift 2
        ;;
      *) die_usage "unexpected argument '$flag'" ;;
    esac
    case "$flag" in
      --compute) check_count "$flag" "$value" 1 200 && compute=$((10#$value)) ;;
      --storage) check_count "$flag" "$value" 1 200 && storage=$((10#$value)) ;;
      --cores) check_count "$flag" "$value" 1 1024 && cores=$((10#$value)) ;;
      --rate) rate=$value ;;
      --burst) check_count "$flag" "$value" 1500 1073741824 && burst=$((10#$value)) ;;
      --delay-us) check_count "$flag" "$value" 0 10000000 && delay_us=$((10#$value)) ;;
      --functions)
        [ -d "$value" ] || die "--functions $value: no such directory"
        functions+=("$(cd "$value" && pwd)")
        ;;
      --binary) binary=$value ;;
      --pin)
        case "$value" in
          spread | none) pin=$value ;;
          *) die_usage "--pin is spread or none, got '$value'" ;;
        esac
        ;;
      *) die_usage "unknown option '$flag'" ;;
    esac
  done
  ncpu=$(nproc)
  [ "$pin" = none ] || command -v taskset >/dev/null || die "--pin spread needs taskset (util-linux)"
  local rate_bps
  rate_bps=$(rate_bits "$rate") || die_usage "--rate is a tc rate like 10gbit, 500mbit (at least 8kbit), got '$rate'"
  if [ -z "$burst" ]; then
    # 200 us of the rate, in bytes, at least 256 KiB (see the header).
    burst=$(awk -v r="$rate_bps" 'BEGIN { b = r / 8 * 0.0002; if (b < 262144) b = 262144; printf "%.0f\n", b }')
  fi
  ready_s=${FERRY_CLUSTER_READY_S:-60}
  check_count FERRY_CLUSTER_READY_S "$ready_s" 1 3600
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces, veth, tc)"
  command -v ip >/dev/null && command -v tc >/dev/null || die "needs iproute2 (ip, tc): apt-get install -y iproute2"
  command -v curl >/dev/null || die "curl not found; install with: apt-get install -y curl"
  set_dir "$dir_arg"
  if [ "${#functions[@]}" -eq 0 ]; then
    [ -d "$root/guests/out/examples" ] ||
      die "$root/guests/out/examples not found; build the examples with: bash guests/build.sh guests/out"
    functions=("$root/guests/out/examples")
  fi
  case "$binary" in /*) ;; *) binary=$PWD/$binary ;; esac
  [ -x "$binary" ] ||
    die "$binary not found; build it with: cargo build --release -p ferry-runtime --features rdma"
  [ -z "$(our_namespaces)" ] ||
    die "$dir already has an emulated cluster (namespaces $prefix-*); take it down first: $0 down $dir"

  trap on_up_exit EXIT
  trap 'exit 130' INT TERM

  # The switch: a namespace with the bridge every member plugs into.
  ip netns add "$switch"
  ip -n "$switch" link set lo up
  ip -n "$switch" link add br0 type bridge
  ip -n "$switch" link set br0 up
  : >"$members"

  declare -gA addresses=() roles=()
  local -a storage_names=() compute_names=()
  local i name
  add_member loadgen "$subnet_prefix.0.1" lg
  for ((i = 0; i < storage; i++)); do
    name=storage-$i
    storage_names+=("$name")
    addresses[$name]=$subnet_prefix.2.$((i + 1))
    roles[$name]=storage
    add_member "$name" "${addresses[$name]}" "s$i"
  done
  for ((i = 0; i < compute; i++)); do
    name=compute-$i
    compute_names+=("$name")
    addresses[$name]=$subnet_prefix.1.$((i + 1))
    roles[$name]=compute
    add_member "$name" "${addresses[$name]}" "c$i"
  done
  if [ "$delay_us" -gt 0 ]; then
    tc -n "$switch" qdisc add dev s0 root netem delay 1us 2>/dev/null ||
      die "--delay-us needs the netem qdisc (sch_netem), which this kernel does not have; run without --delay-us (links then add no delay beyond veth's)"
    tc -n "$switch" qdisc del dev s0 root
  fi
  for ((i = 0; i < storage; i++)); do
    shape "$prefix-storage-$i" eth0
    shape "$switch" "s$i"
  done

  {
    for name in "${storage_names[@]}" "${compute_names[@]}"; do
      echo "$name ${roles[$name]} ${addresses[$name]}"
    done
    echo "loadgen loadgen $subnet_prefix.0.1"
  } | python3 "$root/deploy/swarm/cluster_config.py" "$dir" --source "deploy/local/netns.sh" >/dev/null
  [ -f "$config" ] || die "cluster_config.py wrote no $config"
  for name in "${storage_names[@]}" "${compute_names[@]}"; do
    echo "$name ${roles[$name]} http://${addresses[$name]}:8080/ http://${addresses[$name]}:8002/"
  done >"$endpoints"

  local started_s
  started_s=$(date +%s)
  local index=0
  for name in "${storage_names[@]}"; do
    launch "$name" "$index"
    index=$((index + 1))
  done
  wait_healthy $(($(date +%s) + ready_s)) "${storage_names[@]}"
  for name in "${compute_names[@]}"; do
    launch "$name" "$index"
    index=$((index + 1))
  done
  wait_healthy $(($(date +%s) + ready_s)) "${compute_names[@]}"

  trap - EXIT INT TERM
  local delay_text="no added delay"
  [ "$delay_us" -eq 0 ] || delay_text="${delay_us} us delay"
  echo "$me: $compute compute and $storage storage node(s) healthy in $(($(date +%s) - started_s)) s; storage links $rate (burst $burst B), $delay_text; CPUs $pin; namespaces $prefix-*; load generator: $0 exec $dir loadgen ..." >&2
  cat "$endpoints"
}

cmd_down() {
  [ $# -eq 0 ] || die_usage "down takes no options"
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces)"
  teardown || die "something of $dir is still there"
}

cmd_exec() {
  [ $# -ge 2 ] || die_usage "exec needs a member name and a command"
  local name=$1 ns
  shift
  ns=$(awk -v n="$name" '$1 == n {print $2; exit}' "$members" 2>/dev/null || true)
  [ -n "$ns" ] || die "no member '$name' in $members (members: $(awk '{print $1}' "$members" 2>/dev/null | tr '\n' ' '))"
  exec ip netns exec "$ns" "$@"
}

cmd_status() {
  [ $# -eq 0 ] || die_usage "status takes no options"
  [ -f "$members" ] || die "$dir holds no emulated cluster ($members is missing)"
  local name ns address pid code all_ok=0
  printf '%-12s %-28s %-12s %-8s %s\n' NAME NAMESPACE ADDRESS PID HEALTHZ
  while read -r name ns address; do
    pid=-
    code=-
    if [ "$name" != loadgen ]; then
      pid=$(cat "$dir/$name/pid" 2>/dev/null) && ours "$pid" "$name" || pid=-
      code=$(http_status "$prefix-loadgen" "http://$address:8080/healthz")
      [ "$code" = 200 ] || all_ok=1
    fi
    ip netns list | awk '{print $1}' | grep -qx "$ns" || { ns="$ns(missing)"; all_ok=1; }
    printf '%-12s %-28s %-12s %-8s %s\n' "$name" "$ns" "$address" "$pid" "$code"
  done <"$members"
  tc -n "$switch" qdisc show 2>/dev/null | grep tbf || true
  return "$all_ok"
}

[ $# -ge 1 ] || die_usage "no command"
case "$1" in
  -h | --help | help) usage; exit 0 ;;
  up | down | exec | status) ;;
  *) die_usage "unknown command '$1'" ;;
esac
command=$1
[ $# -ge 2 ] || die_usage "$command needs a directory"
case "$2" in -h | --help) usage; exit 0 ;; -*) die_usage "$command needs a directory before options" ;; esac
if [ "$command" != up ] && [ ! -d "$2" ]; then
  echo "$me: $2 does not exist; no cluster there" >&2
  [ "$command" = down ] && exit 0
  exit 1
fi
dir_arg=$2
shift 2
[ "$command" = up ] || set_dir "$dir_arg"
"cmd_$command" "$@"
