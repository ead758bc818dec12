#!/usr/bin/env python3
"""make chaos: fault injection against a 4-proxy, 2-data-center cluster on
loopback (127.33.x.y), real Kamailio proxies and stand-in SIP Servers, SIPp
load. Each scenario is bounded in count and time, stops by itself and
prints its figures; the run ends with one summary table (also written to
build/chaos/summary.txt). The short versions of these faults run in
make test (tests/integration/test_faults.py).

  python3 tests/chaos/chaos.py [SCENARIO ...] [--quick]

Scenarios: partition, kill, restart, flap, reloads, soak (default: all).
--quick shortens every one (CI-sized). Knobs (environment):
CHAOS_PARTITION_S (30), CHAOS_FLAP_S (60), CHAOS_SOAK_CALLS (200000),
CHAOS_SOAK_REFRESH (20000), CHAOS_SOAK_RATE (calls/s, 300),
CHAOS_BINDINGS (3000).

Needs root for the partition (an nftables table of its own, loopback
addresses only, removed at exit).
"""

import os
import re
import signal
import subprocess
import sys
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402
from harness import (Cluster, jsonrpc, kamcmd, wait_until,  # noqa: E402
                     cluster_xml, pair_xml, proxy_xml)

B = "127.33"
PROXIES = {"dc1-a": B + ".1.1", "dc1-b": B + ".1.2", "dc2-a": B + ".2.1", "dc2-b": B + ".2.2"}
# pair n1: s11 primary, s12 backup (dc1); n2: s21 (dc1); n3: s31 (dc2)
SERVERS = {"s11": (B + ".1.11", "n1", "dc1", "primary"), "s12": (B + ".1.12", "n1", "dc1", "backup"),
           "s21": (B + ".1.21", "n2", "dc1", "primary"), "s31": (B + ".2.31", "n3", "dc2", "primary")}
ARGS = ["-A", "NO_PIKE", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "UL_TIMER=1",
        "-A", "SERVER_TIMEOUT=1000"]
REG_XML = os.path.join(TOP, "tests", "sipp", "reg_auth.xml")
UAC_XML = os.path.join(TOP, "tests", "sipp", "uac_rr.xml")
OUT = os.path.join(TOP, "build", "chaos")
NFT_TABLE = "sipcluster_chaos"
QUICK = "--quick" in sys.argv


def env(name, full, quick):
    return int(os.environ.get(name, quick if QUICK else full))


N_BIND = env("CHAOS_BINDINGS", 3000, 600)
PART_S = env("CHAOS_PARTITION_S", 30, 8)
FLAP_S = env("CHAOS_FLAP_S", 60, 15)
SOAK_CALLS = env("CHAOS_SOAK_CALLS", 200000, 6000)
SOAK_REFRESH = env("CHAOS_SOAK_REFRESH", 20000, 1000)
SOAK_RATE = env("CHAOS_SOAK_RATE", 300, 200)

results = []


def log(msg):
    print("chaos: " + msg, flush=True)


def figure(scenario, what, value, ok=True):
    results.append((scenario, what, value, ok))
    log("  %-10s %-48s %s%s" % (scenario, what, value, "" if ok else "   <-- FAILED"))


# ------------------------------------------------------------ cluster

def doc():
    body = "".join(proxy_xml(n, a, n[:3]) for n, a in PROXIES.items())
    pairs = {}
    for s, (addr, pair, geo, role) in SERVERS.items():
        pairs.setdefault((pair, geo), []).append((s, addr, role))
    for (pair, geo), members in pairs.items():
        body += pair_xml(pair, geo, members)
    return cluster_xml("chaos", body)


def nft(script):
    return subprocess.run(["nft", "-f", "-"], input=script, capture_output=True,
                          text=True, timeout=10)


def heal():
    subprocess.run(["nft", "delete", "table", "inet", NFT_TABLE], capture_output=True,
                   timeout=10)


