#!/usr/bin/env python3
"""Renders benchmark tables from committed results, into bench/README.md.

    bench/scenarios/render.py                 rewrite the README's tables
    bench/scenarios/render.py --check         exit 1, with a diff, if they are stale
    bench/scenarios/render.py SCENARIO DIR    print one scenario's table (table.md)

The README holds each generated table between two markers:

    <!-- table: NAME -->
    ...
    <!-- /table -->

and NAME's table is rendered from bench/results/NAME/ (SCENARIO DIR for
one table). Scenarios: ndp (bench/scenarios/ndp.sh: NDP / forbid_ndp by
function and object size, and the open-loop sweep), pays
(bench/scenarios/pays.sh: the ratio per function and link rate), invoke
(bench/scenarios/invoke.sh: a no-op call against the floor and wasmtime),
scaling (bench/scaling.sh: 1 against 2 shards, and past saturation) and
getmmap (bench/getmmap.sh: getMmap against dd, and the read-path
experiment), the last two as their scripts wrote table.md; transport,
storage, memory, offload, calls and idle are runs of
bench/transport_floor.sh, bench/storage/run.sh, bench/memory_abuse.py,
bench/offload.sh, bench/scenarios/calls.sh and bench/idle_connections.py
kept by
bench/scenarios/record.sh (meta.json and output.txt).
Every table starts with when and where it was measured, from the run's
meta.json (invoke: context.json). A scenario with no results renders as a
note saying which command produces them. --readme and --results point at
another README and results tree.
"""

import difflib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
from table import number, size  # noqa: E402 (beside this file)
import invoke_table  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPUTE, STORAGE = "10.77.1.", "10.77.2."
MARKER = re.compile(r"^(<!-- table: ([a-z0-9_-]+) -->\n)(.*?)^(<!-- /table -->)$", re.S | re.M)
COMMANDS = {
    "ndp": "bash bench/scenarios/ndp.sh",
    "pays": "bash bench/scenarios/pays.sh",
    "invoke": "bash bench/scenarios/invoke.sh --duration 5 --rounds 3",
    "scaling": "bash bench/scaling.sh --rounds 3 --duration 5 --rate 5000",
    "getmmap": "bash bench/getmmap.sh",
    "transport": "bash bench/scenarios/record.sh transport -- bash bench/transport_floor.sh",
    "storage": "bash bench/scenarios/record.sh storage -- bash bench/storage/run.sh",
    "memory": "bash bench/scenarios/record.sh memory -- python3 bench/memory_abuse.py",
    "offload": "bash bench/scenarios/record.sh offload -- bash bench/offload.sh",
    "calls": "bash bench/scenarios/record.sh calls -- bash bench/scenarios/calls.sh",
    "idle": "bash bench/scenarios/record.sh idle -- python3 bench/idle_connections.py",
    "callprofile": "bash bench/scenarios/invoke.sh --perf --servers ferry,floor --rounds 3 "
                   "--out bench/results/callprofile",
}


class Missing(Exception):
    """A scenario's results are not there."""


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError as error:
        raise Missing(path) from error
    except (OSError, json.JSONDecodeError) as error:
        sys.exit(f"render.py: reading {path}: {error}")


def row(cells):
    return "| " + " | ".join(cells) + " |"


def header(cells, left=1):
    return [row(cells), row(["---"] * left + ["---:"] * (len(cells) - left))]


def measured(meta):
    """One line: when, where and under what load a run was measured."""
    when = meta.get("started", "?")
    if meta.get("ended"):
        when += f" to {meta['ended']}"
    load = f"load average {meta.get('load_average_start', '?')} at start"
    if meta.get("load_average_end"):
        load += f", {meta['load_average_end']} at end"
    build = meta.get("ferry_binary") or {}
    binary = f" (binary built {build['built']}, sha256 {build['sha256']}" if "built" in build else ""
    if binary:
        binary += ", rebuilt during the run)" if meta.get("ferry_binary_changed") else ")"
    return (f"Measured {when} on Linux {meta.get('kernel', '?')}, {meta.get('cpu_model', 'CPU model not recorded')} "
            f"({meta.get('cpus', '?')} CPUs), {load}; ferry {meta.get('ferry_commit', '?')}{binary}; "
            f"`{meta.get('command', '?')}`.")


def cpu_ms(run, host):
    """CPU ms per call of the node at `host` over the run's window."""
    for node in run.get("nodes", []):
        if host in node["url"]:
            value = node["per_call"].get("process_cpu_seconds_total")
            return value * 1000 if value is not None else None
    return None


