#!/usr/bin/env python3
"""Renders ferry-bench results as a markdown table.

    bench/scenarios/table.py DIR [DIR...]

Reads every ferry-bench summary (LABEL.json) in the directories, and the
link counters a scenario wrote beside it (LABEL.link.json: bytes that
crossed the storage node's link for one call), and prints one row per run:
calls, errors, achieved rate, p50/p99/p99.9 latency, CPU per call on each
node whose /metrics the run read, offload snapshot bytes per call, and
link bytes per call. Rows are sorted by label.
"""

import json
import os
import sys


def load(directory):
    runs = []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json") or name.endswith(".link.json"):
            continue
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                summary = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            sys.exit(f"table.py: reading {path}: {error}")
        if not isinstance(summary, dict) or "latency_ms" not in summary or "label" not in summary:
            continue
        link_path = os.path.join(directory, summary["label"] + ".link.json")
        if os.path.exists(link_path):
            with open(link_path) as f:
                summary["link"] = json.load(f)
        runs.append(summary)
    return runs


def host(url):
    rest = url.split("://", 1)[-1]
    return rest.split("/", 1)[0]


def number(value, digits=1):
    """A figure for a table: thousands with separators, else `digits` decimals."""
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def size(value):
    if value is None:
        return "-"
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} B"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = []
    for directory in sys.argv[1:]:
        runs.extend(load(directory))
    if not runs:
        sys.exit(f"table.py: no ferry-bench summary in {' '.join(sys.argv[1:])}")
    nodes = []
    for run in runs:
        for node in run.get("nodes", []):
            if host(node["url"]) not in nodes:
                nodes.append(host(node["url"]))
    header = ["run", "mode", "calls", "errors", "calls/s", "p50 ms", "p99 ms", "p99.9 ms"]
    header += [f"CPU ms/call {n}" for n in nodes]
    header += ["offload B/call", "link B/call (to, from storage)"]
    print("| " + " | ".join(header) + " |")
    print("| " + " | ".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + " |")
    for run in sorted(runs, key=lambda r: r["label"]):
        latency = run["latency_ms"]
        mode = run["mode"] + (", forbid_ndp" if run.get("forbid_ndp") else "")
        row = [run["label"], mode, str(run["count"]), str(run["errors"]),
               number(run["achieved_rate"], 1), number(latency["p50"], 3), number(latency["p99"], 3),
               number(latency["p999"], 3)]
        by_host = {host(n["url"]): n for n in run.get("nodes", [])}
        offload = None
        for n in nodes:
            node = by_host.get(n)
            cpu = node["per_call"].get("process_cpu_seconds_total") if node else None
            row.append(number(cpu * 1000 if cpu is not None else None, 3))
            if node:
                sent = node["per_call"].get('ferry_offload_bytes_total{direction="sent"}', 0)
                received = node["per_call"].get('ferry_offload_bytes_total{direction="received"}', 0)
                # The compute node counts what it ships; take the largest
                # count so that a node counting the other side too does not
                # double it.
                if sent or received:
                    offload = max(offload or 0, sent + received)
        row.append(size(offload) if offload is not None else "0 B")
        link = run.get("link")
        row.append(f"{size(link['to_storage_bytes'])}, {size(link['from_storage_bytes'])}" if link else "-")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