def drop(pairs):
    """drop packets between each (addresses, addresses) pair, both ways"""
    rules = ""
    for a, b in pairs:
        a, b = ", ".join(a), ", ".join(b)
        rules += "  ip saddr { %s } ip daddr { %s } drop\n" % (a, b)
        rules += "  ip saddr { %s } ip daddr { %s } drop\n" % (b, a)
    heal()
    p = nft("table inet %s {\n chain input {\n  type filter hook input priority 0;\n%s }\n}\n"
            % (NFT_TABLE, rules))
    if p.returncode != 0:
        raise RuntimeError("nft: " + p.stderr)


class Lab:
    def __init__(self):
        heal()
        self.c = Cluster("chaos", doc())
        for name, (addr, _, _, role) in SERVERS.items():
            self.c.start_standin(name, addr, backup=(role == "backup"))
        for n in PROXIES:
            self.c.start_proxy(n, ARGS)
        ok = wait_until(lambda: all(
            len(re.findall(r"status: active", kamcmd(self.c.rundir(n), "dmq.list_nodes").stdout)) >= 4
            for n in PROXIES), 20, 0.2)
        if not ok:
            raise RuntimeError("DMQ did not come up")
        wait_until(lambda: all(p["state"] == "in-service"
                               for p in self.c.pairs("dc1-a").values()), 10)

    def d(self, n):
        return self.c.rundir(n)

    def pid(self, n):
        with open(os.path.join(self.d(n), "kamailio.pid")) as f:
            return int(f.read().strip())

    def kill9(self, n):
        pid = self.pid(n)
        os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5)
        os.unlink(os.path.join(self.d(n), "kamailio.pid"))

    def bindings(self, n):
        out = set()
        res = jsonrpc(self.d(n), "ul.dump", timeout=60)
        for dom in res.get("Domains", []):
            for a in dom.get("Domain", {}).get("AoRs", []) or []:
                info = a.get("Info", {})
                for ct in info.get("Contacts", []) or []:
                    ct = ct.get("Contact", ct)
                    out.add((info.get("AoR"), ct.get("Address")))
        return out

    def converge(self, timeout=60):
        """seconds until all proxies hold the same bindings (None: never)"""
        t0 = time.monotonic()
        state = {}

        def same():
            for n in PROXIES:
                state[n] = self.bindings(n)
            return len({frozenset(v) for v in state.values()}) == 1
        ok = wait_until(same, timeout, 0.25)
        return (time.monotonic() - t0 if ok else None), state

    def stat(self, n, name):
        out = kamcmd(self.d(n), "stats.get_statistics", "all").stdout
        m = re.search(r"%s = (\d+)" % re.escape(name), out)
        return int(m.group(1)) if m else 0

    def shm_used(self, n):
        out = kamcmd(self.d(n), "core.shmmem").stdout
        m = re.search(r"used:\s*(\d+)", out)
        return int(m.group(1)) if m else 0

    def stop(self):
        heal()
        self.c.stop_all()