def load_point(directory, stem):
    """The closed-loop run DIR/STEM.json and its DIR/STEM.link.json."""
    run = read_json(os.path.join(directory, stem + ".json"))
    link_path = os.path.join(directory, stem + ".link.json")
    run["link"] = read_json(link_path) if os.path.exists(link_path) else None
    return run


def link_text(run):
    link = run.get("link")
    if not link:
        return "-"
    return f"{size(link['to_storage_bytes'])}, {size(link['from_storage_bytes'])}"


# Below this many calls in a run's window, the CPU per call comes from the
# call measured alone (LABEL.link.json): the window's counters are read
# while its last call still runs, which skews a figure over a few calls.
CALLS_FOR_WINDOW_CPU = 10


def cpu_text(run):
    link = run.get("link") or {}
    if run["count"] < CALLS_FOR_WINDOW_CPU and "cpu_ms" in link:
        return f"{number(link['cpu_ms']['compute'])}, {number(link['cpu_ms']['storage'])} †"
    return f"{number(cpu_ms(run, COMPUTE))}, {number(cpu_ms(run, STORAGE))}"


CPU_NOTE = (f"CPU ms/call: process CPU time per call over the run's window; † marks runs of fewer than "
            f"{CALLS_FOR_WINDOW_CPU} calls, whose figure is that of one call measured alone (`.link.json`), "
            f"as are the link bytes.")


def ratio(ndp, forbid):
    a, b = ndp["latency_ms"]["p50"], forbid["latency_ms"]["p50"]
    return f"**{a / b:.2f}**" if b else "-"


def failures(directory, describe):
    """Lines for the points of DIR that failed (STEM.failed.json), in order."""
    lines = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".failed.json"):
            failure = read_json(os.path.join(directory, name))
            error = " / ".join(l.strip() for l in failure.get("error", "?").splitlines() if l.strip())
            lines.append(f"- {describe(name[: -len('.failed.json')])}: failed: `{error}`")
            for logged in failure.get("node_log", []):
                lines.append(f"  - logged by {logged.split(': ', 1)[0]}: `{logged.split(': ', 1)[-1]}`")
    return lines


def render_ndp(directory):
    meta = read_json(os.path.join(directory, "meta.json"))
    closed = os.path.join(directory, "closed")
    if not os.path.isdir(closed):
        raise Missing(closed)
    points = {}
    for name in os.listdir(closed):
        match = re.match(r"^(.+)-(\d+)m-(ndp|forbid)\.json$", name)
        if match:
            points.setdefault((match.group(1), int(match.group(2))), set()).add(match.group(3))
    if not points and not any(n.endswith(".failed.json") for n in os.listdir(closed)):
        raise Missing(closed)
    lines = [measured(meta), ""]
    lines += header(["function", "object", "p50 ms NDP", "p50 ms forbid_ndp", "NDP / forbid_ndp p50",
                     "calls NDP, forbid_ndp", "link B/call NDP (to, from storage)",
                     "link B/call forbid_ndp (to, from storage)", "CPU ms/call NDP (compute, storage)",
                     "CPU ms/call forbid_ndp (compute, storage)"], left=2)
    order = {"wordcount": 0, "grep": 1, "countstr": 2, "sumcol": 3}
    for function, mib in sorted(points, key=lambda k: (order.get(k[0], 9), k[0], k[1])):
        if points[(function, mib)] != {"ndp", "forbid"}:
            continue
        ndp = load_point(closed, f"{function}-{mib}m-ndp")
        forbid = load_point(closed, f"{function}-{mib}m-forbid")
        flag = " (failed: below)" if os.path.exists(os.path.join(closed, f"{function}-{mib}m.failed.json")) else ""
        lines.append(row([function + flag, size(mib << 20), number(ndp["latency_ms"]["p50"]),
                          number(forbid["latency_ms"]["p50"]), ratio(ndp, forbid),
                          f"{ndp['count']}, {forbid['count']}", link_text(ndp), link_text(forbid),
                          cpu_text(ndp), cpu_text(forbid)]))
    lines += ["", CPU_NOTE]

    def describe(stem):
        match = re.match(r"^(.+)-(\d+)m$", stem)
        return f"{match.group(1)} {size(int(match.group(2)) << 20)}" if match else stem
    failed = failures(closed, describe)
    if failed:
        lines += ["", "Points that failed (the scenario's error text):", ""] + failed
    sweep = os.path.join(directory, "sweep")
    sweeps = []
    if os.path.isdir(sweep):
        for function in sorted(os.listdir(sweep), key=lambda f: (order.get(f, 9), f)):
            for name in os.listdir(os.path.join(sweep, function)):
                match = re.match(r"^(.+)-(\d+)m-(ndp|forbid)-r([0-9._]+)\.json$", name)
                if match:
                    run = read_json(os.path.join(sweep, function, name))
                    sweeps.append((function, int(match.group(2)), match.group(3), run))
    if sweeps:
        lines += ["", "Open loop (`ferry-bench sweep`), latency from each call's due time:", ""]
        lines += header(["function", "object", "target calls/s", "NDP: calls/s", "NDP: p50 ms", "NDP: p99 ms",
                         "NDP: errors", "forbid_ndp: calls/s", "forbid_ndp: p50 ms", "forbid_ndp: p99 ms",
                         "forbid_ndp: errors"], left=2)
        by_point = {}
        for function, mib, mode, run in sweeps:
            by_point.setdefault((function, mib, run["target_rate"]), {})[mode] = run
        for (function, mib, rate) in sorted(by_point, key=lambda k: (order.get(k[0], 9), k[0], k[1], k[2])):
            cells = [function, size(mib << 20), number(rate, 2)]
            for mode in ("ndp", "forbid"):
                run = by_point[(function, mib, rate)].get(mode)
                if run is None:
                    cells += ["-"] * 4
                else:
                    cells += [number(run["achieved_rate"], 2), number(run["latency_ms"]["p50"]),
                              number(run["latency_ms"]["p99"]), str(run["errors"])]
            lines.append(row(cells))
    return "\n".join(lines) + "\n"


