#!/usr/bin/env bash
# The image's entrypoint: one ferry or Ceph role per container, configured
# by the files deploy/swarm/cluster_config.py writes (the stack mounts them
# as swarm configs and secrets; deploy/cloudlab/startup.sh bind-mounts them).
#
#   entrypoint.sh node [FERRY_NODE_FLAGS...]   ferry node --config ... --name $FERRY_NODE
#   entrypoint.sh ceph-mon                     the monitor (`a` in ceph.conf)
#   entrypoint.sh ceph-osd                     this storage node's one OSD
#   entrypoint.sh idle                         keep a load-generator container up
#   entrypoint.sh ndp-report ARGS...           deploy/swarm/ndp-report.sh
#   entrypoint.sh COMMAND ARGS...              anything else (ferry-bench, ferry, ceph, bash)
#
# Environment (defaults in brackets):
#   FERRY_NODE        this machine's name in cluster.toml [the host name]
#   FERRY_CONFIG      the cluster config [/etc/ferry/cluster.toml]
#   FERRY_DATA        the node's data directory [/var/lib/ferry]
#   FERRY_FUNCTIONS   functions loaded at start [/opt/ferry/functions]
#   FERRY_CORES       shards (one per core) [every core the container may use]
#   FERRY_LOG         the node's log filter [info]
#   FERRY_CEPH_ETC    ceph.conf and the keyrings [/etc/ceph]
#   FERRY_CEPH_DATA   monitor and OSD data, on the node's data disk [/var/lib/ceph]
#   FERRY_CEPH_RUN    admin sockets [/run/ceph]
#   FERRY_OSD_BYTES   the OSD's BlueStore file size [80% of the free space
#                     under FERRY_CEPH_DATA when the OSD is created]
#   FERRY_CEPH_WAIT_S how long an OSD waits for the monitor [600]
set -euo pipefail

me=entrypoint.sh
config=${FERRY_CONFIG:-/etc/ferry/cluster.toml}
ceph_etc=${FERRY_CEPH_ETC:-/etc/ceph}
ceph_data=${FERRY_CEPH_DATA:-/var/lib/ceph}
ceph_run=${FERRY_CEPH_RUN:-/run/ceph}
conf=$ceph_etc/ceph.conf
admin_keyring=$ceph_etc/ceph.client.admin.keyring
node=${FERRY_NODE:-$(hostname)}

die() {
  echo "$me: $*" >&2
  exit 1
}

need_file() {
  [ -f "$1" ] || die "$1 not found: $2"
}

