"""Waits until every placement group of every pool is active+clean.

    pgs.py CONF SECONDS

Run by deploy/ceph/start.sh and osd.sh with the Python the `ceph` CLI runs
on (it ships the `rados` module). The clusters those scripts start have no
manager daemon, so `ceph pg stat` cannot answer; instead each PG's primary
OSD is asked directly (`ceph pg PGID query`, all over one connection).
Exit 0 once all are active+clean; 1, with the PGs that are not on stderr,
when SECONDS pass first.
"""

import json
import sys
import time

import rados


def main():
    if len(sys.argv) != 3:
        print("usage: pgs.py CONF SECONDS", file=sys.stderr)
        return 2
    conf, seconds = sys.argv[1], float(sys.argv[2])
    deadline = time.monotonic() + seconds
    cluster = rados.Rados(conffile=conf)
    cluster.connect(timeout=max(1, int(seconds)))
    try:
        code, out, status = cluster.mon_command(
            json.dumps({"prefix": "osd dump", "format": "json"}), b"", timeout=20
        )
        if code != 0:
            print(f"pgs.py: osd dump failed: {status}", file=sys.stderr)
            return 1
        pgids = [
            f"{pool['pool']}.{i:x}"
            for pool in json.loads(out)["pools"]
            for i in range(pool["pg_num"])
        ]
        while True:
            waiting = {}
            for pgid in pgids:
                query = json.dumps({"prefix": "query", "pgid": pgid, "format": "json"})
                try:
                    code, out, status = cluster.pg_command(pgid, query, b"", timeout=5)
                    state = json.loads(out)["state"] if code == 0 else status
                except (rados.Error, ValueError, KeyError) as error:
                    state = str(error)
                if state != "active+clean":
                    waiting[pgid] = state
            if not waiting:
                return 0
            if time.monotonic() >= deadline:
                print(
                    f"pgs.py: {len(waiting)} of {len(pgids)} PGs not active+clean "
                    f"after {seconds:g} s: {waiting}",
                    file=sys.stderr,
                )
                return 1
            time.sleep(0.2)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