def render_pays(directory):
    meta = read_json(os.path.join(directory, "meta.json"))
    rates = sorted((d for d in os.listdir(directory) if os.path.isdir(os.path.join(directory, d))),
                   key=lambda r: -rate_bits(r))
    if not rates:
        raise Missing(directory)
    command = meta.get("command", "")
    match = re.search(r"SIZE=(\d+)", command)
    object_size = size(int(match.group(1)) << 20) if match else "?"
    lines = [measured(meta), ""]
    lines += header(["function", "object", "storage link", "p50 ms NDP", "p50 ms forbid_ndp",
                     "NDP / forbid_ndp p50", "calls NDP, forbid_ndp", "link B/call NDP (to, from storage)",
                     "link B/call forbid_ndp (to, from storage)", "CPU ms/call NDP (compute, storage)",
                     "CPU ms/call forbid_ndp (compute, storage)"], left=3)
    for function in ("countstr", "sumcol", "wordcount", "grep"):
        for rate in rates:
            stem = os.path.join(directory, rate, function)
            if not os.path.exists(stem + "-ndp.json") or not os.path.exists(stem + "-forbid.json"):
                continue
            ndp = load_point(os.path.join(directory, rate), f"{function}-ndp")
            forbid = load_point(os.path.join(directory, rate), f"{function}-forbid")
            kind = "CSV" if function == "sumcol" else "words"
            flag = " (failed: below)" if os.path.exists(stem + ".failed.json") else ""
            lines.append(row([function + flag, f"{object_size} {kind}", rate, number(ndp["latency_ms"]["p50"]),
                              number(forbid["latency_ms"]["p50"]), ratio(ndp, forbid),
                              f"{ndp['count']}, {forbid['count']}", link_text(ndp), link_text(forbid),
                              cpu_text(ndp), cpu_text(forbid)]))
    lines += ["", CPU_NOTE]
    for rate in rates:
        failed = failures(os.path.join(directory, rate), lambda stem, rate=rate: f"{stem} at {rate}")
        if failed:
            lines += [""] + failed
    return "\n".join(lines) + "\n"


def rate_bits(rate):
    match = re.match(r"^([0-9.]+)([kmg]?)bit$", rate)
    if not match:
        return 0
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


def render_invoke(directory):

    if not os.path.isdir(os.path.join(directory, "runs")):
        raise Missing(directory)
    context = read_json(os.path.join(directory, "context.json"))
    runs = invoke_table.load(directory)
    servers = invoke_table.aggregate(runs)
    text = invoke_table.render(context, servers, invoke_table.ratios(servers), runs)
    summary = text.split("\nEvery run:")[0].rstrip("\n")
    where = (f"Measured on Linux {context.get('kernel', '?')}, {context.get('cpu_model', 'CPU model not recorded')}; "
             f"ferry {context.get('ferry_commit', '?')}.")
    return where + "\n" + summary + "\n"


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError as error:
        raise Missing(path) from error


