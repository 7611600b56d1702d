#!/usr/bin/env python3
"""Renders bench/scenarios/invoke.sh's results: ferry's no-op call against
its floor (a bare hyper server) and its peer (wasmtime serve).

    bench/scenarios/invoke_table.py OUT_DIR

Reads OUT_DIR/runs/SERVER-{max,half}-rN.json (ferry-bench summaries) with
their SERVER-...-rN.cpu.json (the server process's CPU seconds over the
run) and OUT_DIR/context.json (the machine and the command). For each
server it takes the median over the rounds of: the closed-loop calls/s
(maximum throughput), the server's and the load generator's CPU use
during that run (CPU seconds per wall second: near 1.0 that side's core
was the limit), CPU microseconds per call at the
maximum and at the open-loop point, and that point's latency percentiles.
It also derives the calls one CPU-second of the server serves (10^6 / CPU
us per call at the maximum): what the server would do with its core to
itself, when the measured maximum was limited elsewhere.
CPU per call divides the server's CPU time by every call of the run,
successful or not. Writes OUT_DIR/invoke.json and OUT_DIR/table.md, and
prints the table.
"""

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from table import number  # noqa: E402 (beside this file)

SERVERS = ("ferry", "floor", "wasmtime")
NAMES = {
    "ferry": "ferry (test/noop, 1 shard)",
    "floor": "floor (hyper, 1 thread, no wasm)",
    "wasmtime": "wasmtime serve (wasi-http no-op)",
}
LABEL = re.compile(r"^(ferry|floor|wasmtime)-(max|half)-r(\d+)$")


def load(out):
    runs_dir = os.path.join(out, "runs")
    runs = {}
    for name in sorted(os.listdir(runs_dir)):
        if not name.endswith(".json") or name.endswith(".cpu.json"):
            continue
        match = LABEL.match(name[: -len(".json")])
        if not match:
            continue
        server, kind, round_ = match.group(1), match.group(2), int(match.group(3))
        path = os.path.join(runs_dir, name)
        cpu_path = path[: -len(".json")] + ".cpu.json"
        try:
            with open(path) as f:
                summary = json.load(f)
            with open(cpu_path) as f:
                cpu = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            sys.exit(f"invoke_table.py: reading {path} and its .cpu.json: {error}")
        calls = summary["count"] + summary["errors"]
        runs[(server, kind, round_)] = {
            "label": summary["label"],
            "calls": calls,
            "errors": summary["errors"],
            "calls_per_s": summary["achieved_rate"],
            "target_rate": summary.get("target_rate"),
            "latency_ms": summary["latency_ms"],
            "cpu_s": cpu["cpu_s"],
            "client_cpu_s": cpu.get("client_cpu_s"),
            "wall_s": cpu["wall_s"],
            "cpu_use": cpu["cpu_s"] / cpu["wall_s"] if cpu["wall_s"] > 0 else None,
            "client_cpu_use": cpu["client_cpu_s"] / cpu["wall_s"]
            if cpu.get("client_cpu_s") is not None and cpu["wall_s"] > 0 else None,
            "cpu_us_per_call": cpu["cpu_s"] / calls * 1e6 if calls else None,
        }
    if not runs:
        sys.exit(f"invoke_table.py: no invoke.sh run in {runs_dir}")
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def aggregate(runs):
    servers = {}
    for server in SERVERS:
        maxes = [r for (s, k, _), r in sorted(runs.items()) if s == server and k == "max"]
        halves = [r for (s, k, _), r in sorted(runs.items()) if s == server and k == "half"]
        if not maxes and not halves:
            continue
        servers[server] = {
            "rounds": len(maxes),
            "max_calls_per_s": median([r["calls_per_s"] for r in maxes]),
            "max_cpu_use": median([r["cpu_use"] for r in maxes]),
            "max_client_cpu_use": median([r["client_cpu_use"] for r in maxes]),
            "max_cpu_us_per_call": median([r["cpu_us_per_call"] for r in maxes]),
            "calls_per_cpu_s": median([1e6 / r["cpu_us_per_call"] for r in maxes if r["cpu_us_per_call"]]),
            "max_p50_ms": median([r["latency_ms"]["p50"] for r in maxes]),
            "half_target_rate": median([r["target_rate"] for r in halves]),
            "half_calls_per_s": median([r["calls_per_s"] for r in halves]),
            "half_client_cpu_use": median([r["client_cpu_use"] for r in halves]),
            "half_cpu_us_per_call": median([r["cpu_us_per_call"] for r in halves]),
            "half_p50_ms": median([r["latency_ms"]["p50"] for r in halves]),
            "half_p99_ms": median([r["latency_ms"]["p99"] for r in halves]),
            "half_p999_ms": median([r["latency_ms"]["p999"] for r in halves]),
            "errors": sum(r["errors"] for r in maxes + halves),
        }
    return servers


