#!/usr/bin/env bash
# On a swarm manager: writes the cluster config (and, with --backend ceph,
# the Ceph files) from the swarm's labelled nodes, for deploy/swarm/stack.yml.
#
#   deploy/swarm/configure.sh OUT [--backend embedded|ceph] [--pool NAME]
#
# Reads every node with a ferry.role label (storage, compute or loadgen):
# its host name (the name its ferry node gets, and what {{.Node.Hostname}}
# gives the container) and the address it advertises to the swarm (where
# the others reach it: give `docker swarm init/join --advertise-addr` the
# fast network's address). With --backend ceph, exactly one storage node
# must also carry ferry.ceph-mon=true. Then runs cluster_config.py, which
# writes OUT/cluster.toml (and ceph.conf and the keyrings, random keys), and
# writes OUT/stack.env: FERRY_SWARM_DIR=OUT and FERRY_CONFIG_VERSION (a hash
# of the files; swarm configs cannot change in place, so a new version is a
# new config), for
#
#   env $(cat OUT/stack.env) docker stack deploy -c deploy/swarm/stack.yml ferry
#
# Needs the docker CLI (talking to a manager) and python3.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
me=configure.sh

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
}

die() {
  echo "$me: $*" >&2
  exit 1
}

[ $# -ge 1 ] || usage
case "$1" in -h | --help | -*) usage ;; esac
out=$1
shift
backend=embedded
pool=ferry
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) [ $# -ge 2 ] || usage; backend=$2; shift 2 ;;
    --pool) [ $# -ge 2 ] || usage; pool=$2; shift 2 ;;
    *) usage ;;
  esac
done
case "$backend" in embedded | ceph) ;; *) die "--backend is embedded or ceph, got '$backend'" ;; esac
command -v docker >/dev/null || die "docker not found"
command -v python3 >/dev/null || die "python3 not found"
docker node ls >/dev/null 2>&1 || die "'docker node ls' failed: run this on a swarm manager"

mkdir -p "$out"
out=$(cd "$out" && pwd)
nodes=$out/nodes
: >"$nodes"
mon=""
mons=0
for id in $(docker node ls --format '{{.ID}}'); do
  # HOSTNAME ROLE ADDR MANAGER_ADDR CEPH_MON (labels may be missing: "-").
  read -r name role addr manager_addr ceph_mon < <(docker node inspect "$id" --format \
    '{{.Description.Hostname}} {{with index .Spec.Labels "ferry.role"}}{{.}}{{else}}-{{end}} {{.Status.Addr}} {{with .ManagerStatus}}{{.Addr}}{{else}}-{{end}} {{with index .Spec.Labels "ferry.ceph-mon"}}{{.}}{{else}}-{{end}}')
  [ "$role" != - ] || { echo "$me: $name has no ferry.role label; not part of the cluster" >&2; continue; }
  # A manager may report 0.0.0.0 as its node address; its manager address
  # (ADDR:2377) is the one it advertises.
  if [ "$addr" = 0.0.0.0 ] || [ -z "$addr" ]; then
    addr=${manager_addr%:*}
  fi
  echo "$name $role $addr" >>"$nodes"
  if [ "$ceph_mon" = true ]; then
    [ "$role" = storage ] || die "$name has ferry.ceph-mon=true but is not a storage node"
    mon=$name
    mons=$((mons + 1))
  fi
done
[ -s "$nodes" ] || die "no node has a ferry.role label; label them first: docker node update --label-add ferry.role=storage NODE"

args=(--backend "$backend" --pool "$pool" --source "docker node inspect on $(hostname)")
if [ "$backend" = ceph ]; then
  [ "$mons" -eq 1 ] || die "with --backend ceph, exactly one storage node needs ferry.ceph-mon=true (found $mons): docker node update --label-add ferry.ceph-mon=true NODE"
  args+=(--ceph-mon "$mon")
fi
python3 "$here/cluster_config.py" "$out" "${args[@]}" <"$nodes"

files=("$out/cluster.toml")
[ "$backend" != ceph ] || files+=("$out/ceph.conf" "$out/ceph.client.admin.keyring" "$out/ceph.mon.keyring")
version=$(cat "${files[@]}" | sha256sum | cut -c1-12)
printf 'FERRY_SWARM_DIR=%s\nFERRY_CONFIG_VERSION=%s\n' "$out" "$version" >"$out/stack.env"

echo "$me: nodes (NAME ROLE ADDRESS):" >&2
sed 's/^/  /' "$nodes" >&2
extra=""
[ "$backend" != ceph ] || extra=" -c deploy/swarm/ceph.yml"
echo "$me: deploy with: env \$(cat $out/stack.env) docker stack deploy -c deploy/swarm/stack.yml$extra ferry" >&2
