#!/usr/bin/env python3
"""Where a no-op call's CPU goes, ferry against its floor.

    profile.py OUT

Reads what `bench/scenarios/invoke.sh --perf` left in OUT/runs:
SERVER-perf-rN.report.txt (`perf report --no-children --sort dso,sym
-g none` of a closed-loop run under `perf record`) and SERVER-max-rN.json
with its .cpu.json (the same round's closed-loop run without perf). Each
sample's symbol is put in one part of the work (HTTP, wasm, the kernel's
network stack, ...); a part's share of the samples times the CPU per call
of the run without perf is what that part costs per call. Writes
OUT/profile.md (one table: microseconds per call by part, each server's
median over the rounds, and ferry minus the floor) and prints it.
"""

import json
import os
import re
import statistics
import sys

# (part, test on (dso, symbol)), first match wins. Kernel symbols first by
# what the kernel was doing, then user space by crate.
KERNEL = "[kernel.kallsyms]"
PARTS = [
    ("kernel: memory (faults, madvise, mapping)",
     lambda dso, sym: dso == KERNEL and re.search(
         r"fault|madvise|zap_|_pte|pmd|mmap|munmap|mprotect|clear_page|folio|lru|tlb|"
         r"page_|pages|vma|mm_|memcg|anon|rmap|unmap", sym)),
    ("kernel: TCP/IP and sockets",
     lambda dso, sym: dso == KERNEL and re.search(
         r"tcp|ip_|ipv4|ipv6|sock|skb|net_|netif|napi|loopback|dev_|__dev|inet|sk_|"
         r"dst_|nf_|raw_|udp|recv|send|copy_to_iter|copy_from_iter|copyout|copyin", sym)),
    ("kernel: waiting, waking, scheduling",
     lambda dso, sym: dso == KERNEL and re.search(
         r"sched|schedule|switch|wake|futex|io_uring|io_|epoll|poll|enqueue|dequeue|"
         r"membarrier|hrtimer|timer|idle|irq|ipi|smp_|update_|pick_|select_task|rcu|"
         r"tick|clock|ktime|psi_|cpuacct|account", sym)),
    ("kernel: system call entry and other",
     lambda dso, sym: dso == KERNEL),
    ("guest code (compiled wasm)",
     lambda dso, sym: dso in ("[unknown]", "[JIT] tid") or dso.startswith("memfd:") or
     dso.startswith("//anon") or dso.startswith("[anon")),
    ("WASI context (wasmtime-wasi, cap-std)",
     lambda dso, sym: re.search(r"wasmtime_wasi|cap_std|cap_primitives|cap_fs|wasi_common|WasiCtx", sym)),
    ("wasmtime: instantiate, call, reset",
     lambda dso, sym: re.search(r"wasmtime|cranelift|wasmparser", sym)),
    ("HTTP (hyper, http, httparse)",
     lambda dso, sym: re.search(r"hyper|httparse|\bhttp::|http_body", sym)),
    ("JSON (serde)",
     lambda dso, sym: re.search(r"serde", sym)),
    ("event loop (glommio, tokio, futures)",
     lambda dso, sym: re.search(r"glommio|tokio|futures|async_task|io_uring|mio::", sym)),
    ("allocator (malloc, free)",
     lambda dso, sym: re.search(r"malloc|free|realloc|calloc|_int_|tcache|arena|sysmalloc|"
                                r"alloc::alloc|__rust_alloc|__rust_dealloc|mi_|je_", sym)),
    ("memcpy, memset, memmove",
     lambda dso, sym: re.search(r"memcpy|memset|memmove|memcmp|bcmp|strlen", sym)),
    ("clock reads (clock_gettime)",
     lambda dso, sym: re.search(r"clock_gettime|Timespec>::now|Instant::now", sym)),
    ("ferry's own code (and what the compiler inlined into it)",
     lambda dso, sym: re.search(r"ferry", sym) or dso.startswith("ferry")),
    ("other user space",
     lambda dso, sym: True),
]

LINE = re.compile(r"^\s*([0-9.]+)%\s+(\S+(?: \S+)?)\s+\[[.kgu]\]\s+(.*)$")


def part_of(dso, sym):
    for name, test in PARTS:
        if test(dso, sym):
            return name
    return PARTS[-1][0]


def shares(report_path):
    """Percent of samples per part, from a perf report of dso,sym."""
    out = {name: 0.0 for name, _ in PARTS}
    with open(report_path) as f:
        for line in f:
            if line.startswith("#") or not line.strip():
                continue
            match = LINE.match(line)
            if not match:
                continue
            percent, dso, sym = float(match.group(1)), match.group(2).strip(), match.group(3).strip()
            out[part_of(dso, sym)] += percent
    return out


def per_call_us(runs_dir, server, round_):
    stem = os.path.join(runs_dir, f"{server}-max-r{round_}")
    with open(stem + ".json") as f:
        summary = json.load(f)
    with open(stem + ".cpu.json") as f:
        cpu = json.load(f)
    calls = summary["count"] + summary["errors"]
    return cpu["cpu_s"] / calls * 1e6 if calls else float("nan")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    runs_dir = os.path.join(out, "runs")
    found = {}
    for name in sorted(os.listdir(runs_dir)):
        match = re.match(r"^(ferry|floor)-perf-r(\d+)\.report\.txt$", name)
        if match:
            found.setdefault(match.group(1), []).append(int(match.group(2)))
    if "ferry" not in found or "floor" not in found:
        sys.exit(f"profile.py: {runs_dir} needs ferry-perf-rN.report.txt and floor-perf-rN.report.txt "
                 "(bench/scenarios/invoke.sh --perf --servers ferry,floor)")
    table = {}
    totals = {}
    for server, rounds in found.items():
        per_part = {name: [] for name, _ in PARTS}
        total = []
        for round_ in rounds:
            share = shares(os.path.join(runs_dir, f"{server}-perf-r{round_}.report.txt"))
            us = per_call_us(runs_dir, server, round_)
            seen = sum(share.values()) or 100.0
            total.append(us)
            for name in per_part:
                per_part[name].append(us * share[name] / seen)
        table[server] = {name: statistics.median(values) for name, values in per_part.items()}
        totals[server] = statistics.median(total)
    with open(os.path.join(out, "context.json")) as f:
        context = json.load(f)
    lines = [
        f"Where a no-op call's CPU goes, {context.get('date', '?')}: each server alone on CPU "
        f"{context.get('server_cpu', '?')}, closed loop with {context.get('concurrency', '?')} connections, "
        f"`perf record -g` of a run after the measured ones; each part's share of the samples times the CPU per "
        f"call of the same round's run without perf. Medians of {len(found['ferry'])} round(s). "
        f"`{context.get('command', 'bench/scenarios/invoke.sh --perf')}`",
        "",
        "| part | ferry us/call | floor us/call | ferry - floor |",
        "| --- | ---: | ---: | ---: |",
    ]
    names = sorted(table["ferry"], key=lambda name: -(table["ferry"][name] - table["floor"][name]))
    for name in names:
        ferry, floor = table["ferry"][name], table["floor"][name]
        if ferry < 0.05 and floor < 0.05:
            continue
        lines.append(f"| {name} | {ferry:.1f} | {floor:.1f} | {ferry - floor:+.1f} |")
    lines.append(f"| **all** | **{totals['ferry']:.1f}** | **{totals['floor']:.1f}** | "
                 f"**{totals['ferry'] - totals['floor']:+.1f}** |")
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out, "profile.md"), "w") as f:
        f.write(text)
    print(text, end="")


if __name__ == "__main__":
    main()