RATIO_FIELDS = (
    ("max_calls_per_s", "max calls/s"),
    ("calls_per_cpu_s", "calls per CPU-s"),
    ("max_cpu_us_per_call", "CPU us/call at max"),
    ("half_cpu_us_per_call", "CPU us/call at half"),
    ("half_p50_ms", "p50 at half"),
    ("half_p99_ms", "p99 at half"),
)


def ratios(servers):
    result = {}
    if "ferry" not in servers:
        return result
    for other in ("floor", "wasmtime"):
        if other not in servers:
            continue
        pair = {}
        for field, _ in RATIO_FIELDS:
            a, b = servers["ferry"][field], servers[other][field]
            pair[field] = a / b if a is not None and b else None
        result[f"ferry/{other}"] = pair
    return result


def ratio_text(value):
    """A ratio to three significant digits (0.00142, 0.98, 2.18, 610)."""
    if value is None:
        return "-"
    return f"{value:.3g}"


def render(context, servers, ratio, runs):
    lines = []
    rounds = context.get("rounds", "?")
    lines.append(
        f"No-op call, {context.get('date', '?')}: each server alone on CPU {context.get('server_cpu', '?')}, "
        f"load (ferry-bench) on CPU {context.get('client_cpu', '?')}; {context.get('cpus', '?')} CPUs, "
        f"load average {context.get('load_average_before', '?')} before, "
        f"{context.get('load_average_after', '?')} after. Medians of {rounds} round(s), "
        f"{number(context.get('duration_s'))} s per point; max: closed loop, "
        f"{context.get('concurrency', '?')} connections; half: open loop at half of ferry's max "
        f"of the same round. `{context.get('command', '?')}`"
    )
    if context.get("wasmtime"):
        flags = context.get("wasmtime_serve_flags") or "default flags"
        lines.append(f"Peer: {context['wasmtime']} serve ({flags}).")
    if context.get("wasmtime_missing"):
        lines.append(f"wasmtime serve left out: {context['wasmtime_missing']}")
    lines.append("")
    header = [
        "server", "max calls/s", "server CPU use at max", "load gen. CPU use at max", "CPU us/call at max",
        "calls per CPU-s", "half: target calls/s", "half: calls/s", "load gen. CPU use at half",
        "CPU us/call at half",
        "p50 ms", "p99 ms", "p99.9 ms", "errors",
    ]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    for server, s in servers.items():
        lines.append("| " + " | ".join([
            NAMES[server], number(s["max_calls_per_s"], 0), number(s["max_cpu_use"], 2),
            number(s["max_client_cpu_use"], 2), number(s["max_cpu_us_per_call"]), number(s["calls_per_cpu_s"], 0),
            number(s["half_target_rate"], 0), number(s["half_calls_per_s"], 0), number(s["half_client_cpu_use"], 2),
            number(s["half_cpu_us_per_call"]), number(s["half_p50_ms"], 3), number(s["half_p99_ms"], 3),
            number(s["half_p999_ms"], 3), str(s["errors"]),
        ]) + " |")
    if ratio:
        lines.append("")
        header = ["ratio"] + [name for _, name in RATIO_FIELDS]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
        for pair, values in ratio.items():
            lines.append("| " + " | ".join([pair] + [ratio_text(values[f]) for f, _ in RATIO_FIELDS]) + " |")
    lines.append("")
    lines.append("Every run:")
    lines.append("")
    header = ["run", "calls", "errors", "calls/s", "server CPU s / wall s", "load gen. CPU s",
              "CPU us/call", "p50 ms", "p99 ms", "max ms"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |")
    order = {name: i for i, name in enumerate(SERVERS)}
    for key in sorted(runs, key=lambda k: (k[2], order[k[0]], k[1] != "max")):
        r = runs[key]
        lines.append("| " + " | ".join([
            r["label"], str(r["calls"]), str(r["errors"]), number(r["calls_per_s"], 0),
            f"{r['cpu_s']:.2f} / {r['wall_s']:.2f}",
            f"{r['client_cpu_s']:.2f}" if r.get("client_cpu_s") is not None else "-",
            number(r["cpu_us_per_call"]), number(r["latency_ms"]["p50"], 3), number(r["latency_ms"]["p99"], 3),
            number(r["latency_ms"]["max"], 3),
        ]) + " |")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    runs = load(out)
    context_path = os.path.join(out, "context.json")
    context = {}
    if os.path.exists(context_path):
        with open(context_path) as f:
            context = json.load(f)
    servers = aggregate(runs)
    ratio = ratios(servers)
    per_round = {runs[k]["label"]: runs[k] for k in sorted(runs)}
    with open(os.path.join(out, "invoke.json"), "w") as f:
        json.dump({"context": context, "servers": servers, "ratios": ratio, "runs": per_round}, f, indent=2)
    table = render(context, servers, ratio, runs)
    with open(os.path.join(out, "table.md"), "w") as f:
        f.write(table)
    print(table, end="")


if __name__ == "__main__":
    main()
