#!/usr/bin/env bash
# A CloudLab node of deploy/cloudlab/profile.py, from boot to its ferry role.
#
#   startup.sh boot ROLE [--backend embedded|ceph] [--rdma yes|no] [--lan NAME] [--disk DIR]
#       What the profile runs at every boot (as root; log in
#       /var/log/ferry-startup.log). ROLE is storage, compute or loadgen.
#       1. installs Docker (and rdma-core's tools with --rdma yes) from the
#          image's apt archive; Docker keeps its data on DIR (the node's
#          blockstore, default /mnt/ferry);
#       2. builds ferry's image from this repository
#          (deploy/swarm/Dockerfile: Debian 12, librados, libibverbs, hwloc,
#          `ferry`, `ferry-bench`), and the Ceph image on Ceph storage nodes;
#       3. writes /etc/ferry/cluster.toml (and the Ceph files) from the
#          experiment's manifest: deploy/cloudlab/manifest.py, then
#          deploy/swarm/cluster_config.py. Every node writes the same files
#          (the Ceph keys come from the experiment's own `geni-get key`);
#       4. starts its role in containers on the host's network: storage ->
#          ferry-node (+ ferry-ceph-osd, + ferry-ceph-mon on the first
#          storage node), compute -> ferry-node, loadgen -> nothing (it
#          runs ferry-bench on demand); then waits for its /healthz.
#   startup.sh restart [--log FILTER]
#       Stops this node's ferry container and starts a fresh one: same role
#       and data; FILTER is its FERRY_LOG (e.g. info,ferry_transport=debug).
#   startup.sh status      every node's /healthz, this node's containers, and
#                          the transport lines of its log (RDMA or TCP)
#   startup.sh endpoints   NAME ROLE INVOCATION_URL UPLOAD_URL of every node
#   startup.sh report [NDP_REPORT_ARGS...]
#       deploy/swarm/ndp-report.sh in the image, against the first compute
#       node, results in DIR/results (add --seconds 30 --object-mib 256 ...).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
me=startup.sh
etc=/etc/ferry
settings=$etc/node.env
log=/var/log/ferry-startup.log
# The Ceph monitor's node: profile.py always has it.
MON_NODE=storage-0

say() { echo "$me: $(date -u +%H:%M:%S) $*" >&2; }
die() {
  echo "$me: $*" >&2
  exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (sudo bash $0 ...)"

load_settings() {
  [ -f "$settings" ] || die "$settings not found: this node has not booted with startup.sh boot"
  # shellcheck disable=SC1090
  . "$settings"
}

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "$@"
}

install_packages() {
  local -a want=(docker.io docker-buildx python3 curl ca-certificates)
  [ "$RDMA" != yes ] || want+=(rdma-core ibverbs-utils)
  local -a missing=()
  local p
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get -o DPkg::Lock::Timeout=600 update -q
    apt_install "${missing[@]}"
  fi
  # Docker's images and build cache on the blockstore, not the small root
  # partition of CloudLab's images.
  local daemon_json="{\"data-root\": \"$DISK/docker\"}"
  if [ "$(cat /etc/docker/daemon.json 2>/dev/null)" != "$daemon_json" ]; then
    mkdir -p /etc/docker "$DISK/docker"
    echo "$daemon_json" >/etc/docker/daemon.json
    systemctl restart docker
  fi
  systemctl is-active --quiet docker || systemctl start docker
  if [ "$RDMA" = yes ]; then
    # The verbs user-space interface; a no-op where the drivers loaded it.
    modprobe -a ib_uverbs rdma_ucm 2>/dev/null || true
    if [ -d /dev/infiniband ]; then
      say "RDMA devices: $(ibv_devices 2>/dev/null | awk 'NR > 2 { printf "%s ", $1 }')"
    else
      say "no /dev/infiniband: this node's ferry will use TCP"
    fi
  fi
}

build_images() {
  say "building ferry's image (deploy/swarm/Dockerfile, target runtime)"
  DOCKER_BUILDKIT=1 docker build -q -f "$repo/deploy/swarm/Dockerfile" --target runtime -t ferry "$repo" >&2
  if [ "$BACKEND" = ceph ] && [ "$ROLE" = storage ]; then
    say "building the Ceph image (target ceph)"
    DOCKER_BUILDKIT=1 docker build -q -f "$repo/deploy/swarm/Dockerfile" --target ceph -t ferry-ceph "$repo" >&2
  fi
}

