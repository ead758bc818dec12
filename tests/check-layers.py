#!/usr/bin/env python3
"""The module's layers, checked on its object files (part of `make test`).

Every module file has a rank; a file may use (call, or read a variable of)
only files of a LOWER rank. The edges come from the objects themselves: a
symbol one .o leaves undefined (nm: U) and another .o of the module defines
is an edge from the first to the second. The check fails on
  - an edge to a file of the same or a higher rank (sideways or upwards),
    with the symbols that make it, and on every cycle (strongly connected
    files), which such edges would form;
  - an object file that has no rank here (a new file must be placed).
The order, from the top (README.md, "Architecture"):

  7  sipcluster_mod        exports, modparams, init, w_ wrappers
  6  sc_rpc, sc_prom       operator interfaces (kamcmd, Prometheus)
  5  sc_route, sc_reg      routing, registrar
  4  sc_syncd, sc_ping     registration sync, OPTIONS probing
  3  sc_msg                per-message helpers: source, refusals, flows
  2  sc_state              the shared state: views, lock, reload,
                           transitions (the only owner of sc_shared)
  1  sc_topo, sc_sync, sc_select      the pure floor (no Kamailio message
  0  sc_codec, sc_rcu, sc_health      path; unit-tested and fuzzed)

Usage: check-layers.py [DIR]   (DIR holds the .o files; default the module)
       check-layers.py --self-test   (the check fails where it must)
"""

import os
import subprocess
import sys

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))

RANK = {
    "sipcluster_mod": 7,
    "sc_rpc": 6, "sc_prom": 6,
    "sc_route": 5, "sc_reg": 5,
    "sc_syncd": 4, "sc_ping": 4,
    "sc_msg": 3,
    "sc_state": 2,
    "sc_topo": 1, "sc_sync": 1, "sc_select": 1,
    "sc_codec": 0, "sc_rcu": 0, "sc_health": 0,
}


def symbols(obj):
    """(defined global symbols, undefined symbols) of one object file"""
    out = subprocess.run(["nm", obj], capture_output=True, text=True,
                         check=True).stdout
    defined, undefined = set(), set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "U":
            undefined.add(f[1])
        elif len(f) == 3 and f[1] in "TDBRCVWG":
            defined.add(f[2])
    return defined, undefined


def graph(objs):
    """{file: {file it uses: [symbols]}} from {file: (defined, undefined)}"""
    owner = {}
    for name, (d, _) in objs.items():
        for s in d:
            owner[s] = name
    g = {name: {} for name in objs}
    for name, (_, u) in objs.items():
        for s in sorted(u):
            o = owner.get(s)
            if o is not None and o != name:
                g[name].setdefault(o, []).append(s)
    return g


def cycles(g):
    """strongly connected sets of more than one file (Tarjan)"""
    index, low, stack, on, out = {}, {}, [], set(), []
    n = [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def check(g, rank=RANK):
    """the list of problems (empty: the shape holds)"""
    bad = []
    for name in sorted(g):
        if name not in rank:
            bad.append("%s.o has no layer: place it in RANK (tests/check-layers.py) "
                       "and in README.md's picture" % name)
    for c in cycles(g):
        bad.append("cycle between %s" % ", ".join(c))
    for a in sorted(g):
        for b, syms in sorted(g[a].items()):
            if a in rank and b in rank and rank[b] >= rank[a]:
                bad.append("%s (layer %d) uses %s (layer %d): %s"
                           % (a, rank[a], b, rank[b], ", ".join(syms[:8])
                              + (" ..." if len(syms) > 8 else "")))
    return bad


def self_test():
    """the check must fail on a cycle, a sideways and an upward edge, and
    on an unplaced file, and pass the module's own shape"""
    ok = True
    cases = [
        # (graph, expected to fail)
        ({"sc_route": {"sc_msg": ["sc_refuse"]}, "sc_msg": {"sc_state": ["sc_view_get"]},
          "sc_state": {}}, False),
        ({"sc_route": {"sc_reg": ["sc_x"]}, "sc_reg": {"sc_route": ["sc_y"]}}, True),
        ({"sc_reg": {"sc_syncd": ["sc_a"]}, "sc_syncd": {"sc_reg": ["sc_max_expires"]}}, True),
        ({"sc_msg": {"sc_route": ["sc_tried_get"]}, "sc_route": {}}, True),
        ({"sc_route": {"sc_reg": ["sc_which_aor"]}, "sc_reg": {}}, True),
        ({"sc_new": {"sc_state": ["sc_view_get"]}, "sc_state": {}}, True),
        ({"sc_state": {"sipcluster_mod": ["sc_shared"]}, "sipcluster_mod": {}}, True),
    ]
    for g, must_fail in cases:
        got = check(g)
        if bool(got) != must_fail:
            ok = False
            print("self-test: %s: expected %s, got %s"
                  % (g, "a failure" if must_fail else "no failure", got or "none"))
    c = cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}})
    if c != [["a", "b", "c"]]:
        ok = False
        print("self-test: cycle a-b-c not found: %s" % c)
    print("check-layers self-test: %s" % ("ok" if ok else "FAILED"))
    return ok


def main():
    if "--self-test" in sys.argv[1:]:
        return 0 if self_test() else 1
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(TOP, "modules", "sipcluster")
    objs = {}
    for f in sorted(os.listdir(d)):
        if f.endswith(".o"):
            objs[f[:-2]] = symbols(os.path.join(d, f))
    if not objs:
        print("check-layers: no object files in %s (build the module first)" % d)
        return 1
    missing = sorted(set(RANK) - set(objs))
    g = graph(objs)
    for a in sorted(g, key=lambda x: (-RANK.get(x, 99), x)):
        if g[a]:
            print("  %-15s -> %s" % (a, ", ".join(
                sorted(g[a], key=lambda x: (-RANK.get(x, 99), x)))))
    bad = check(g)
    if missing:
        bad.append("no object file for %s (stale RANK?)" % ", ".join(missing))
    for b in bad:
        print("check-layers: " + b)
    print("check-layers: %d files, %d edges, %s" % (
        len(g), sum(len(v) for v in g.values()), "FAILED" if bad else "layered, no cycle"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
