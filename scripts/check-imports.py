#!/usr/bin/env python3
"""Fails when the runtime's files import each other in a circle.

An edge A -> B is A naming an item of B: a `crate::...` or `super::...`
path (resolved to the file that defines that module), or a `mod.rs`
naming one of its child modules (`ndp::add`). Test modules and comments
are left out. Prints each circle with its edges and exits 1, or says
how many files it checked.

usage: scripts/check-imports.py [SRC_DIR]   (default runtime/src)
"""

import os
import re
import sys


def module_path(rel):
    parts = rel[:-3].split("/")
    return parts[:-1] if parts[-1] == "mod" else parts


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "runtime/src"
    files = {}
    for directory, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                rel = os.path.relpath(os.path.join(directory, name), root)
                if rel not in ("lib.rs", "main.rs"):
                    files[rel] = os.path.join(directory, name)
    by_path = {tuple(module_path(rel)): rel for rel in files}

    def resolve(parts):
        for n in range(len(parts), 0, -1):
            if tuple(parts[:n]) in by_path:
                return by_path[tuple(parts[:n])]
        return None

    graph = {}
    for rel, path in files.items():
        with open(path) as f:
            source = f.read()
        tests = source.find("#[cfg(test)]")
        if tests >= 0:
            source = source[:tests]
        source = re.sub(r"//[^\n]*", "", source)
        me = module_path(rel)
        parent = me[:-1]
        deps = set()
        for m in re.finditer(r"crate::((?:[a-z_]+::)*[A-Za-z_]+)", source):
            deps.add(resolve(m.group(1).split("::")))
        for m in re.finditer(r"\bsuper::((?:[a-z_]+::)*[A-Za-z_]+)", source):
            deps.add(resolve(parent + m.group(1).split("::")))
        for m in re.finditer(r"use super::\{([^}]*)\}", source):
            for name in re.findall(r"[a-z_]+", m.group(1)):
                deps.add(resolve(parent + [name]))
        if rel.endswith("mod.rs"):
            for m in re.finditer(r"(?<![:\w])([a-z_]+)::", source):
                deps.add(by_path.get(tuple(me + [m.group(1)])))
        graph[rel] = {d for d in deps if d and d != rel}

    # Tarjan's strongly connected components.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    if circles:
        for circle in circles:
            print(f"{root}: {len(circle)} files import each other in a circle:")
            for v in circle:
                print(f"  {v} -> {', '.join(sorted(d for d in graph[v] if d in circle))}")
        sys.exit(1)
    print(f"check-imports: {len(graph)} files of {root}, no circle")


if __name__ == "__main__":
    main()
