#!/usr/bin/env python3
"""Records when and where a scenario ran: OUT/meta.json.

    bench/scenarios/meta.py start OUT SCENARIO -- COMMAND...
    bench/scenarios/meta.py end OUT

`start` writes the scenario's name, the command that ran it, the UTC date,
the kernel, the CPU model and count, the load average, the ferry commit
(plus whether the working tree had changes) and the ferry binary's build
time and hash; `end` adds the UTC date, the load average at the end and
whether the binary changed during the run. bench/scenarios/render.py prints these next
to every table it renders from the run.
"""

import hashlib
import json
import os
import platform
import subprocess
import sys
import time


def now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_average():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def commit(root):
    def git(*args):
        try:
            return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True,
                                  check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    head = git("rev-parse", "--short", "HEAD")
    if head is None:
        return "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return head + (" plus working-tree changes" if dirty else "")


def binary(root):
    """target/release/ferry's modification time (UTC) and sha256 prefix."""
    path = os.path.join(root, "target", "release", "ferry")
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        built = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(os.path.getmtime(path)))
        return {"built": built, "sha256": digest.hexdigest()[:16]}
    except OSError as error:
        return {"error": str(error)}


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if len(sys.argv) >= 4 and sys.argv[1] == "start":
        out, scenario = sys.argv[2], sys.argv[3]
        command = sys.argv[5:] if len(sys.argv) > 4 and sys.argv[4] == "--" else sys.argv[4:]
        meta = {
            "scenario": scenario,
            "command": " ".join(command),
            "started": now(),
            "kernel": platform.release(),
            "cpu_model": cpu_model(),
            "cpus": os.cpu_count(),
            "load_average_start": load_average(),
            "ferry_commit": commit(root),
            "ferry_binary": binary(root),
        }
    elif len(sys.argv) == 3 and sys.argv[1] == "end":
        out = sys.argv[2]
        path = os.path.join(out, "meta.json")
        try:
            with open(path) as f:
                meta = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            sys.exit(f"meta.py: reading {path}: {error}")
        meta["ended"] = now()
        meta["load_average_end"] = load_average()
        meta["ferry_binary_changed"] = binary(root) != meta.get("ferry_binary")
    else:
        sys.exit(__doc__)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