write_config() {
  local manifest secret_args=()
  mkdir -p "$etc"
  manifest=$(geni-get manifest) || die "geni-get manifest failed"
  printf '%s\n' "$manifest" | python3 "$here/manifest.py" --lan "$LAN" >"$etc/nodes.tmp" ||
    die "could not read the nodes from the manifest"
  mv "$etc/nodes.tmp" "$etc/nodes"
  if [ "$BACKEND" = ceph ]; then
    # The experiment's private key, the same on every node: every node
    # derives the same Ceph keys and fsid from it.
    (umask 077 && geni-get key >"$etc/secret") || die "geni-get key failed"
    secret_args=(--secret-file "$etc/secret" --ceph-mon "$MON_NODE")
  fi
  python3 "$repo/deploy/swarm/cluster_config.py" "$etc" --backend "$BACKEND" \
    --source "the CloudLab manifest" "${secret_args[@]}" <"$etc/nodes"
  grep -q "^$NAME " "$etc/nodes" || die "this node ($NAME) is not in the manifest's LAN $LAN"
}

# docker run flags every ferry and Ceph container of this node shares.
common_flags() {
  local -a flags=(--detach --restart unless-stopped --network host
    -e "FERRY_NODE=$NAME"
    -v "$etc/cluster.toml:/etc/ferry/cluster.toml:ro")
  if [ "$BACKEND" = ceph ]; then
    flags+=(-v "$etc/ceph.conf:/etc/ceph/ceph.conf:ro"
      -v "$etc/ceph.client.admin.keyring:/etc/ceph/ceph.client.admin.keyring:ro")
  fi
  printf '%s\n' "${flags[@]}"
}

run_node() {
  local filter=${1:-${FERRY_LOG:-info}}
  local -a flags
  mapfile -t flags < <(common_flags)
  # glommio: locked memory for its io_uring rings and buffers, and io_uring
  # itself, which Docker's default seccomp profile blocks (Docker 25+).
  flags+=(--name ferry-node --ulimit memlock=-1:-1 --cap-add IPC_LOCK
    --security-opt seccomp=unconfined -e "FERRY_LOG=$filter"
    -v "$DISK/ferry:/var/lib/ferry")
  if [ "$RDMA" = yes ] && [ -d /dev/infiniband ]; then
    flags+=(--device /dev/infiniband)
  fi
  docker rm -f ferry-node >/dev/null 2>&1 || true
  mkdir -p "$DISK/ferry"
  say "starting ferry-node ($ROLE, FERRY_LOG=$filter)"
  docker run "${flags[@]}" ferry node >/dev/null
}

run_ceph() {
  local -a flags
  mapfile -t flags < <(common_flags)
  flags+=(-v "$DISK/ceph:/var/lib/ceph")
  mkdir -p "$DISK/ceph"
  # The monitor runs on storage-0 (write_config names it in ceph.conf).
  if [ "$NAME" = "$MON_NODE" ]; then
    docker rm -f ferry-ceph-mon >/dev/null 2>&1 || true
    say "starting ferry-ceph-mon"
    docker run "${flags[@]}" --name ferry-ceph-mon \
      -v "$etc/ceph.mon.keyring:/etc/ceph/ceph.mon.keyring:ro" ferry-ceph ceph-mon >/dev/null
  fi
  docker rm -f ferry-ceph-osd >/dev/null 2>&1 || true
  say "starting ferry-ceph-osd"
  docker run "${flags[@]}" --name ferry-ceph-osd --stop-timeout 30 ferry-ceph ceph-osd >/dev/null
}

wait_healthy() {
  local address url
  address=$(awk -v n="$NAME" '$1 == n { print $3 }' "$etc/nodes")
  url=http://$address:8080/healthz
  for _ in $(seq 1 150); do
    if [ "$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "$url")" = 200 ]; then
      say "$NAME healthy at $url"
      return 0
    fi
    sleep 2
  done
  say "$NAME: no 200 from $url after 300 s; its log: docker logs ferry-node"
  docker logs --tail 30 ferry-node >&2 || true
  return 1
}

