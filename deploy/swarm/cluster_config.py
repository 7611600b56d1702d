#!/usr/bin/env python3
"""Writes the cluster config every ferry node reads, and the Ceph files.

    cluster_config.py OUT_DIR [--backend embedded|ceph] [--pool NAME]
                      [--ceph-mon NAME] [--secret-file FILE] < NODES

NODES is one machine a line, `NAME ROLE ADDRESS`: ROLE is storage, compute
or loadgen, ADDRESS the IPv4 address the other machines reach it at (the
experiment LAN on CloudLab, the swarm's advertise address). Blank lines and
`#` comments are skipped. Both deployments feed it: deploy/cloudlab/
manifest.py (from CloudLab's manifest) and deploy/swarm/configure.sh (from
`docker node inspect`), so there is one cluster config format everywhere:
README.md "A cluster", read by `ferry node --config cluster.toml --name
NAME`.

Writes into OUT_DIR:
  cluster.toml        [storage] and one [[nodes]] per storage and compute
                      machine, on the default ports (8080 invocations, 8002
                      uploads, 7000 transport). Load generators only run
                      ferry-bench and are not members.
With --backend ceph also (deploy/swarm/entrypoint.sh reads them):
  ceph.conf           fsid, one monitor (`a`) on storage node --ceph-mon (by
                      default the first by name), cephx, pool defaults
                      sized to the storage nodes
  ceph.client.admin.keyring
  ceph.mon.keyring    the monitor's key plus client.admin, for ceph-mon --mkfs

Keys and the fsid come from --secret-file when given (HMAC-SHA256 of the
secret), so every machine holding the same secret writes the same files
without talking to the others (CloudLab: `geni-get key`); otherwise they
are random (swarm: written once on a manager and handed out as swarm
configs and secrets). Nothing here knows an address: they all come in on
stdin.
"""

import argparse
import base64
import hashlib
import hmac
import ipaddress
import os
import re
import struct
import sys
import uuid

ROLES = ("storage", "compute", "loadgen")
# ferry's defaults (README.md "A cluster"); written out so the file says it.
HTTP_PORT, UPLOAD_PORT, TRANSPORT_PORT = 8080, 8002, 7000
CEPH_MON_PORT = 3300  # msgr2, the only messenger the monitor binds
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