# The value of KEY in the [[nodes]] entry named NAME of cluster.toml. The
# file is cluster_config.py's (one `key = "value"` a line), not any TOML.
node_field() {
  awk -v want="$1" -v key="$2" '
    /^\[\[nodes\]\]/ { name = ""; value = ""; next }
    /^\[/ { name = ""; next }
    {
      line = $0
      if (match(line, /^[a-z_]+ *= */)) {
        k = substr(line, 1, RLENGTH); sub(/ *= *$/, "", k)
        v = substr(line, RLENGTH + 1); gsub(/^"|"$/, "", v)
        if (k == "name") name = v
        if (name == want && k == key) { print v; exit }
      }
    }' "$config"
}

# The value of KEY in [storage].
storage_field() {
  awk -v key="$1" '
    /^\[storage\]/ { on = 1; next }
    /^\[/ { on = 0 }
    on && $1 == key { v = $0; sub(/^[^=]*= */, "", v); gsub(/^"|"$/, "", v); print v; exit }' "$config"
}

# The value of KEY in ceph.conf's [global].
conf_field() {
  awk -v key="$1" '
    /^\[global\]/ { on = 1; next }
    /^\[/ { on = 0 }
    on { line = $0; sub(/ *= */, "=", line); split(line, kv, "=")
         if (kv[1] == key) { sub(/^[^=]*=/, "", line); print line; exit } }' "$conf"
}

ceph_cli() {
  timeout 30 ceph -c "$conf" --keyring "$admin_keyring" --connect-timeout 10 "$@"
}

cmd_node() {
  need_file "$config" "mount the cluster config there (deploy/swarm/cluster_config.py writes it)"
  [ -n "$(node_field "$node" role)" ] ||
    die "no [[nodes]] entry named '$node' in $config; set FERRY_NODE to this machine's name there"
  local data=${FERRY_DATA:-/var/lib/ferry}
  local -a flags=(--config "$config" --name "$node" --data "$data/data"
    --functions "${FERRY_FUNCTIONS:-/opt/ferry/functions}")
  [ -z "${FERRY_CORES:-}" ] || flags+=(--cores "$FERRY_CORES")
  mkdir -p "$data/data"
  echo "$me: ferry node ${flags[*]} $*" >&2
  FERRY_LOG=${FERRY_LOG:-info} exec ferry node "${flags[@]}" "$@"
}

cmd_ceph_mon() {
  need_file "$conf" "mount ceph.conf there (cluster_config.py --backend ceph writes it)"
  need_file "$ceph_etc/ceph.mon.keyring" "mount ceph.mon.keyring there"
  need_file "$config" "mount the cluster config there"
  local fsid mon_host address pool dir=$ceph_data/mon/ceph-a
  fsid=$(conf_field fsid)
  mon_host=$(conf_field "mon host")
  address=${mon_host#\[v2:}
  address=${address%:*}
  pool=$(storage_field ceph_pool)
  [ -n "$fsid" ] && [ -n "$address" ] && [ -n "$pool" ] ||
    die "$conf needs fsid and mon host, $config needs [storage] ceph_pool"
  mkdir -p "$dir" "$ceph_run"
  if [ -f "$dir/ferry-fsid" ]; then
    [ "$(cat "$dir/ferry-fsid")" = "$fsid" ] ||
      die "$dir belongs to cluster $(cat "$dir/ferry-fsid"), ceph.conf to $fsid; remove $ceph_data on this node to start over"
  else
    echo "$me: creating monitor a of cluster $fsid at $address" >&2
    rm -rf "${dir:?}"/*
    monmaptool --create --fsid "$fsid" --addv a "[v2:$address:3300]" "$ceph_run/monmap" >&2
    ceph-mon -c "$conf" --mkfs -i a --mon-data "$dir" --monmap "$ceph_run/monmap" \
      --keyring "$ceph_etc/ceph.mon.keyring" >&2
    echo "$fsid" >"$dir/ferry-fsid"
  fi
  # The pool, once the monitor answers (creating one that exists is a no-op).
  (
    for _ in $(seq 1 120); do
      if ceph_cli osd pool create "$pool" >/dev/null 2>&1 &&
        ceph_cli osd pool application enable "$pool" rados >/dev/null 2>&1; then
        echo "$me: pool $pool ready" >&2
        exit 0
      fi
      sleep 2
    done
    echo "$me: could not create pool $pool; create it with: ceph osd pool create $pool" >&2
  ) &
  exec ceph-mon -c "$conf" -d -i a --mon-data "$dir" --run-dir "$ceph_run" \
    --public-addr "v2:$address:3300"
}

cmd_ceph_osd() {
  need_file "$conf" "mount ceph.conf there (cluster_config.py --backend ceph writes it)"
  need_file "$admin_keyring" "mount ceph.client.admin.keyring there"
  need_file "$config" "mount the cluster config there"
  local address fsid root=$ceph_data/osd dir="" id uuid key bytes wait_s=${FERRY_CEPH_WAIT_S:-600}
  address=$(node_field "$node" host)
  [ "$(node_field "$node" role)" = storage ] && [ -n "$address" ] ||
    die "'$node' is not a storage node in $config; set FERRY_NODE to this machine's name there"
  fsid=$(conf_field fsid)
  mkdir -p "$root" "$ceph_run"
  local d
  for d in "$root"/ceph-*; do
    [ -f "$d/ferry-ready" ] && dir=$d
  done
  if [ -z "$dir" ]; then
    # A half-made OSD (start-up killed during mkfs) would take a new id
    # each time; say what to clean instead.
    for d in "$root"/ceph-*; do
      [ -d "$d" ] && die "$d is an OSD whose creation did not finish; remove it and run: ceph osd purge ${d##*-} --yes-i-really-mean-it"
    done
    echo "$me: waiting for the monitor (up to ${wait_s} s)" >&2
    local deadline=$(($(date +%s) + wait_s))
    until ceph_cli mon stat >/dev/null 2>&1; do
      [ "$(date +%s)" -lt "$deadline" ] || die "no monitor answered within ${wait_s} s (mon host in $conf)"
      sleep 2
    done
    uuid=$(cat /proc/sys/kernel/random/uuid)
    key=$(ceph-authtool --gen-print-key)
    id=$(printf '{"cephx_secret": "%s"}' "$key" | ceph_cli osd new "$uuid" -i -) ||
      die "registering the OSD with the monitor failed"
    case "$id" in '' | *[!0-9]*) die "the monitor answered '$id' for a new OSD id" ;; esac
    dir=$root/ceph-$id
    mkdir -p "$dir"
    ceph-authtool --create-keyring "$dir/keyring" --name "osd.$id" --add-key "$key" >&2
    bytes=${FERRY_OSD_BYTES:-$(($(df -B1 --output=avail "$root" | tail -n 1) / 10 * 8))}
    echo "$me: creating osd.$id for $node ($bytes bytes of BlueStore in $dir)" >&2
    ceph-osd -c "$conf" -i "$id" --mkfs --osd-uuid "$uuid" --osd-data "$dir" \
      --keyring "$dir/keyring" --bluestore-block-size "$bytes" >&2 ||
      die "ceph-osd --mkfs of osd.$id failed"
    echo "$fsid" >"$dir/ferry-ready"
  fi
  [ "$(cat "$dir/ferry-ready")" = "$fsid" ] ||
    die "$dir belongs to cluster $(cat "$dir/ferry-ready"), ceph.conf to $fsid; remove $ceph_data on this node to start over"
  id=${dir##*-}
  # Under CRUSH host NAME: the ceph_host of this node in cluster.toml, so
  # ferry's Ceph placement finds the storage node of an object's primary.
  exec ceph-osd -c "$conf" -d -i "$id" --osd-data "$dir" --keyring "$dir/keyring" \
    --run-dir "$ceph_run" --public-addr "$address" --cluster-addr "$address" \
    --crush-location "root=default host=$node"
}

cmd_idle() {
  echo "$me: idle; run ferry-bench with docker exec" >&2
  trap 'exit 0' TERM INT
  sleep infinity &
  wait
}

[ $# -ge 1 ] || set -- node
command=$1
shift
case "$command" in
  node) cmd_node "$@" ;;
  ceph-mon) cmd_ceph_mon ;;
  ceph-osd) cmd_ceph_osd ;;
  idle) cmd_idle ;;
  ndp-report) exec ndp-report.sh "$@" ;;
  *) exec "$command" "$@" ;;
esac