def as_it_is(path):
    """A table a scenario wrote itself, taken as it is."""
    text = read_text(path)
    return text if text.endswith("\n") else text + "\n"


def render_scaling(directory):
    """bench/scaling.sh writes its own table.md."""
    return as_it_is(os.path.join(directory, "table.md"))


def render_getmmap(directory):
    """bench/getmmap.sh's table.md, then the read-path experiment's output."""
    text = render_scaling(directory)
    paths = os.path.join(directory, "paths.txt")
    if os.path.exists(paths):
        text += "\nThe read-path experiment (`bench/examples/getmmap_paths.rs`) on the same file:\n\n```\n"
        text += read_text(paths).rstrip("\n") + "\n```\n"
    return text


def render_callprofile(directory):
    """invoke.sh --perf: the table profile.py wrote."""
    return as_it_is(os.path.join(directory, "profile.md"))


def render_recorded(directory):
    """A run kept by bench/scenarios/record.sh: when and where, then what it
    printed (a markdown table as it is, anything else as a code block)."""
    meta = read_json(os.path.join(directory, "meta.json"))
    output = read_text(os.path.join(directory, "output.txt")).rstrip("\n")
    lines = [measured(meta), ""]
    rows = [line for line in output.splitlines() if line.startswith("|")]
    other = [line for line in output.splitlines() if line.strip() and not line.startswith("|")]
    if rows:
        # A markdown table, with whatever else the command printed above it.
        if other:
            lines += ["```", *other, "```", ""]
        lines += rows
    else:
        lines += ["```", output, "```"]
    return "\n".join(lines) + "\n"


RENDERERS = {"ndp": render_ndp, "pays": render_pays, "invoke": render_invoke,
             "scaling": render_scaling, "getmmap": render_getmmap,
             "transport": render_recorded, "storage": render_recorded,
             "memory": render_recorded, "offload": render_recorded,
             "calls": render_recorded, "idle": render_recorded,
             "callprofile": render_callprofile}


def render(name, directory):
    if name not in RENDERERS:
        sys.exit(f"render.py: no scenario {name!r} (known: {', '.join(RENDERERS)})")
    return RENDERERS[name](directory)


def section(name, results):
    directory = os.path.join(results, name)
    try:
        return render(name, directory)
    except Missing:
        return (f"No results in `bench/results/{name}/` yet: the table appears here when "
                f"`{COMMANDS.get(name, name)}` has run and `bench/scenarios/render.py` has rendered it.\n")


def rewrite(readme_text, results):
    def replace(match):
        return match.group(1) + "\n" + section(match.group(2), results) + "\n" + match.group(4)
    return MARKER.sub(replace, readme_text)


def main():
    args = sys.argv[1:]
    readme = os.path.join(ROOT, "bench", "README.md")
    results = os.path.join(ROOT, "bench", "results")
    check = False
    rest = []
    while args:
        arg = args.pop(0)
        if arg == "--check":
            check = True
        elif arg in ("--readme", "--results") and args:
            value = args.pop(0)
            if arg == "--readme":
                readme = value
            else:
                results = value
        elif arg in ("-h", "--help"):
            print(__doc__)
            return
        else:
            rest.append(arg)
    if rest:
        if len(rest) != 2 or check:
            sys.exit(__doc__)
        try:
            print(render(rest[0], rest[1]), end="")
        except Missing as missing:
            sys.exit(f"render.py: no {rest[0]} results: {missing} missing")
        return
    try:
        with open(readme) as f:
            text = f.read()
    except OSError as error:
        sys.exit(f"render.py: reading {readme}: {error}")
    if not MARKER.search(text):
        sys.exit(f"render.py: {readme} has no <!-- table: NAME --> ... <!-- /table --> markers")
    new = rewrite(text, results)
    if check:
        if new != text:
            sys.stdout.writelines(difflib.unified_diff(
                text.splitlines(keepends=True), new.splitlines(keepends=True),
                fromfile=f"{readme} (committed)", tofile=f"{readme} (rendered from {results})"))
            print(f"render.py: the tables in {readme} do not match {results}; run bench/scenarios/render.py",
                  file=sys.stderr)
            sys.exit(1)
        print(f"render.py: the tables in {readme} match {results}")
        return
    if new != text:
        with open(readme, "w") as f:
            f.write(new)
        print(f"render.py: rewrote the tables in {readme}")
    else:
        print(f"render.py: the tables in {readme} were up to date")


if __name__ == "__main__":
    main()
