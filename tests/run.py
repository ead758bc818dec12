#!/usr/bin/env python3
"""Run every sipcluster test and end with one line: 'N passed, N failed'.

  unit:        tests/unit (Check), built with the module's own flags
  layers:      tests/check-layers.py: the module's files call only
               downwards, no cycle (from the objects' symbols), and its
               self-test (it fails on a cycle or an upward call)
  fuzz corpus: tests/fuzz (libFuzzer targets), every seed input once
  integration: tests/integration/test_*.py (unittest) against real
               Kamailio processes and SIPp on loopback addresses

  integration, lua: the hostile-traffic suites (LUA_SUITES) again, every
               proxy on the KEMI Lua example (examples/kemi-lua)

Options: --unit-only, --integration-only, -k PATTERN (integration tests
whose id contains PATTERN), --routing native|lua (only that pass; SC_ROUTING
in the environment does the same for a single test module).
"""

import os
import re
import subprocess
import sys
import time
import unittest

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def run_unit():
    print("== unit tests (Check)", flush=True)
    p = subprocess.run(["make", "-s", "-C", os.path.join(TOP, "tests", "unit")],
                       capture_output=True, text=True)
    if p.returncode != 0:
        print(p.stdout + p.stderr)
        print("unit tests did not build")
        return 0, 1
    env = dict(os.environ, CK_VERBOSITY="normal")
    p = subprocess.run([os.path.join(TOP, "tests", "unit", "test_sipcluster")],
                       capture_output=True, text=True, env=env, timeout=600)
    out = p.stdout + p.stderr
    print(out.rstrip())
    m = re.search(r"Checks: (\d+), Failures: (\d+), Errors: (\d+)", out)
    if not m:
        print("unit tests: no Check summary (exit %d)" % p.returncode)
        return 0, 1
    total, fails, errs = map(int, m.groups())
    return total - fails - errs, fails + errs


def run_layers():
    print("== layers (tests/check-layers.py)", flush=True)
    passed = failed = 0
    for args in (["--self-test"], []):
        p = subprocess.run([sys.executable, os.path.join(TOP, "tests", "check-layers.py")] + args,
                           capture_output=True, text=True)
        print((p.stdout + p.stderr).rstrip())
        if p.returncode == 0:
            passed += 1
        else:
            failed += 1
    return passed, failed


def run_fuzz_corpus():
    """every fuzz target over its seed corpus once (ASan + UBSan)"""
    print("== fuzz corpus (libFuzzer, ASan + UBSan): every seed once", flush=True)
    p = subprocess.run(["make", "-s", "-C", os.path.join(TOP, "tests", "fuzz"), "corpus"],
                       capture_output=True, text=True, timeout=600)
    out = p.stdout + p.stderr
    runs = re.findall(r"Done (\d+) runs", out)
    print(out.strip()[-3000:])
    if p.returncode != 0 or not runs:
        print("fuzz corpus: FAILED (exit %d)" % p.returncode)
        return len(runs), 1
    return len(runs), 0


# the hostile-traffic suites run a second time with every proxy on the KEMI
# Lua example (examples/kemi-lua): its stated contract
LUA_SUITES = ("test_security", "test_authenticity", "test_hostile")


def run_integration(pattern=None, routing="native"):
    idir = os.path.join(TOP, "tests", "integration")
    if idir not in sys.path:
        sys.path.insert(0, idir)
    import harness
    harness.ROUTING = routing
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    if routing == "native":
        print("== integration tests (real Kamailio + SIPp on 127.0.0.0/8)", flush=True)
        suite = loader.discover(idir, pattern="test_*.py", top_level_dir=idir)
    else:
        print("== integration tests again with the routing of examples/kemi-lua "
              "(SC_ROUTING=lua): %s" % ", ".join(LUA_SUITES), flush=True)
        suite = unittest.TestSuite(
            loader.loadTestsFromName(m) for m in LUA_SUITES)
    runner = unittest.TextTestRunner(verbosity=2, stream=sys.stdout)
    t0 = time.monotonic()
    res = runner.run(suite)
    print("integration: %d run in %.0f s" % (res.testsRun, time.monotonic() - t0))
    failed = len(res.failures) + len(res.errors) + len(res.unexpectedSuccesses)
    skipped = len(res.skipped)
    return res.testsRun - failed - skipped, failed, skipped


def main():
    args = sys.argv[1:]
    pattern = None
    if "-k" in args:
        pattern = args[args.index("-k") + 1]
    passed = failed = skipped = 0
    if "--integration-only" not in args:
        p, f = run_unit()
        passed += p
        failed += f
        p, f = run_layers()
        passed += p
        failed += f
        p, f = run_fuzz_corpus()
        passed += p
        failed += f
    if "--unit-only" not in args:
        routings = ["native", "lua"]
        if "--routing" in args:
            routings = [args[args.index("--routing") + 1]]
        for routing in routings:
            p, f, s = run_integration(pattern, routing)
            passed += p
            failed += f
            skipped += s
    line = "%d passed, %d failed" % (passed, failed)
    if skipped:
        line += ", %d skipped" % skipped
    print(line)
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