def fail(message):
    print(f"cluster_config.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_nodes(stream):
    nodes, seen_names, seen_addresses = [], set(), set()
    for number, line in enumerate(stream, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            fail(f"line {number}: want NAME ROLE ADDRESS, got {line!r}")
        name, role, address = fields
        if not NAME_RE.match(name):
            fail(f"line {number}: node name {name!r}: letters, digits, '.', '-', '_', at most 63")
        if role not in ROLES:
            fail(f"line {number}: role {role!r}: use one of {', '.join(ROLES)}")
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            fail(f"line {number}: {address!r} is not an IPv4 address")
        if ip.is_unspecified or ip.is_multicast:
            fail(f"line {number}: {address} cannot be a node's address")
        if name in seen_names:
            fail(f"line {number}: node {name} appears twice")
        if address in seen_addresses:
            fail(f"line {number}: address {address} appears twice")
        seen_names.add(name)
        seen_addresses.add(address)
        nodes.append((name, role, address))
    return nodes


class Keys:
    """cephx keys and the fsid: derived from a secret, or random."""

    def __init__(self, secret):
        self.secret = secret

    def _bytes(self, label, n):
        if self.secret is None:
            return os.urandom(n)
        return hmac.new(self.secret, label.encode(), hashlib.sha256).digest()[:n]

    def cephx(self, entity):
        # ceph's CryptoKey encoding: u16 type (1 = AES), utime_t created
        # (u32 s, u32 ns), u16 length, then the 16 secret bytes; base64.
        # Created stays 0 so derived keys are identical on every machine.
        blob = struct.pack("<HIIH", 1, 0, 0, 16) + self._bytes(f"cephx {entity}", 16)
        return base64.b64encode(blob).decode()

    def fsid(self):
        return str(uuid.UUID(bytes=self._bytes("fsid", 16), version=4))


def toml_string(text):
    # Names are checked by NAME_RE and addresses by ipaddress: nothing to escape.
    return f'"{text}"'


def cluster_toml(nodes, backend, pool, source):
    lines = [
        f"# Written by deploy/swarm/cluster_config.py from {source}.",
        "# Every node reads it: ferry node --config cluster.toml --name NAME",
        "[storage]",
        f"backend = {toml_string(backend)}",
    ]
    if backend == "ceph":
        lines += [
            'ceph_conf = "/etc/ceph/ceph.conf"',
            f"ceph_pool = {toml_string(pool)}",
        ]
    for name, role, address in nodes:
        if role == "loadgen":
            continue
        lines += [
            "",
            "[[nodes]]",
            f"name = {toml_string(name)}",
            f"role = {toml_string(role)}",
            f"host = {toml_string(address)}",
            f"http_port = {HTTP_PORT}",
            f"upload_port = {UPLOAD_PORT}",
            f"transport_port = {TRANSPORT_PORT}",
        ]
        if backend == "ceph" and role == "storage":
            # entrypoint.sh puts this node's OSD under CRUSH host NAME.
            lines.append(f"ceph_host = {toml_string(name)}")
    return "\n".join(lines) + "\n"


def pg_count(osds, size):
    # ~100 PGs per OSD after replication, a power of two, 32..1024.
    target = max(32, osds * 100 // size)
    pgs = 32
    while pgs < target and pgs < 1024:
        pgs *= 2
    return pgs


def ceph_files(storage, mon, keys):
    mon_address = mon[2]
    size = min(3, len(storage))
    min_size = max(1, size - 1)
    conf = f"""# Written by deploy/swarm/cluster_config.py. One monitor (`a`) on
# {mon[0]}, one OSD per storage node (deploy/swarm/entrypoint.sh).
[global]
fsid = {keys.fsid()}
mon initial members = a
mon host = [v2:{mon_address}:{CEPH_MON_PORT}]
ms bind msgr1 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
osd pool default size = {size}
osd pool default min size = {min_size}
osd pool default pg num = {pg_count(len(storage), size)}
osd pool default pgp num = {pg_count(len(storage), size)}
# No manager daemon runs (ferry needs none): nothing to autoscale.
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 1

[osd]
osd objectstore = bluestore
# BlueStore on a sparse file in the OSD's directory (the node's data disk):
# no raw device, no LVM, no privileges.
bluestore block create = true
"""
    admin = keys.cephx("client.admin")
    admin_keyring = f"""[client.admin]
\tkey = {admin}
\tcaps mon = "allow *"
\tcaps osd = "allow *"
\tcaps mds = "allow *"
\tcaps mgr = "allow *"
"""
    mon_keyring = f"""[mon.]
\tkey = {keys.cephx("mon.")}
\tcaps mon = "allow *"
{admin_keyring}"""
    return conf, admin_keyring, mon_keyring


def write(path, text, mode):
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="ascii") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(
        description="Write cluster.toml (and the Ceph files) from NAME ROLE ADDRESS lines on stdin."
    )
    parser.add_argument("out_dir")
    parser.add_argument("--backend", choices=("embedded", "ceph"), default="embedded")
    parser.add_argument("--pool", default="ferry", help="the RADOS pool (default ferry)")
    parser.add_argument("--ceph-mon", help="the storage node that runs the Ceph monitor (default: the first)")
    parser.add_argument("--secret-file", help="derive the Ceph keys and fsid from this file")
    parser.add_argument("--source", default="a node list", help="where the node list came from (a comment)")
    args = parser.parse_args()
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", args.pool):
        fail(f"pool name {args.pool!r}: letters, digits, '.', '-', '_'")

    nodes = read_nodes(sys.stdin)
    # Sorted by role then name: the same input in any order gives the same
    # file, and storage nodes come first (the monitor is the first of them).
    order = {role: i for i, role in enumerate(ROLES)}
    nodes.sort(key=lambda n: (order[n[1]], n[0]))
    storage = [n for n in nodes if n[1] == "storage"]
    compute = [n for n in nodes if n[1] == "compute"]
    if not storage:
        fail("no storage node: a cluster needs at least one")
    if not compute:
        fail("no compute node: a cluster needs at least one")

    secret = None
    if args.secret_file:
        with open(args.secret_file, "rb") as f:
            secret = f.read()
        if len(secret) < 32:
            fail(f"{args.secret_file} holds {len(secret)} bytes; a secret needs at least 32")

    os.makedirs(args.out_dir, exist_ok=True)
    write(os.path.join(args.out_dir, "cluster.toml"),
          cluster_toml(nodes, args.backend, args.pool, args.source), 0o644)
    written = ["cluster.toml"]
    if args.backend == "ceph":
        mon = storage[0]
        if args.ceph_mon:
            named = [n for n in storage if n[0] == args.ceph_mon]
            if not named:
                fail(f"--ceph-mon {args.ceph_mon}: no storage node of that name")
            mon = named[0]
        conf, admin_keyring, mon_keyring = ceph_files(storage, mon, Keys(secret))
        write(os.path.join(args.out_dir, "ceph.conf"), conf, 0o644)
        write(os.path.join(args.out_dir, "ceph.client.admin.keyring"), admin_keyring, 0o600)
        write(os.path.join(args.out_dir, "ceph.mon.keyring"), mon_keyring, 0o600)
        written += ["ceph.conf", "ceph.client.admin.keyring", "ceph.mon.keyring"]
    print(
        f"cluster_config.py: {len(storage)} storage, {len(compute)} compute, "
        f"{len(nodes) - len(storage) - len(compute)} loadgen; wrote "
        + ", ".join(os.path.join(args.out_dir, w) for w in written),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