def register(proxy, prefix, n, rate, src, expires=None):
    """n REGISTERs (AoRs prefix0..prefixN-1) with digest auth; returns
    (successful, failed)"""
    stat = os.path.join(OUT, "reg-%s-%d.csv" % (prefix, int(time.time() * 1000)))
    args = ["sipp", "-nostdin", "-sf", REG_XML, "-s", prefix, "-au", prefix, "-ap", "secret",
            "-i", src, "-p", "0", "-m", str(n), "-r", str(rate), "-l", "400",
            "-timeout", str(int(n / rate) + 60), "-recv_timeout", "8000",
            "-trace_stat", "-stf", stat, "%s:5060" % proxy]
    p = subprocess.run(args, capture_output=True, text=True, timeout=n / rate + 90)
    ok = re.search(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", p.stdout)
    bad = re.search(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", p.stdout)
    return (int(ok.group(1)) if ok else 0), (int(bad.group(1)) if bad else n)


def calls(proxy, n, rate, src, duration_ms=1000, timeout=None):
    """n calls through proxy (INVITE, ACK, BYE along the route set);
    returns (successful, failed)"""
    args = ["sipp", "-nostdin", "-sf", UAC_XML, "-i", src, "-p", "0", "-m", str(n),
            "-r", str(rate), "-d", str(duration_ms), "-l", str(max(200, rate * 4)),
            "-timeout", str(timeout or int(n / rate) + 60), "-recv_timeout", "10000",
            "%s:5060" % proxy]
    p = subprocess.run(args, capture_output=True, text=True,
                       timeout=(timeout or n / rate + 60) + 30)
    ok = re.search(r"Successful call\s+\|\s+\d+\s+\|\s+(\d+)", p.stdout)
    bad = re.search(r"Failed call\s+\|\s+\d+\s+\|\s+(\d+)", p.stdout)
    return (int(ok.group(1)) if ok else 0), (int(bad.group(1)) if bad else n)


# ------------------------------------------------------------ scenarios

def s_partition(lab):
    """dc2 cut off from dc1 (every packet dropped) while dc1 takes
    registrations and dc2 its own; heal; time to identical bindings"""
    ok, bad = register(PROXIES["dc1-a"], "pa", N_BIND // 3, 200, B + ".9.1")
    t, _ = lab.converge()
    base = len(lab.bindings("dc1-a"))
    dc1 = [a for n, a in PROXIES.items() if n.startswith("dc1")] + [SERVERS[s][0] for s in ("s11", "s12", "s21")]
    dc2 = [a for n, a in PROXIES.items() if n.startswith("dc2")] + [SERVERS["s31"][0]]
    drop([(dc1, dc2)])
    t_cut = time.monotonic()
    res = {}
    th = [threading.Thread(target=lambda: res.__setitem__("dc1", register(
              PROXIES["dc1-b"], "pb", N_BIND // 3, 50, B + ".9.2"))),
          threading.Thread(target=lambda: res.__setitem__("dc2", register(
              PROXIES["dc2-a"], "pc", N_BIND // 6, 25, B + ".9.3")))]
    for x in th:
        x.start()
    for x in th:
        x.join()
    time.sleep(max(0, PART_S - (time.monotonic() - t_cut)))
    held = {n: len(lab.bindings(n)) for n in PROXIES}
    heal()
    cut = time.monotonic() - t_cut
    t_heal = time.monotonic()
    t, state = lab.converge(timeout=60)
    expect = base + res["dc1"][0] + res["dc2"][0]
    figure("partition", "partition length (s)", "%.1f" % cut)
    figure("partition", "REGISTERs during it (ok/failed)", "%d/%d" % (
        res["dc1"][0] + res["dc2"][0], res["dc1"][1] + res["dc2"][1]),
        res["dc1"][1] + res["dc2"][1] == 0)
    figure("partition", "bindings per proxy before the heal", " ".join(
        "%s=%d" % kv for kv in held.items()))
    figure("partition", "converged after the heal (s)", "%.1f" % t if t is not None else "never",
           t is not None and t <= 10)
    n = len(state["dc1-a"])
    figure("partition", "bindings everywhere (expected %d)" % expect, n, n == expect)


def s_kill(lab):
    """a proxy SIGKILLed while the others take REGISTERs and calls; it is
    started again: its resync time, 0 bindings lost, calls unaffected"""
    res = {}
    th = [threading.Thread(target=lambda: res.__setitem__("reg", register(
              PROXIES["dc1-a"], "ka", N_BIND // 3, 25, B + ".9.4"))),
          threading.Thread(target=lambda: res.__setitem__("call", calls(
              PROXIES["dc2-a"], 25 * 20, 25, B + ".9.5")))]
    for x in th:
        x.start()
    time.sleep(5)
    lab.kill9("dc1-b")
    time.sleep(3)
    t0 = time.monotonic()
    lab.c.start_proxy("dc1-b", ARGS)
    up = time.monotonic() - t0
    for x in th:
        x.join()
    t, state = lab.converge()
    figure("kill", "dc1-b started and synced (s)", "%.1f" % up)
    figure("kill", "REGISTERs meanwhile (ok/failed)", "%d/%d" % res["reg"], res["reg"][1] == 0)
    figure("kill", "calls via dc2-a meanwhile (ok/failed)", "%d/%d" % res["call"], res["call"][1] == 0)
    figure("kill", "all proxies equal after start (s)", "%.1f" % t if t is not None else "never",
           t is not None)
    mine = len({a for a, _ in state["dc1-b"] if a.startswith("ka")})
    figure("kill", "ka* bindings on dc1-b (expected %d)" % res["reg"][0], mine, mine == res["reg"][0])


def s_restart(lab):
    """every proxy SIGKILLed at once and started again: 0 bindings lost"""
    register(PROXIES["dc2-b"], "ra", N_BIND, 400, B + ".9.6")
    t, state = lab.converge()
    before = state["dc1-a"]
    time.sleep(2.5)  # past usrloc's write-back (UL_TIMER 1 s)
    for n in PROXIES:
        lab.kill9(n)
    t0 = time.monotonic()
    for n in PROXIES:
        lab.c.start_proxy(n, ARGS)
    up = time.monotonic() - t0
    after = {n: lab.bindings(n) for n in PROXIES}
    lost = max(len(before - a) for a in after.values())
    figure("restart", "bindings before", len(before))
    figure("restart", "all 4 started and synced (s)", "%.1f" % up)
    figure("restart", "bindings lost (worst proxy)", lost, lost == 0)


def s_flap(lab):
    """the primary of pair n1 alive/dead every 1.5 s (its packets dropped)
    under 30 calls/s: failed calls, alarms, calls sent to a dead member"""
    dc1a = lab.d("dc1-a")
    log0 = len(lab.c.log("dc1-a"))
    f0 = lab.stat("dc1-a", "failovers")
    res = {}
    n = 30 * FLAP_S
    th = threading.Thread(target=lambda: res.__setitem__("call", calls(
        PROXIES["dc1-a"], n, 30, B + ".9.7", duration_ms=500)))
    th.start()
    stop = time.monotonic() + FLAP_S
    dead = False
    flips = 0
    while time.monotonic() < stop:
        if dead:
            heal()
        else:
            drop([([SERVERS["s11"][0]], list(PROXIES.values()))])
        dead = not dead
        flips += 1
        time.sleep(1.5)
    heal()
    th.join()
    logtxt = lab.c.log("dc1-a")[log0:]
    alarms = len(re.findall(r"\[40001\]", logtxt))
    figure("flap", "flips of s11 (1.5 s each)", flips)
    # a call whose SIP Server dies while it is up loses its BYE: counted,
    # not a failure of the proxy
    figure("flap", "calls (ok/failed)", "%d/%d" % res["call"])
    figure("flap", "[40001] alarms on dc1-a", alarms, alarms <= 2 * (FLAP_S // 60 + 1))
    figure("flap", "failovers on dc1-a", lab.stat("dc1-a", "failovers") - f0)
    del dc1a


def s_reloads(lab):
    """100 reloads of the document, valid and invalid alternately, under
    100 calls/s: 0 failed calls, shm back to its baseline"""
    good = open(lab.c.file).read()
    bad = good.replace("</sip-cluster>", "<oops>")
    time.sleep(12)
    shm0 = lab.shm_used("dc1-a")
    res = {}
    th = threading.Thread(target=lambda: res.__setitem__("call", calls(
        PROXIES["dc1-a"], 100 * 25, 100, B + ".9.8", duration_ms=200)))
    th.start()
    n_ok = n_bad = 0
    for i in range(100):
        lab.c.write(bad if i % 2 else good)
        p = kamcmd(lab.d("dc1-a"), "sipcluster.reload", check=False)
        if "error" in (p.stdout + p.stderr).lower():
            n_bad += 1
        else:
            n_ok += 1
        time.sleep(0.2)
    lab.c.write(good)
    kamcmd(lab.d("dc1-a"), "sipcluster.reload")
    th.join()
    # tm keeps finished transactions a few seconds (wait timer)
    time.sleep(12)
    shm1 = lab.shm_used("dc1-a")
    figure("reloads", "reloads accepted/refused", "%d/%d" % (n_ok, n_bad), n_ok == 50 and n_bad == 50)
    figure("reloads", "calls (ok/failed)", "%d/%d" % res["call"], res["call"][1] == 0)
    figure("reloads", "shm used before/after (KB)", "%d/%d" % (shm0 // 1024, shm1 // 1024),
           shm1 - shm0 < 2 * 1024 * 1024)


def s_soak(lab):
    """SOAK_CALLS calls + SOAK_REFRESH refreshes; shm before, during,
    after, after idle"""
    shm = {"before": sum(lab.shm_used(n) for n in PROXIES)}
    res = {}
    th = [threading.Thread(target=lambda: res.__setitem__("call", calls(
              PROXIES["dc1-a"], SOAK_CALLS, SOAK_RATE, B + ".9.9", duration_ms=200,
              timeout=int(SOAK_CALLS / SOAK_RATE) + 120))),
          threading.Thread(target=lambda: res.__setitem__("reg", register(
              PROXIES["dc2-a"], "sk", SOAK_REFRESH,
              max(10, SOAK_REFRESH * SOAK_RATE // SOAK_CALLS), B + ".9.10")))]
    for x in th:
        x.start()
    time.sleep(min(20, SOAK_CALLS / SOAK_RATE / 2))
    shm["during"] = sum(lab.shm_used(n) for n in PROXIES)
    for x in th:
        x.join()
    shm["after"] = sum(lab.shm_used(n) for n in PROXIES)
    time.sleep(15)
    shm["idle"] = sum(lab.shm_used(n) for n in PROXIES)
    figure("soak", "calls at %d/s (ok/failed)" % SOAK_RATE, "%d/%d" % res["call"], res["call"][1] == 0)
    figure("soak", "REGISTERs (ok/failed)", "%d/%d" % res["reg"], res["reg"][1] == 0)
    figure("soak", "shm, 4 proxies: before/during/after/idle (MB)", "/".join(
        "%.1f" % (shm[k] / 1048576.0) for k in ("before", "during", "after", "idle")))
    # what stays is the refreshed bindings (about 1.5 KB each, 4 copies)
    growth = shm["idle"] - shm["before"]
    figure("soak", "shm growth after idle (KB)", growth // 1024,
           growth < 4 * 2048 * SOAK_REFRESH + 8 * 1048576)


SCENARIOS = {"partition": s_partition, "kill": s_kill, "restart": s_restart,
             "flap": s_flap, "reloads": s_reloads, "soak": s_soak}


def main():
    names = [a for a in sys.argv[1:] if not a.startswith("--")] or list(SCENARIOS)
    for n in names:
        if n not in SCENARIOS:
            sys.exit("chaos: unknown scenario %s (%s)" % (n, ", ".join(SCENARIOS)))
    if os.geteuid() != 0:
        sys.exit("chaos: run as root (nftables for the partition)")
    os.makedirs(OUT, exist_ok=True)
    lab = Lab()
    try:
        for n in names:
            log("== %s: %s" % (n, " ".join(SCENARIOS[n].__doc__.split())))
            t0 = time.monotonic()
            try:
                SCENARIOS[n](lab)
            except Exception as e:  # a scenario that breaks is a failure
                figure(n, "scenario raised", repr(e)[:120], False)
            log("   (%.0f s)" % (time.monotonic() - t0))
    finally:
        lab.stop()
    lines = ["%-10s %-48s %s%s" % (s, w, v, "" if ok else "   FAILED") for s, w, v, ok in results]
    with open(os.path.join(OUT, "summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(["", "chaos summary (%s)" % ("quick" if QUICK else "full")] + lines))
    failed = [r for r in results if not r[3]]
    print("chaos: %d figures, %d failed" % (len(results), len(failed)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