cmd_boot() {
  [ $# -ge 1 ] || die "usage: $0 boot ROLE [--backend B] [--rdma yes|no] [--lan NAME] [--disk DIR]"
  ROLE=$1
  shift
  BACKEND=embedded RDMA=yes LAN=lan DISK=/mnt/ferry
  while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "$1 needs a value"
    case "$1" in
      --backend) BACKEND=$2 ;;
      --rdma) RDMA=$2 ;;
      --lan) LAN=$2 ;;
      --disk) DISK=$2 ;;
      *) die "unknown option $1" ;;
    esac
    shift 2
  done
  case "$ROLE" in storage | compute | loadgen) ;; *) die "ROLE is storage, compute or loadgen, not '$ROLE'" ;; esac
  case "$BACKEND" in embedded | ceph) ;; *) die "--backend is embedded or ceph, not '$BACKEND'" ;; esac
  case "$RDMA" in yes | no) ;; *) die "--rdma is yes or no, not '$RDMA'" ;; esac
  NAME=$(geni-get client_id) || die "geni-get client_id failed (not a CloudLab node?)"
  mkdir -p "$etc"
  printf 'ROLE=%s\nBACKEND=%s\nRDMA=%s\nLAN=%s\nDISK=%s\nNAME=%s\n' \
    "$ROLE" "$BACKEND" "$RDMA" "$LAN" "$DISK" "$NAME" >"$settings"
  say "boot: $NAME, role $ROLE, backend $BACKEND, rdma $RDMA"
  for _ in $(seq 1 150); do
    mountpoint -q "$DISK" && break
    sleep 2
  done
  mountpoint -q "$DISK" || die "$DISK is not mounted (the profile's blockstore)"
  install_packages
  build_images
  write_config
  case "$ROLE" in
    storage)
      [ "$BACKEND" != ceph ] || run_ceph
      run_node
      wait_healthy
      ;;
    compute)
      run_node
      wait_healthy
      ;;
    loadgen) say "loadgen ready: sudo bash $0 report" ;;
  esac
  say "boot done"
}

cmd_endpoints() {
  [ -f "$etc/nodes" ] || die "$etc/nodes not found: this node has not booted with startup.sh boot"
  awk '$2 != "loadgen" { printf "%s %s http://%s:8080/ http://%s:8002/\n", $1, $2, $3, $3 }' "$etc/nodes"
}

cmd_status() {
  load_settings
  local name role invoke code
  echo "== nodes (from $etc/nodes)"
  while read -r name role invoke _; do
    code=$(curl --noproxy '*' -s -o /dev/null -w '%{http_code}' --max-time 2 "${invoke}healthz" || true)
    printf '%-12s %-8s %-28s healthz %s\n' "$name" "$role" "$invoke" "$code"
  done < <(cmd_endpoints)
  echo "== containers on $NAME"
  docker ps -a --filter name=ferry --format '{{.Names}}\t{{.Status}}\t{{.Image}}'
  if docker inspect ferry-node >/dev/null 2>&1; then
    echo "== transport of $NAME (ferry-node's log)"
    docker logs ferry-node 2>&1 | grep -E 'RDMA devices found|using TCP|RDMA queue pair|link=' | tail -n 20 ||
      echo "(no transport lines yet: they appear at the first node-to-node connection)"
  fi
}

cmd_restart() {
  load_settings
  local filter=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --log) [ $# -ge 2 ] || die "--log needs a filter"; filter=$2; shift 2 ;;
      *) die "unknown option $1" ;;
    esac
  done
  [ "$ROLE" != loadgen ] || die "a load generator runs no ferry node"
  run_node "$filter"
  wait_healthy
}

cmd_report() {
  load_settings
  local compute
  compute=$(awk '$2 == "compute" { print $3; exit }' "$etc/nodes")
  [ -n "$compute" ] || die "no compute node in $etc/nodes"
  mkdir -p "$DISK/results"
  say "ndp-report against http://$compute:8080, results in $DISK/results"
  docker run --rm --network host -v "$DISK/results:/results" ferry \
    ndp-report --url "http://$compute:8080" --out /results "$@"
}

[ $# -ge 1 ] || die "usage: $0 boot|restart|status|endpoints|report ..."
command=$1
shift
case "$command" in
  boot)
    # Everything boot says goes to the log as well (CloudLab keeps no
    # output of startup commands).
    exec > >(tee -a "$log") 2>&1
    cmd_boot "$@"
    ;;
  restart) cmd_restart "$@" ;;
  status) cmd_status ;;
  endpoints) cmd_endpoints ;;
  report) cmd_report "$@" ;;
  *) die "unknown command '$command': boot, restart, status, endpoints or report" ;;
esac
