#!/usr/bin/env python3
"""The experiment's machines from its manifest, as cluster_config.py reads them.

    manifest.py [--lan NAME] [MANIFEST]      (default: stdin)

On a CloudLab node, `geni-get manifest | manifest.py`: one line per machine
of profile.py, `NAME ROLE ADDRESS`, where NAME is the node's client_id
(storage-0, compute-1, loadgen-0, ...), ROLE the part before the last `-`,
and ADDRESS the IPv4 address CloudLab gave its interface on the LAN named
NAME (default `lan`). Nodes whose names are not ROLE-N are left out. Exit 1
when a ferry node has no address on the LAN: the manifest is incomplete
(an experiment still being set up) or not this profile's.
"""

import argparse
import re
import sys
import xml.etree.ElementTree as ET

GENI = "{http://www.geni.net/resources/rspec/3}"
NODE_RE = re.compile(r"^(storage|compute|loadgen)-(\d+)$")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", nargs="?", default="-")
    parser.add_argument("--lan", default="lan", help="the LAN's client_id (default lan)")
    args = parser.parse_args()
    try:
        if args.manifest == "-":
            root = ET.fromstring(sys.stdin.read())
        else:
            root = ET.parse(args.manifest).getroot()
    except (ET.ParseError, OSError) as error:
        print(f"manifest.py: reading the manifest: {error}", file=sys.stderr)
        return 1

    on_lan = {
        ref.get("client_id")
        for link in root.iter(f"{GENI}link")
        if link.get("client_id") == args.lan
        for ref in link.iter(f"{GENI}interface_ref")
    }
    if not on_lan:
        print(f"manifest.py: no link named {args.lan!r} in the manifest", file=sys.stderr)
        return 1

    lines, missing = [], []
    for node in root.iter(f"{GENI}node"):
        name = node.get("client_id", "")
        match = NODE_RE.match(name)
        if not match:
            continue
        address = None
        for interface in node.iter(f"{GENI}interface"):
            if interface.get("client_id") not in on_lan:
                continue
            for ip in interface.iter(f"{GENI}ip"):
                if ip.get("type", "ipv4").lower() == "ipv4" and ip.get("address"):
                    address = ip.get("address")
        if address is None:
            missing.append(name)
        else:
            lines.append(f"{name} {match.group(1)} {address}")
    if missing:
        print(f"manifest.py: no address on {args.lan!r} for {', '.join(missing)}", file=sys.stderr)
        return 1
    if not lines:
        print("manifest.py: no storage-N, compute-N or loadgen-N nodes in the manifest", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
