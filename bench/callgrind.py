#!/usr/bin/env python3
"""Instructions per request (or per stream) from a callgrind dump, by crate and by function.

Usage: bench/callgrind.py DUMP REQUESTS [--per UNIT] [--top N] [--inclusive PATTERN ...]

DUMP is one dump of `valgrind --tool=callgrind --compress-strings=no` (bench/run.sh --callgrind
writes it) covering exactly REQUESTS of what UNIT names (`request` by default; `--per stream`
for the streams' dump). Prints the total instructions (Ir) per unit, the self cost grouped by
crate, the N costliest functions (self cost), and for each PATTERN the inclusive cost of the
functions whose name contains it.

The file format: `fn=` starts a function's block; a cost line is `<position> <Ir>`; the cost
line right after `calls=` is the inclusive cost of that call, charged to the caller's inclusive
cost but not to its self cost.
"""

import collections
import sys

# Self cost is grouped by the first of these that the function's name contains.
GROUPS = [
    "aihub_gateway", "aihub_server", "aihub_store", "aihub_service", "aihub_core",
    "serde_json", "hyper_util", "hyper", "httparse", "http", "axum", "tower", "tokio",
    "sqlite3", "sqlx", "moka", "uuid", "chrono", "sha2", "jemalloc", "rjem", "memcpy",
    "memmove", "memset", "memcmp", "tracing", "bytes", "futures", "hashbrown", "hash",
    "alloc::", "core::",
]


def is_cost(line):
    return line[:1].isdigit() or line[:1] in "+-*"


def read(path):
    """Self and inclusive cost per function name."""
    self_cost = collections.Counter()
    inclusive = collections.Counter()
    fn = callee = None
    call_cost_next = False
    with open(path, errors="replace") as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls="):
                call_cost_next = True
            elif is_cost(line):
                parts = line.split()
                if len(parts) < 2:
                    continue
                cost = int(parts[1])
                if call_cost_next:
                    call_cost_next = False
                    if callee != fn:  # a recursive call is already in the caller's own cost
                        inclusive[fn] += cost
                else:
                    self_cost[fn] += cost
                    inclusive[fn] += cost
    return self_cost, inclusive


def group(name):
    return next((g for g in GROUPS if g in name), "other")


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    path, requests = argv[1], int(argv[2])
    top, unit, patterns, rest = 40, "request", [], argv[3:]
    while rest:
        opt = rest.pop(0)
        if opt == "--per" and rest:
            unit = rest.pop(0)
        elif opt == "--top" and rest:
            top = int(rest.pop(0))
        elif opt == "--inclusive" and rest:
            patterns.append(rest.pop(0))
        else:
            sys.exit(f"callgrind.py: unknown argument {opt}")
    self_cost, inclusive = read(path)
    per = lambda ir: ir / requests  # noqa: E731
    print(f"{per(sum(self_cost.values())):,.0f} instructions per {unit} ({path})")
    groups = collections.Counter()
    for name, ir in self_cost.items():
        groups[group(name)] += ir
    print(f"\nSelf cost by crate (per {unit}):")
    for name, ir in groups.most_common():
        print(f"  {per(ir):10,.0f}  {name}")
    print(f"\nTop {top} functions by self cost (per {unit}):")
    for name, ir in self_cost.most_common(top):
        print(f"  {per(ir):10,.0f}  {name[:150]}")
    for pattern in patterns:
        print(f"\nInclusive cost of functions matching {pattern!r} (per {unit}):")
        found = sorted(((ir, n) for n, ir in inclusive.items() if pattern in n), reverse=True)
        for ir, name in found[:5]:
            print(f"  {per(ir):10,.0f}  {name[:150]}")


if __name__ == "__main__":
    main(sys.argv)
