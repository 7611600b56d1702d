#!/usr/bin/env python3
"""Peak RSS of a ferry node under memory-abuse inputs.

Starts `ferry up` (1 shard, memory_bytes_max 1 GiB, node_memory_bytes_max
2 GiB, the test functions loaded) and drives, one after another, the inputs
that once took a node's memory with them; after each it prints the node's peak RSS (VmHWM) and
what the node answered:

  - 8 asynchronous calls each returning a 16 MiB output, kept for polling;
  - a chained call with a 48 MiB input (chainbig 48);
  - a 256 MiB object PUT, then its GET;
  - 200 connections declaring 1 GiB PUT bodies and sending one byte;
  - 60 connections declaring 20 MB invocation bodies and sending one byte;
  - last, 4 concurrent calls that allocate until stopped (memhog).

usage: bench/memory_abuse.py [--ferry target/release/ferry] [--guests guests/out]
"""

import argparse
import base64
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request


def rss_mib(pid, field="VmHWM"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    raise RuntimeError(f"no {field}")


def post(url, body, timeout=120):
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def call(http, message):
    return post(f"http://{http}/", json.dumps(message).encode())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ferry", default="target/release/ferry")
    parser.add_argument("--guests", default="guests/out")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="ferry-abuse-")
    config = os.path.join(scratch, "ferry.toml")
    with open(config, "w") as f:
        f.write("[limits]\nmemory_bytes_max = 1073741824\nnode_memory_bytes_max = 2147483648\n")
    ready = os.path.join(scratch, "ready")
    node = subprocess.Popen(
        [args.ferry, "up", "--config", config, "--cores", "1", "--data",
         os.path.join(scratch, "data"), "--http-port", "0", "--upload-port", "0",
         "--ready-file", ready, "--functions", os.path.join(args.guests, "tests")],
        env={**os.environ, "FERRY_LOG": "error"})
    try:
        deadline = time.time() + 120
        while not os.path.exists(ready):
            if node.poll() is not None or time.time() > deadline:
                sys.exit("ferry did not start")
            time.sleep(0.05)
        time.sleep(0.1)
        with open(ready) as f:
            addrs = json.load(f)
        http, upload = addrs["http"], addrs["upload"]
        def report(what, answer):
            peak, now = rss_mib(node.pid), rss_mib(node.pid, "VmRSS")
            print(f"| {what} | {answer} | {peak} MiB | {now} MiB |", flush=True)

        print("| input | answer | peak RSS | RSS after |")
        print("| --- | --- | --- | --- |")
        report("(started, functions loaded)", "")

        big = base64.b64encode(os.urandom(16 << 20)).decode()
        ids = [call(http, {"user": "test", "function": "echo", "input_base64": big,
                           "async": True})[1].decode() for _ in range(8)]
        time.sleep(2)
        kept = [call(http, {"status": True, "id": int(i)})[0] for i in ids]
        report("8 async calls with 16 MiB outputs, polled", f"{kept.count(200)} kept, {kept.count(404)} gone")

        status, body = call(http, {"user": "test", "function": "chainbig", "input_data": "48"})
        report("chained call with a 48 MiB input", f"{status} " + body.decode(errors="replace").splitlines()[-1][:60])

        with socket.create_connection(tuple_of(upload)) as s:
            total = 256 << 20
            s.sendall(f"PUT /o/u/big HTTP/1.1\r\nHost: f\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n".encode())
            block = os.urandom(8 << 20)
            for _ in range(total // len(block)):
                s.sendall(block)
            answer = s.recv(200).split(b"\r\n")[0].decode()
        report("256 MiB object PUT", answer)
        with urllib.request.urlopen(f"http://{upload}/o/u/big", timeout=120) as reply:
            got = 0
            while chunk := reply.read(1 << 20):
                got += len(chunk)
        report("its GET", f"200, {got >> 20} MiB")

        held = []
        for _ in range(200):
            s = socket.create_connection(tuple_of(upload))
            s.sendall(b"PUT /o/u/slow HTTP/1.1\r\nHost: f\r\nContent-Length: 1073741824\r\n\r\nx")
            held.append(s)
        time.sleep(1)
        report("200 connections declaring 1 GiB PUTs, 1 byte sent", "held open")
        for s in held:
            s.close()

        held = []
        for _ in range(60):
            s = socket.create_connection(tuple_of(http))
            s.sendall(b"POST / HTTP/1.1\r\nHost: f\r\nContent-Length: 20000000\r\n\r\n{")
            held.append(s)
        time.sleep(1)
        refused = 0
        for s in held:
            s.setblocking(False)
            try:
                refused += s.recv(20).startswith(b"HTTP/1.1 503")
            except BlockingIOError:
                pass
        report("60 connections declaring 20 MB invocations", f"{refused} refused (503)")
        for s in held:
            s.close()
        # Last: it takes the node to its linear-memory budget, which the
        # peak RSS then shows for good.
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(
                lambda _: call(http, {"user": "test", "function": "memhog"})[0], range(4)))
        report("4 concurrent memhog calls (1 GiB cap each, 2 GiB node budget)", f"{answers}")
        status, _ = call(http, {"user": "test", "function": "noop"})
        report("a no-op call afterwards", f"{status}")
    finally:
        node.kill()
        node.wait()


def tuple_of(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


if __name__ == "__main__":
    main()
