#!/usr/bin/env python3
"""CPU a server spends on idle keep-alive connections, ferry against its floor.

For each server (a one-shard `ferry up`, then `ferry-bench floor`, a bare
hyper server), pinned to --server-cpu: for each count N of --connections,
opens N connections from --client-cpu, sends one `GET /healthz` on each and
reads the answer, leaves them all open and idle, and reads the server's CPU
time (utime + stime of /proc/PID/stat) over --seconds. Prints a markdown
table of the server's CPU use (% of one core) by N, and the ratio of ferry's
extra CPU at the largest N to the floor's.

usage: bench/idle_connections.py [--ferry target/release/ferry]
    [--bench target/release/ferry-bench] [--connections 0,256,1024,4096]
    [--seconds 10] [--server-cpu 0] [--client-cpu 1]
"""

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as stat:
        # Fields after the command name, which may hold spaces.
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def start(server, args, scratch):
    ready = os.path.join(scratch, f"{server}.ready")
    log = open(os.path.join(scratch, f"{server}.log"), "w")
    if server == "ferry":
        command = [args.ferry, "up", "--data", os.path.join(scratch, "data"), "--http-port", "0",
                   "--upload-port", "0", "--cores", "1", "--ready-file", ready]
        path = "/healthz"
    else:
        command = [args.bench, "floor", "--port", "0", "--ready-file", ready]
        path = "/"
    process = subprocess.Popen(["taskset", "-c", str(args.server_cpu), *command],
                               stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not (os.path.exists(ready) and os.path.getsize(ready) > 0):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            sys.exit(f"idle_connections.py: {server} did not start; see {log.name}")
        time.sleep(0.05)
    with open(ready) as f:
        host, port = json.load(f)["http"].rsplit(":", 1)
    return process, (host, int(port)), path


def idle_cpu(pid, address, path, count, seconds):
    """The server's CPU use (fraction of one core) with COUNT idle connections."""
    connections = []
    try:
        for _ in range(count):
            connection = socket.create_connection(address, timeout=10)
            connection.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = connection.recv(4096)
                if not chunk:
                    sys.exit("idle_connections.py: the server closed a connection before answering")
                answer += chunk
            if not answer.startswith(b"HTTP/1.1 200"):
                sys.exit(f"idle_connections.py: answered {answer.splitlines()[0]!r}")
            connections.append(connection)
        time.sleep(1)  # the answers' own work is done
        before = cpu_ticks(pid)
        time.sleep(seconds)
        used = (cpu_ticks(pid) - before) / TICKS / seconds
        # Every connection must still be open: one the server closed reads
        # as end of file at once.
        for connection in connections:
            connection.setblocking(False)
            try:
                if connection.recv(1) == b"":
                    sys.exit("idle_connections.py: the server closed an idle connection")
            except BlockingIOError:
                pass
        return used
    finally:
        for connection in connections:
            connection.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ferry", default=os.path.join(ROOT, "target/release/ferry"))
    parser.add_argument("--bench", default=os.path.join(ROOT, "target/release/ferry-bench"))
    parser.add_argument("--connections", default="0,256,1024,4096")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--client-cpu", type=int, default=1)
    args = parser.parse_args()
    counts = [int(n) for n in args.connections.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if max(counts) + 64 > hard:
        sys.exit(f"idle_connections.py: {max(counts)} connections need more than the "
                 f"open-file limit of {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    os.sched_setaffinity(0, {args.client_cpu})

    use = {}
    with tempfile.TemporaryDirectory(prefix="ferry-idle-") as scratch:
        for server in ("ferry", "floor"):
            process, address, path = start(server, args, scratch)
            try:
                for count in counts:
                    use[server, count] = idle_cpu(process.pid, address, path, count,
                                                  args.seconds)
            finally:
                process.terminate()
                process.wait(timeout=30)

    print(f"Idle keep-alive connections, one `GET` answered on each, then "
          f"{args.seconds:g} s idle; server on CPU {args.server_cpu}, "
          f"connections from CPU {args.client_cpu}.")
    print()
    print("| idle connections | ferry (1 shard), % of a core | floor (bare hyper), % of a core |")
    print("| ---: | ---: | ---: |")
    for count in counts:
        print(f"| {count} | {use['ferry', count] * 100:.1f} | {use['floor', count] * 100:.1f} |")
    top, low = max(counts), min(counts)
    extra = {server: use[server, top] - use[server, low] for server in ("ferry", "floor")}
    print()
    print(f"{top} idle connections cost ferry {extra['ferry'] * 100:.1f}% of a core more than "
          f"{low}, the floor {extra['floor'] * 100:.1f}%.")


if __name__ == "__main__":
    main()
