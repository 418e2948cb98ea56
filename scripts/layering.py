#!/usr/bin/env python3
"""Module layering of Vigil's crates: fails when modules depend on each other in a cycle.

Reads the `crate::`, `super::` and `self::` paths of every .rs file under agent/src,
watchdog/src and common/src (modules as laid out in files: `a/mod.rs` or `a.rs` is `a`,
`a/b.rs` is `a::b`) and builds, for every module, the graph of its direct children: child A
depends on sibling B when code anywhere under A names something under B. A cycle in any of
these graphs is printed and the script exits 1. A child naming its parent (a component using
the enum of its parent module) is the normal shape of a module tree and is not an edge.

Test code is left out: files named tests.rs or under a tests/ folder, and everything after a
top-level `#[cfg(test)]` (our test modules sit at the end of a file). A test may well parse a
whole config to check one component; that is not a dependency of the component.

    python3 scripts/layering.py                  # check; exit 1 on a cycle
    python3 scripts/layering.py --graph          # also print every edge with its first use
    python3 scripts/layering.py --long-functions # report functions over 100 lines (no failure)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

CRATES = ["agent/src", "watchdog/src", "common/src"]
ROOT = Path(__file__).resolve().parent.parent
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# `crate::`, `super::` (repeated) or `self::` where a path starts (not inside a longer name).
PATH_START = re.compile(r"(?<![A-Za-z0-9_:])(crate|super|self)::")


def module_of(src: Path, file: Path) -> tuple[str, ...]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def is_test_file(src: Path, file: Path) -> bool:
    rel = file.relative_to(src).parts
    return file.name == "tests.rs" or "tests" in rel[:-1]


def test_code_starts(lines: list[str], i: int) -> bool:
    """Whether line `i` opens an inline test module (`#[cfg(test)]` then `mod x {` or an item),
    rather than declaring one kept in its own file (`mod tests;`)."""
    if not lines[i].startswith("#[cfg(test)]"):
        return False
    rest = [line for line in lines[i + 1:i + 4] if not line.startswith("#[")]
    return not (rest and rest[0].startswith("mod ") and rest[0].rstrip().endswith(";"))


def production_text(text: str) -> list[tuple[int, str]]:
    """Numbered lines of non-test code with line comments removed."""
    out = []
    all_lines = text.split("\n")
    for number, line in enumerate(all_lines, 1):
        if test_code_starts(all_lines, number - 1):
            break
        stripped = line.lstrip()
        if stripped.startswith("//"):
            continue
        out.append((number, line))
    return out


def parse_tree(text: str, i: int, prefix: list[str]) -> tuple[list[list[str]], int]:
    """Parses a path or `{...}` group starting at `text[i]`; returns the full paths it names."""
    path = list(prefix)
    while True:
        while i < len(text) and text[i] in " \n\t":
            i += 1
        if i < len(text) and text[i] == "{":
            i += 1
            found = []
            while True:
                while i < len(text) and text[i] in " \n\t,":
                    i += 1
                if i >= len(text) or text[i] == "}":
                    return found, i + 1
                sub, i = parse_tree(text, i, path)
                found.extend(sub)
                # skip an `as name`
                m = re.compile(r"\s*as\s+[A-Za-z_][A-Za-z0-9_]*").match(text, i)
                if m:
                    i = m.end()
        m = IDENT.match(text, i)
        if not m:
            return [path], i
        name = m.group(0)
        i = m.end()
        if name != "self":
            path.append(name)
        if text.startswith("::", i):
            i += 2
            continue
        return [path], i


def resolve(module: tuple[str, ...], kind: str, rest: list[str]) -> list[str] | None:
    if kind == "crate":
        return rest
    base = list(module)
    if kind == "super":
        if not base:
            return None
        base.pop()
        while rest and rest[0] == "super":
            if not base:
                return None
            base.pop()
            rest = rest[1:]
    return base + rest


def longest_module(path: list[str], modules: set[tuple[str, ...]]) -> tuple[str, ...]:
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in modules:
            return tuple(path[:n])
    return ()


def dependencies(src: Path):
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f) for f in files}
    uses = []  # (from module, to module, file, line)
    for file in files:
        if is_test_file(src, file):
            continue
        module = module_of(src, file)
        lines = production_text(file.read_text())
        text = "\n".join(line for _, line in lines)
        starts = [0]
        for _, line in lines:
            starts.append(starts[-1] + len(line) + 1)
        for m in PATH_START.finditer(text):
            paths, _ = parse_tree(text, m.end(), [])
            line_index = next(k for k in range(len(starts)) if starts[k + 1] > m.start())
            line_number = lines[line_index][0]
            for rest in paths:
                full = resolve(module, m.group(1), rest)
                if full is None:
                    continue
                target = longest_module(full, modules)
                uses.append((module, target, file, line_number))
    return modules, uses


def sibling_edges(uses):
    """Edges between the two children of the lowest common ancestor of each use."""
    edges = {}  # (parent, a, b) -> (file, line) of the first use
    for source, target, file, line in uses:
        n = 0
        while n < min(len(source), len(target)) and source[n] == target[n]:
            n += 1
        if n == len(source) or n == len(target):
            continue  # same module, or a module and its ancestor/descendant
        key = (source[:n], source[n], target[n])
        edges.setdefault(key, (file, line))
    return edges


def find_cycles(edges):
    by_parent: dict[tuple[str, ...], dict[str, set[str]]] = {}
    for parent, a, b in edges:
        by_parent.setdefault(parent, {}).setdefault(a, set()).add(b)
    cycles = []
    for parent, graph in sorted(by_parent.items()):
        # Strongly connected components (Tarjan); each with more than one member is a cycle.
        index, low, stack, on, counter = {}, {}, [], set(), [0]

        def connect(v):
            index[v] = low[v] = counter[0]
            counter[0] += 1
            stack.append(v)
            on.add(v)
            for w in sorted(graph.get(v, ())):
                if w not in index:
                    connect(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    cycles.append((parent, sorted(component)))

        for v in sorted(graph):
            if v not in index:
                connect(v)
    return cycles


def cycle_path(parent, members, edges):
    """One concrete loop through the component, with where each step is used."""
    member_set = set(members)
    start = members[0]
    # Breadth-first search from start back to start inside the component.
    previous = {start: None}
    queue = [start]
    found = None
    while queue and found is None:
        v = queue.pop(0)
        for (p, a, b) in sorted(edges):
            if p != parent or a != v or b not in member_set:
                continue
            if b == start:
                found = v
                break
            if b not in previous:
                previous[b] = v
                queue.append(b)
    steps = [found]
    while previous[steps[-1]] is not None:
        steps.append(previous[steps[-1]])
    steps.reverse()
    steps.append(start)
    return steps


def check(show_graph: bool) -> int:
    failed = 0
    for crate in CRATES:
        src = ROOT / crate
        _, uses = dependencies(src)
        edges = sibling_edges(uses)
        if show_graph:
            for (parent, a, b), (file, line) in sorted(edges.items()):
                prefix = "::".join(parent + ("",))
                print(f"{crate}: {prefix}{a} -> {prefix}{b}  ({file.relative_to(ROOT)}:{line})")
        for parent, members in find_cycles(edges):
            failed += 1
            prefix = "::".join(parent + ("",))
            steps = cycle_path(parent, members, edges)
            print(f"{crate}: module cycle: " + " -> ".join(prefix + s for s in steps))
            if len(members) > 2:
                print("    (modules tied in this cycle: "
                      + ", ".join(prefix + m for m in members) + ")")
            for a, b in zip(steps, steps[1:]):
                file, line = edges[(parent, a, b)]
                print(f"    {prefix}{a} uses {prefix}{b} at {file.relative_to(ROOT)}:{line}")
    if failed:
        print(f"{failed} module cycle(s); make the dependency one-way "
              "(move the shared piece into a module both can use)", file=sys.stderr)
        return 1
    print("no module cycles in " + ", ".join(CRATES))
    return 0


FN_START = re.compile(r"^(\s*)(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+([A-Za-z0-9_]+)")


def long_functions(limit: int) -> int:
    """Functions longer than `limit` lines (rustfmt layout: the closing brace at the indent of
    the `fn`). Report only."""
    found = []
    for crate in CRATES:
        src = ROOT / crate
        for file in sorted(src.rglob("*.rs")):
            lines = file.read_text().split("\n")
            in_tests = is_test_file(src, file)
            for i, line in enumerate(lines):
                if test_code_starts(lines, i):
                    in_tests = True
                m = FN_START.match(line)
                if not m:
                    continue
                indent = m.group(1)
                end = None
                for j in range(i, len(lines)):
                    if lines[j] == indent + "}" or (j == i and line.rstrip().endswith(";")):
                        end = j
                        break
                    if j > i and lines[j].startswith(indent) is False and lines[j].strip():
                        break
                if end is None:
                    continue
                length = end - i + 1
                if length > limit:
                    tag = " [test]" if in_tests else ""
                    found.append((length, f"{file.relative_to(ROOT)}:{i + 1}", m.group(7), tag))
    for length, where, name, tag in sorted(found, reverse=True):
        print(f"{length:5} {where} {name}{tag}")
    print(f"{len(found)} function(s) over {limit} lines "
          f"({sum(1 for f in found if not f[3])} outside tests)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--graph", action="store_true", help="print every module edge")
    parser.add_argument("--long-functions", nargs="?", const=100, type=int, metavar="LINES",
                        help="report functions longer than LINES (default 100); never fails")
    args = parser.parse_args()
    if args.long_functions is not None:
        return long_functions(args.long_functions)
    return check(args.graph)


if __name__ == "__main__":
    sys.exit(main())
