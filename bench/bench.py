#!/usr/bin/env python3
"""make bench: sipcluster against a tuned stock Kamailio cluster (dispatcher +
registrar/usrloc/dmq_usrloc, bench/baseline/kamailio.cfg), same machine, same
run, loopback only (sipcluster on 127.30.x.y, baseline on 127.31.x.y).

Prints one table and writes it with the machine description to
docs/benchmarks.md. Raw SIPp statistics stay in build/bench/.
Every load is bounded in count and time. Environment knobs:
BENCH_RATES="300,600,900,1200", BENCH_STEP=6 (s per rate step),
BENCH_SCALE_N=100000.
"""

import os
import pickle
import platform
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(TOP, "tests", "integration"))
import harness  # noqa: E402
from harness import (Endpoint, kamcmd, parse_kamcmd, reply_code, wait_until,  # noqa: E402
                     cluster_xml, pair_xml, proxy_xml)

RUN = os.path.join(TOP, "build", "bench")
SIPP_UAC = os.path.join(TOP, "tests", "sipp", "uac_rr.xml")
SIPP_REG = os.path.join(TOP, "tests", "sipp", "reg_auth.xml")
OURS_CFG = os.path.join(TOP, "kamailio-cfg", "kamailio.cfg")
BASE_CFG = os.path.join(TOP, "bench", "baseline", "kamailio.cfg")
MODULE = os.path.join(TOP, "modules", "sipcluster", "sipcluster.so")
STANDIN = os.path.join(TOP, "scripts", "lab", "standin")

RATES = [int(x) for x in os.environ.get("BENCH_RATES", "400,800,1200,1600,2000,2400").split(",")]
STEP = int(os.environ.get("BENCH_STEP", "5"))
SCALE_N = int(os.environ.get("BENCH_SCALE_N", "100000"))
CHILDREN = 4
SHM = int(os.environ.get("BENCH_SHM", "512"))
CLK = os.sysconf("SC_CLK_TCK")

started = []


def log(msg):
    print("bench: " + msg, flush=True)


# ------------------------------------------------------------ processes

def kill_dir(d):
    harness._kill_dir(d)


# saturation: the proxy on PROXY_CPU, everything else on LOAD_CPU
PROXY_CPU, LOAD_CPU = "0", "1"
SAT_CHILDREN = int(os.environ.get("BENCH_SAT_CHILDREN", "2"))
SAT_STEP = int(os.environ.get("BENCH_SAT_STEP", "5"))
# every transaction stays in shm for tm's wait timer (5 s) after its final
# reply, about 14 KB each (the cloned request, 12 branch slots): 512 MB runs
# out near 3,500 calls/s for both systems, before either runs out of CPU
SAT_SHM = int(os.environ.get("BENCH_SAT_SHM", "3072"))
EXTRA_DEFS = [x for x in os.environ.get("BENCH_DEFS", "").split(",") if x]
ONLY = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]


def pinned(cpu):
    """command prefix pinning to cpu (nothing when taskset is missing)"""
    return ["taskset", "-c", cpu] if shutil.which("taskset") else []


def cpu_busy(cpu):
    """(busy, total) jiffies of one CPU from /proc/stat"""
    for line in open("/proc/stat"):
        if line.startswith("cpu%s " % cpu):
            v = [int(x) for x in line.split()[1:]]
            idle = v[3] + v[4]
            return sum(v) - idle, sum(v)
    return 0, 1


def udp_rcvbuf_errors():
    """the kernel's count of UDP datagrams dropped for a full receive buffer"""
    lines = [ln.split() for ln in open("/proc/net/snmp") if ln.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


def start_kamailio(d, cfg, defines, shm=SHM, prefix=()):
    os.makedirs(d, exist_ok=True)
    kill_dir(d)
    for f in ("ctl",):
        try:
            os.unlink(os.path.join(d, f))
        except OSError:
            pass
    args = list(prefix) + ["kamailio", "-f", cfg, "-DD", "-E", "-w", d, "-m", str(shm),
                           "-M", "128", "-x", "tlsf"]
    for k in defines:
        args += ["-A", k]
    with open(os.path.join(d, "kamailio.log"), "w") as logf:
        p = subprocess.Popen(args, stdout=logf, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
    with open(os.path.join(d, "kamailio.pid"), "w") as f:
        f.write(str(p.pid))
    started.append(d)
    harness._started.append(d)
    ok = wait_until(lambda: p.poll() is None and os.path.exists(os.path.join(d, "ctl"))
                    and kamcmd(d, "core.uptime", check=False).returncode == 0, 20, 0.1)
    if not ok:
        raise RuntimeError("kamailio in %s did not start:\n%s" % (
            d, open(os.path.join(d, "kamailio.log")).read()[-2000:]))
    return d


def start_standin(d, name, addr, backup=False, prefix=()):
    kill_dir(d)
    cmd = list(prefix) + [STANDIN, "start", "--name", name, "--addr", addr, "--dir", d]
    if backup:
        cmd.append("--backup")
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    started.append(d)
    harness._started.append(d)
    return d


def proc_cpu(d):
    """CPU seconds (user+system) of all processes of the kamailio in d"""
    pid = int(open(os.path.join(d, "kamailio.pid")).read())
    total = 0
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            st = open("/proc/%s/stat" % p).read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        if int(f[2]) == pid or int(p) == pid:  # process group
            total += int(f[11]) + int(f[12])
    return total / CLK


def shm_used(d):
    out = kamcmd(d, "core.shmmem").stdout
    m = re.search(r"real_used:\s*(\d+)", out)
    return int(m.group(1))


def registered(d):
    out = kamcmd(d, "stats.get_statistics", "registered_users", check=False).stdout
    m = re.search(r"= (\d+)", out)
    return int(m.group(1)) if m else -1


def sipp_run(args, statfile, timeout, prefix=()):
    """run SIPp to the end; (successful, failed, exit code)"""
    if os.path.exists(statfile):
        os.unlink(statfile)
    cmd = list(prefix) + ["sipp", "-nostdin", "-trace_stat", "-stf", statfile, "-fd", "1"] + [str(a) for a in args]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc = -9
    ok = failed = 0
    try:
        lines = open(statfile).read().strip().splitlines()
        head = lines[0].split(";")
        last = lines[-1].split(";")
        ok = int(last[head.index("SuccessfulCall(C)")])
        failed = int(last[head.index("FailedCall(C)")])
    except (OSError, ValueError, IndexError):
        pass
    return ok, failed, rc


# ------------------------------------------------------------ systems

class System:
    """one cluster under test: 'sipcluster' (block 127.30) or 'baseline'
    (127.31). Proxies at B.0.n, SIP Servers of pair k at B.k.11 / B.k.12."""

    def __init__(self, kind):
        self.kind = kind
        self.defs = []  # cfg defines of this run only
        self.b = "127.30" if kind == "sipcluster" else "127.31"
        self.dir = os.path.join(RUN, kind)

    def proxy_addr(self, i):
        return "%s.0.%d" % (self.b, i)

    def server_addr(self, pair, member):
        return "%s.%d.%d" % (self.b, pair, 11 + member)

    def setup(self, nproxies, npairs, timers=1, pin=False):
        """pin: the proxies on PROXY_CPU with SAT_CHILDREN children, the
        stand-ins on LOAD_CPU"""
        self.teardown()
        os.makedirs(self.dir, exist_ok=True)
        self.nproxies, self.npairs = nproxies, npairs
        self.pin = pin
        load = pinned(LOAD_CPU) if pin else []
        for k in range(1, npairs + 1):
            start_standin(os.path.join(self.dir, "s%da" % k), "s%da" % k, self.server_addr(k, 0),
                          prefix=load)
            start_standin(os.path.join(self.dir, "s%db" % k), "s%db" % k,
                          self.server_addr(k, 1), backup=True, prefix=load)
        body = "".join(proxy_xml("p%d" % i, self.proxy_addr(i), "dc1")
                       for i in range(1, nproxies + 1))
        for k in range(1, npairs + 1):
            body += pair_xml("n%d" % k, "dc1", [("s%da" % k, self.server_addr(k, 0), "primary"),
                                                ("s%db" % k, self.server_addr(k, 1), "backup")])
        self.doc = os.path.join(self.dir, "cluster.xml")
        with open(self.doc, "w") as f:
            f.write(cluster_xml("bench", body))
        self.dslist = os.path.join(self.dir, "dispatcher.list")
        with open(self.dslist, "w") as f:
            for k in range(1, npairs + 1):
                for m in (0, 1):
                    f.write("1 sip:%s:5060 0 0\n" % self.server_addr(k, m))
        self.timers = timers
        self.proxies = [self.start_proxy(i) for i in range(1, nproxies + 1)]
        # let probing settle: only the primaries answer
        time.sleep(timers * 3 + 1)

    def start_proxy(self, i):
        d = os.path.join(self.dir, "p%d" % i)
        addr = self.proxy_addr(i)
        pin = getattr(self, "pin", False)
        prefix = pinned(PROXY_CPU) if pin else []
        # sipcluster takes KDMQ over TCP only (the cluster channel)
        tp = ";transport=tcp" if self.kind == "sipcluster" else ""
        defines = ["LISTEN_ADDR=%s" % addr, 'CTL_SOCKET="unix:%s/ctl"' % d,
                   "SERVER_ID=%d" % i, 'DMQ_SERVER="sip:%s:5060%s"' % (addr, tp),
                   "CHILDREN=%d" % (SAT_CHILDREN if pin else CHILDREN)] + EXTRA_DEFS + self.defs + [
                   "SERVER_TIMEOUT=1000"]
        n = 0
        for j in range(1, self.nproxies + 1):
            if j != i:
                n += 1
                defines.append('DMQ_NOTIFY_%d="sip:%s:5060%s"' % (n, self.proxy_addr(j), tp))
        if self.kind == "sipcluster":
            # the shipped default: bindings written back to a SQLite file
            os.makedirs(d, exist_ok=True)
            defines.append(harness.make_location_db(os.path.join(d, "location.sqlite")))
            # one SIPp address sends all the load: pike (per-source rate
            # limit for outsiders, on in the shipped cfg) would block it
            defines.append("NO_PIKE")
            defines += ['PROXY_NAME="p%d"' % i, 'CLUSTER_FILE="%s"' % self.doc,
                        'SIPCLUSTER_SO="%s"' % MODULE, "OOS_CHECK=%d" % self.timers,
                        "OOS_FORCE=%d" % self.timers, "MAX_CONTACTS=0",
                        'GEO_LOCATION="dc1"']
            return start_kamailio(d, OURS_CFG, defines, prefix=prefix,
                                  shm=SAT_SHM if pin else SHM)
        defines += ['DS_LIST="%s"' % self.dslist, "DS_PING=%d" % self.timers]
        return start_kamailio(d, BASE_CFG, defines, prefix=prefix, shm=SAT_SHM if pin else SHM)

    def teardown(self):
        if os.path.isdir(self.dir):
            for x in os.listdir(self.dir):
                kill_dir(os.path.join(self.dir, x))

    def shv(self, name, var, value=None):
        d = os.path.join(self.dir, name)
        if value is None:
            out = kamcmd(d, "pv.shvGet", var).stdout
            return int(re.search(r"value:\s*(-?\d+)", out).group(1))
        kamcmd(d, "pv.shvSet", var, "int", value)


# ------------------------------------------------------------ measurements

def m_throughput(sysm):
    sysm.setup(1, 2)
    p = sysm.proxies[0]
    target = "%s:5060" % sysm.proxy_addr(1)
    steps = []
    best = 0
    for rate in RATES:
        n = rate * STEP
        stat = os.path.join(sysm.dir, "thr_%d.csv" % rate)
        ok, failed, rc = sipp_run(["-sf", SIPP_UAC, "-i", sysm.b + ".9.1", "-p", "0",
                                   "-m", n, "-r", rate, "-d", 0, "-l", rate * 4,
                                   "-timeout", STEP * 4 + 20, target], stat, STEP * 4 + 40)
        lost = n - ok
        pct = 100.0 * lost / n
        steps.append((rate, ok, lost, pct))
        log("%s throughput %d/s: %d ok, %d failed or unfinished (%.2f %%)"
            % (sysm.kind, rate, ok, lost, pct))
        if pct < 0.1:
            best = rate
        else:
            break
    # CPU per 1000 calls at a fixed, sustainable rate, minus what the proxy
    # burns idle (timers, pinger, DMQ) over the same time; best of 3 runs
    rate, secs = 500, 8
    n = rate * secs
    time.sleep(2)
    c0 = proc_cpu(p)
    time.sleep(secs)
    idle = (proc_cpu(p) - c0) / secs
    runs = []
    for k in range(3):
        c0 = proc_cpu(p)
        w0 = time.monotonic()
        ok, failed, rc = sipp_run(["-sf", SIPP_UAC, "-i", sysm.b + ".9.2", "-p", "0", "-m", n,
                                   "-r", rate, "-d", 0, "-timeout", 60, target],
                                  os.path.join(sysm.dir, "cpu%d.csv" % k), 90)
        time.sleep(1)
        cpu = proc_cpu(p) - c0 - idle * (time.monotonic() - w0)
        runs.append(cpu / max(ok, 1) * 1000)
    per1000 = min(runs)
    log("%s CPU: %s s per 1000 calls (idle %.3f CPU s/s subtracted), best %.3f"
        % (sysm.kind, ", ".join("%.3f" % x for x in runs), idle, per1000))
    sysm.teardown()
    return {"max_rate": best, "cpu_per_1000": per1000, "steps": steps}


def saturate(sysm, what, scenario_args, start, step, top):
    """stepped load (SAT_STEP s each) from the load CPU against the pinned
    proxy until a step loses >= 0.1 %: [(rate, ok, lost %, proxy CPU %,
    load CPU %)] and the highest clean rate. A losing step is run once more
    before it counts (a VM's scheduling hiccup is not a limit); when the
    first rate already loses, the search steps down from it, so the limit
    is found below the start too."""
    p = sysm.proxies[0]
    target = "%s:5060" % sysm.proxy_addr(1)
    steps, best, rate, k = [], 0, start, 0
    retried = set()
    while step <= rate <= top:
        n = rate * SAT_STEP
        k += 1
        stat = os.path.join(sysm.dir, "sat_%s_%d.csv" % (what, rate))
        c0, w0, l0 = proc_cpu(p), time.monotonic(), cpu_busy(LOAD_CPU)
        e0 = udp_rcvbuf_errors()
        # CPU figures over the step's nominal length only (SIPp then waits
        # for stragglers, while the proxy may still work off a backlog)
        at_end = {}

        def sample():
            at_end["cpu"], at_end["load"] = proc_cpu(p), cpu_busy(LOAD_CPU)
            at_end["wall"] = time.monotonic() - w0
        timer = threading.Timer(SAT_STEP, sample)
        timer.start()
        ok, failed, rc = sipp_run(scenario_args(k) + ["-m", n, "-r", rate, "-l", rate * 4,
                                                      "-timeout", SAT_STEP * 3 + 20, target],
                                  stat, SAT_STEP * 3 + 40, prefix=pinned(LOAD_CPU))
        timer.join()
        if not at_end:
            sample()
        wall = at_end["wall"]
        l1 = at_end["load"]
        pcpu = 100.0 * (at_end["cpu"] - c0) / wall
        lcpu = 100.0 * (l1[0] - l0[0]) / max(1, l1[1] - l0[1])
        drops = udp_rcvbuf_errors() - e0
        pct = 100.0 * (n - ok) / n
        steps.append((rate, ok, pct, pcpu, lcpu, drops))
        log("%s saturation %s %d/s: %d ok, %.2f %% lost, proxy CPU %.0f %%, load CPU %.0f %%, "
            "UDP receive-buffer drops %d" % (sysm.kind, what, rate, ok, pct, pcpu, lcpu, drops))
        time.sleep(1)
        if pct >= 0.1:
            if rate not in retried:
                retried.add(rate)
                continue
            if best:
                break
            rate -= step
            continue
        best = rate
        if rate + step in retried:
            break
        rate += step
    return steps, best


def m_saturation(sysm):
    """the proxy alone on one core (taskset, SAT_CHILDREN children), SIPp
    and the stand-ins on the other: the highest call rate and REGISTER
    (relay + store) rate with < 0.1 % lost"""
    sysm.setup(1, 2, pin=True)
    # CPU per call with the proxy alone on its core: 3 runs of 8000 calls at
    # 1000/s, idle CPU subtracted, median
    p = sysm.proxies[0]
    target = "%s:5060" % sysm.proxy_addr(1)
    c0 = proc_cpu(p)
    time.sleep(5)
    idle = (proc_cpu(p) - c0) / 5
    runs = []
    for k in range(3):
        c0, w0 = proc_cpu(p), time.monotonic()
        ok, failed, rc = sipp_run(["-sf", SIPP_UAC, "-i", sysm.b + ".9.9", "-p", "0",
                                   "-m", 8000, "-r", 1000, "-d", 0, "-timeout", 60, target],
                                  os.path.join(sysm.dir, "pcpu%d.csv" % k), 90,
                                  prefix=pinned(LOAD_CPU))
        time.sleep(1)
        runs.append((proc_cpu(p) - c0 - idle * (time.monotonic() - w0)) / max(ok, 1) * 1000)
    pinned_cpu = statistics.median(runs)
    log("%s pinned CPU per 1000 calls: %s, median %.3f"
        % (sysm.kind, ", ".join("%.3f" % x for x in runs), pinned_cpu))
    calls, cbest = saturate(
        sysm, "calls", lambda k: ["-sf", SIPP_UAC, "-i", sysm.b + ".9.7", "-p", "0", "-d", 0],
        2000, 500, 15000)
    sysm.teardown()

    def registers(what, tag):
        """REGISTER saturation on a fresh single proxy (new AoRs per step)"""
        sysm.setup(1, 1, pin=True)
        res = saturate(
            sysm, what, lambda k: ["-sf", SIPP_REG, "-s", "%s%d_" % (tag, k), "-au", "bench",
                                   "-ap", "secret", "-i", sysm.b + ".9.8", "-p", "0"],
            1000, 500, 10000)
        sysm.teardown()
        return res
    regs, rbest = registers("register", "sat")
    mbest = None
    if sysm.kind == "sipcluster" and "NO_PERSIST" not in EXTRA_DEFS:
        # like for like: memory only, as the baseline keeps its bindings
        sysm.defs = ["NO_PERSIST"]
        _, mbest = registers("register-mem", "mem")
        sysm.defs = []
    return {"calls": calls, "calls_best": cbest, "regs": regs, "regs_best": rbest,
            "regs_mem_best": mbest, "cpu_per_1000": pinned_cpu, "cpu_runs": runs}


def lag_of(aor, dirs, t200, limit=2.0):
    """ms from t200 until aor is visible on every proxy in dirs"""
    found = {}

    def poll(d):
        end = t200 + limit
        while time.monotonic() < end:
            out = kamcmd(d, "ul.lookup", "location", aor, check=False).stdout
            if "Contact" in out or "Address" in out:
                found[d] = time.monotonic()
                return
            time.sleep(0.001)
    th = [threading.Thread(target=poll, args=(d,)) for d in dirs]
    for t in th:
        t.start()
    for t in th:
        t.join()
    if len(found) < len(dirs):
        return None
    return (max(found.values()) - t200) * 1000


def m_register(sysm):
    sysm.setup(4, 1)
    target = "%s:5060" % sysm.proxy_addr(1)
    rate, n = 300, 3000
    stat = os.path.join(sysm.dir, "reg.csv")
    res = {}

    def load():
        res["sipp"] = sipp_run(["-sf", SIPP_REG, "-s", "bench", "-au", "bench", "-ap", "secret",
                                "-i", sysm.b + ".9.3", "-p", "0", "-m", n, "-r", rate,
                                "-l", 300, "-timeout", 60, target], stat, 90)
    th = threading.Thread(target=load)
    th.start()
    time.sleep(1)
    lags = []
    for i in range(60):
        ep = Endpoint(sysm.b + ".9.4", (sysm.proxy_addr(1), 5060), "lag%03d" % i)
        r = ep.register(3600)
        t200 = time.monotonic()
        ep.close()
        if reply_code(r) != 200:
            continue
        lag = lag_of("lag%03d" % i, sysm.proxies[1:], t200)
        if lag is not None:
            lags.append(lag)
    th.join()
    ok, failed, rc = res["sipp"]
    time.sleep(2)
    replicated = min(registered(d) for d in sysm.proxies)
    lags.sort()
    p50 = statistics.median(lags) if lags else float("nan")
    p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else float("nan")
    log("%s REGISTER: %d/%d ok at %d/s, %d failed, %d bindings on every proxy, lag p50 %.1f "
        "ms p99 %.1f ms (%d samples)" % (sysm.kind, ok, n, rate, n - ok, replicated, p50, p99,
                                         len(lags)))
    sysm.teardown()
    return {"rate": rate, "ok": ok, "failed": n - ok, "p50": p50, "p99": p99,
            "replicated": replicated, "samples": len(lags)}


def m_switchover(sysm):
    sysm.setup(1, 1, timers=1)
    target = "%s:5060" % sysm.proxy_addr(1)
    rate, secs = 50, 20
    stat = os.path.join(sysm.dir, "switch.csv")
    res = {}

    def load():
        res["sipp"] = sipp_run(["-sf", SIPP_UAC, "-i", sysm.b + ".9.5", "-p", "0",
                                "-m", rate * secs, "-r", rate, "-d", 2000, "-timeout", secs + 40,
                                target], stat, secs + 60)
    th = threading.Thread(target=load)
    th.start()
    time.sleep(6)
    b0 = sysm.shv("s1b", "invites")
    sysm.shv("s1b", "active", 1)
    kill_dir(os.path.join(sysm.dir, "s1a"))
    tkill = time.monotonic()
    # new calls land on the backup: its INVITE counter moves
    seen = wait_until(lambda: sysm.shv("s1b", "invites") > b0, secs, 0.01)
    to_backup = time.monotonic() - tkill if seen else float("nan")
    th.join()
    ok, failed, rc = res["sipp"]
    total = rate * secs
    log("%s switchover: %d of %d calls failed; new calls on the backup %.2f s after the kill"
        % (sysm.kind, total - ok, total, to_backup))
    sysm.teardown()
    return {"failed": total - ok, "total": total, "to_backup": to_backup}


def m_scale(sysm):
    sysm.setup(2, 1)
    a, b = sysm.proxies
    target = "%s:5060" % sysm.proxy_addr(1)
    time.sleep(1)
    shm0 = shm_used(b)
    rate = int(os.environ.get("BENCH_SCALE_RATE", "500"))
    stat = os.path.join(sysm.dir, "scale.csv")
    t0 = time.monotonic()
    ok, failed, rc = sipp_run(["-sf", SIPP_REG, "-s", "scale", "-au", "scale", "-ap", "secret",
                               "-i", sysm.b + ".9.6", "-p", "0", "-m", SCALE_N, "-r", rate,
                               "-l", 2000, "-timeout", SCALE_N // rate + 60, target], stat,
                              SCALE_N // rate + 90)
    took = time.monotonic() - t0
    wait_until(lambda: registered(b) >= ok, 30, 0.5)
    time.sleep(6)  # transactions drained (wait timer)
    held = registered(b)
    per = (shm_used(b) - shm0) / max(held, 1)
    log("%s scale: %d registered in %.0f s, replica holds %d, %.0f shm bytes per binding"
        % (sysm.kind, ok, took, held, per))
    # a freshly started proxy syncs from its peer
    kill_dir(b)
    t0 = time.monotonic()
    sysm.start_proxy(2)
    done = wait_until(lambda: registered(b) >= held, 120, 0.1)
    sync = time.monotonic() - t0 if done else float("nan")
    time.sleep(1)
    logtext = open(os.path.join(a, "kamailio.log"), errors="replace").read()
    shm_errors = len(re.findall(r"(?i)no more shm|could not allocate shared memory|"
                                r"out of shm|Free fragment not found", logtext))
    # sipcluster: when the replica's start-up gate opened (REGISTERs taken)
    gate = float("nan")
    if sysm.kind == "sipcluster":
        m = re.findall(r"registration sync done after (\d+) ms",
                       open(os.path.join(b, "kamailio.log"), errors="replace").read())
        if m:
            gate = int(m[-1]) / 1000.0
    log("%s scale: restarted replica holds %d after %.1f s (REGISTER gate open after "
        "%.1f s); donor shm errors: %d" % (sysm.kind, registered(b), sync, gate, shm_errors))
    sysm.teardown()
    return {"n": ok, "held": held, "per_binding": per, "sync_s": sync,
            "shm_errors": shm_errors, "reg_s": took, "gate_s": gate}


def m_select():
    subprocess.run(["make", "-s", "-C", os.path.join(TOP, "bench")], check=True,
                   capture_output=True)
    res = {}
    for n in (10, 1000):
        out = subprocess.run([os.path.join(TOP, "bench", "bench_select"), str(n), "20000000"],
                             capture_output=True, text=True, check=True).stdout
        res[n] = dict((k, float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", out))
        log("selection with %d pairs: %s" % (n, out.strip()))
    return res


DOC_SIZES = [int(x) for x in os.environ.get("BENCH_DOC_PAIRS", "1000,10000,50000").split(",")]
PROXY_CLI = os.path.join(TOP, "scripts", "sipcluster-proxy")
CHECK_CLI = os.path.join(TOP, "modules", "sipcluster", "tools", "sipcluster-check")


def big_doc(path, npairs):
    """a cluster document of npairs HA pairs (two members each) in two
    data centers, two proxies on 127.32.0.1/2; the servers' addresses
    (127.33.0.0 upwards) are never started: the document is what is
    measured"""
    out = ['<?xml version="1.0"?>', '<sip-cluster name="docscale">',
           '  <proxy name="d1" server-id="1" address="127.32.0.1" port="5060" '
           'geo-location="dc1"/>',
           '  <proxy name="d2" server-id="2" address="127.32.0.2" port="5060" '
           'geo-location="dc2"/>']
    for k in range(npairs):
        a = 33 + k // 62500
        b, c = divmod(k % 62500, 250)
        ip = "127.%d.%d.%d" % (a, b, c + 1)
        out.append('  <ha-pair name="n%d" geo-location="dc%d">' % (k, 1 + k % 2))
        out.append('    <server name="s%da" address="%s" port="5060" role="primary"/>'
                   % (k, ip))
        out.append('    <server name="s%db" address="%s" port="5062" role="backup"/>'
                   % (k, ip))
        out.append('  </ha-pair>')
    out.append('</sip-cluster>')
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def m_docscale():
    """the cluster document's cost by size: sipcluster-check (parse, schema,
    semantic checks), a proxy's start (launcher check, render, module load)
    and a reload with the largest size that fits the shm given, shm per pair"""
    d = os.path.join(RUN, "docscale")
    os.makedirs(d, exist_ok=True)
    res = {"check": {}, "start": {}, "reload": {}, "shm": {}}
    for n in DOC_SIZES:
        f = os.path.join(d, "doc%d.xml" % n)
        big_doc(f, n)
        t = time.monotonic()
        subprocess.run([CHECK_CLI, f], check=True, capture_output=True, timeout=600)
        res["check"][n] = time.monotonic() - t
        log("document of %d pairs checked in %.2f s" % (n, res["check"][n]))
        if n > 10000:
            continue  # 50,000 pairs: 1.5 GB of shm, 100,000 silent members probed
        pd = os.path.join(d, "proxy%d" % n)
        kill_dir(pd)
        t = time.monotonic()
        # shm as the launcher sizes it for the document
        subprocess.run([PROXY_CLI, "start", "--cluster", f, "--name", "d1", "--dir", pd,
                        "--", "-A", "OOS_CHECK=60", "-A", "OOS_FORCE=5"],
                       check=True, capture_output=True, timeout=120)
        res["start"][n] = time.monotonic() - t
        started.append(pd)
        res["shm"][n] = shm_used(pd)
        took = []
        for _ in range(3):
            t = time.monotonic()
            kamcmd(pd, "sipcluster.reload", timeout=60)
            took.append(time.monotonic() - t)
        res["reload"][n] = statistics.median(took)
        log("proxy with %d pairs started in %.2f s, reloaded in %.2f s, shm %d"
            % (n, res["start"][n], res["reload"][n], res["shm"][n]))
        kill_dir(pd)
    ns = sorted(res["shm"])
    if len(ns) >= 2:
        res["shm_per_pair"] = (res["shm"][ns[-1]] - res["shm"][ns[0]]) / (ns[-1] - ns[0])
    return res


# ------------------------------------------------------------ report

def machine():
    cpu = "?"
    try:
        m = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read())
        cpu = m.group(1) if m else "?"
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    kv = subprocess.run(["kamailio", "-v"], capture_output=True, text=True).stdout.splitlines()
    sv = subprocess.run(["sipp", "-v"], capture_output=True, text=True).stdout.strip().splitlines()
    return ("%s, %d cores, %.0f GiB RAM, Linux %s; %s; SIPp %s" % (
        cpu, os.cpu_count(), mem, platform.release(),
        kv[0].replace("version: ", "") if kv else "kamailio ?",
        (sv[0].split()[1] if sv and len(sv[0].split()) > 1 else "?")))


def ratio(a, b):
    try:
        if b == 0:
            return "n/a"
        return "%.2f" % (a / b)
    except (TypeError, ZeroDivisionError):
        return "n/a"


def main():
    os.makedirs(RUN, exist_ok=True)
    t0 = time.monotonic()
    ours, base = System("sipcluster"), System("baseline")
    r = {}
    saved = os.path.join(RUN, "results.pickle")
    if os.environ.get("BENCH_REPORT_ONLY"):
        # write docs/benchmarks.md again from the last complete run's figures
        with open(saved, "rb") as f:
            r, sel, took = pickle.load(f)
        return report(r, sel, took)
    try:
        for name, fn in (("throughput", m_throughput), ("saturation", m_saturation),
                         ("register", m_register), ("switchover", m_switchover),
                         ("scale", m_scale)):
            if ONLY and name not in ONLY:
                continue
            for s in (ours, base):
                if os.environ.get("BENCH_SYSTEMS") and s.kind not in os.environ["BENCH_SYSTEMS"]:
                    continue
                log("-- %s: %s" % (name, s.kind))
                r[(name, s.kind)] = fn(s)
        sel = m_select()
        if not ONLY or "docscale" in ONLY:
            log("-- docscale")
            r[("docscale", "sipcluster")] = m_docscale()
    finally:
        for d in list(started):
            kill_dir(d)
    if ONLY:
        import pprint
        pprint.pprint(r)
        log("BENCH_ONLY: docs/benchmarks.md not written")
        return
    with open(saved, "wb") as f:
        pickle.dump((r, sel, time.monotonic() - t0), f)
    report(r, sel, time.monotonic() - t0)


def report(r, sel, took):
    o, b = "sipcluster", "baseline"
    T, R, S, C = (r[("throughput", o)], r[("throughput", b)]), \
        (r[("register", o)], r[("register", b)]), \
        (r[("switchover", o)], r[("switchover", b)]), (r[("scale", o)], r[("scale", b)])
    Z = (r[("saturation", o)], r[("saturation", b)])
    rows = [
        ("Max call rate with < 0.1 % failed (calls/s)", T[0]["max_rate"], T[1]["max_rate"],
         ratio(T[0]["max_rate"], T[1]["max_rate"]), ">= 0.95"),
        ("Proxy CPU s per 1,000 calls, proxy alone on 1 core (median of 3)",
         "%.3f" % Z[0]["cpu_per_1000"], "%.3f" % Z[1]["cpu_per_1000"],
         ratio(Z[0]["cpu_per_1000"], Z[1]["cpu_per_1000"]), "<= 1.00"),
        ("Saturation, proxy alone on 1 core: calls/s with < 0.1 % lost",
         Z[0]["calls_best"], Z[1]["calls_best"], ratio(Z[0]["calls_best"], Z[1]["calls_best"]),
         ">= 1.00"),
        ("Saturation, proxy alone on 1 core: REGISTER/s (relay + store)",
         Z[0]["regs_best"], Z[1]["regs_best"], ratio(Z[0]["regs_best"], Z[1]["regs_best"]),
         ">= 1.00"),
        ("... the same, sipcluster in memory only like the baseline (NO_PERSIST)",
         Z[0]["regs_mem_best"], Z[1]["regs_best"],
         ratio(Z[0]["regs_mem_best"] or 0, Z[1]["regs_best"]), ">= 1.00"),
        ("Proxy CPU s per 1,000 calls", "%.3f" % T[0]["cpu_per_1000"],
         "%.3f" % T[1]["cpu_per_1000"], ratio(T[0]["cpu_per_1000"], T[1]["cpu_per_1000"]),
         "<= 1.00"),
        ("REGISTER relay: ok / failed (%d at %d/s)" % (R[0]["ok"] + R[0]["failed"], R[0]["rate"]),
         "%d / %d" % (R[0]["ok"], R[0]["failed"]), "%d / %d" % (R[1]["ok"], R[1]["failed"]),
         ratio(R[0]["ok"], R[1]["ok"]), "0 failed"),
        ("Replication lag p50 (ms, 3 other proxies)", "%.1f" % R[0]["p50"], "%.1f" % R[1]["p50"],
         ratio(R[0]["p50"], R[1]["p50"]), ""),
        ("Replication lag p99 (ms)", "%.1f" % R[0]["p99"], "%.1f" % R[1]["p99"],
         ratio(R[0]["p99"], R[1]["p99"]), "< 50"),
        ("Switchover at 50 calls/s: failed calls", "%d of %d" % (S[0]["failed"], S[0]["total"]),
         "%d of %d" % (S[1]["failed"], S[1]["total"]), ratio(S[0]["failed"], S[1]["failed"]), "0"),
        ("Switchover: new calls on the backup after (s)", "%.2f" % S[0]["to_backup"],
         "%.2f" % S[1]["to_backup"], ratio(S[0]["to_backup"], S[1]["to_backup"]),
         "<= oos_check + oos_force = 2"),
        ("Scale: bindings held by the replica", C[0]["held"], C[1]["held"],
         ratio(C[0]["held"], C[1]["held"]), "%d" % SCALE_N),
        ("Scale: shm bytes per binding", "%.0f" % C[0]["per_binding"],
         "%.0f" % C[1]["per_binding"], ratio(C[0]["per_binding"], C[1]["per_binding"]), "<= 1.00"),
        ("Scale: DMQ sync of a restarted proxy (s)", "%.1f" % C[0]["sync_s"],
         "%.1f" % C[1]["sync_s"], ratio(C[0]["sync_s"], C[1]["sync_s"]), "< 10"),
        ("Scale: restarted proxy takes REGISTERs after (s)", "%.1f" % C[0]["gate_s"],
         "at once (no gate)", "", "< 10 (sync_wait)"),
        ("Scale: donor shared-memory errors", C[0]["shm_errors"], C[1]["shm_errors"], "", "0"),
        ("Selection, 10 pairs (ns per pick)", "%.1f" % sel[10]["pick_ns"],
         "%.1f (O(n) SWRR step)" % sel[10]["swrr_on_ns"],
         ratio(sel[10]["pick_ns"], sel[10]["swrr_on_ns"]), "O(1)"),
        ("Selection, 1,000 pairs (ns per pick)", "%.1f" % sel[1000]["pick_ns"],
         "%.1f (O(n) SWRR step)" % sel[1000]["swrr_on_ns"],
         ratio(sel[1000]["pick_ns"], sel[1000]["swrr_on_ns"]), "O(1)"),
    ]
    D = r.get(("docscale", o))
    if D:
        for n in sorted(D["check"]):
            rows.append(("Cluster document, %d pairs: sipcluster-check s (s per 1,000 pairs)" % n,
                         "%.2f (%.3f)" % (D["check"][n], D["check"][n] * 1000.0 / n),
                         "", "", "50,000 in < 2 s" if n == 50000 else "O(n)"))
        for n in sorted(D["start"]):
            rows.append(("Proxy with %d pairs: start / reload (s)" % n,
                         "%.2f / %.2f" % (D["start"][n], D["reload"][n]), "", "",
                         "< 3 / < 2" if n == 10000 else ""))
        if "shm_per_pair" in D:
            rows.append(("Cluster document: shm bytes per pair (two members)",
                         "%.0f" % D["shm_per_pair"], "", "", ""))
    head = "| Measurement | sipcluster | baseline | ratio | target |\n|---|---|---|---|---|\n"
    table = head + "".join("| %s | %s | %s | %s | %s |\n" % row for row in rows)
    steps = "".join("| %s | %d | %d | %d | %.2f %% |\n" % (k, rate, ok, lost, pct)
                    for k, res in (("sipcluster", T[0]), ("baseline", T[1]))
                    for (rate, ok, lost, pct) in res["steps"])
    sat = "".join("| %s | %s | %d | %d | %.2f %% | %.0f %% | %.0f %% | %d |\n"
                  % (k, what, rate, ok, pct, pcpu, lcpu, drops)
                  for k, res in (("sipcluster", Z[0]), ("baseline", Z[1]))
                  for what, key in (("calls", "calls"), ("REGISTER", "regs"))
                  for (rate, ok, pct, pcpu, lcpu, drops) in res[key])
    doc = """# Benchmarks: sipcluster vs. a tuned stock Kamailio cluster

Written by `make bench` (bench/bench.py) on %s, in %.0f s.

Machine: %s

Both systems run on this machine in the same run, on loopback (sipcluster on
127.30.x.y, baseline on 127.31.x.y), with %d children and %d MB shm per proxy.
SIP Servers are the stand-in (scripts/lab/sipserver.cfg: a Kamailio answering
statelessly), endpoints are SIPp. The baseline is `bench/baseline/kamailio.cfg`
(dispatcher with OPTIONS probing at the same interval, round-robin, failover
in failure_route, registrar/usrloc/dmq_usrloc with the same batch tuning,
dialog + DMQ); its header explains each choice. Ratios are sipcluster /
baseline. Raw SIPp statistics are in build/bench/ (not in git). What
limits each figure, and where a target is missed: docs/performance.md.

%s
Call throughput steps (%d s each, INVITE-200-ACK-BYE-200 through one proxy to
two HA pairs):

| system | calls/s | completed | failed or unfinished | lost |
|---|---|---|---|---|
%s
Saturation steps (%d s each; the proxy alone on CPU %s with %d children,
SIPp and the stand-ins on CPU %s; proxy CPU = its processes' CPU time over
the step's length, load CPU = how busy CPU %s was, UDP drops = datagrams
the kernel dropped for a full socket receive buffer, /proc/net/snmp; a
step that loses >= 0.1 %% is run a second time before it counts, and where
the first rate already loses the search steps down from it):

| system | load | rate/s | completed | lost | proxy CPU | load CPU | UDP drops |
|---|---|---|---|---|---|---|---|
%s
How each figure is taken:
1. Throughput: SIPp UAC (`tests/sipp/uac_rr.xml`) at stepped rates; the
   highest step with under 0.1 %% failed calls. CPU: utime+stime of every
   process of the proxy (from /proc/PID/stat) over %d calls at 500 calls/s,
   minus the proxy's idle CPU over the same time, best of 3 runs.
2. REGISTER: 4 proxies, 3,000 digest-authenticated registrations through one
   of them (SIPp `tests/sipp/reg_auth.xml`), and meanwhile 60 sampled AoRs:
   time from the 200 OK at the endpoint until `ul.lookup` finds the binding
   on each of the other 3 proxies (polled with kamcmd, ~2-5 ms resolution).
3. Switchover: 50 calls/s of 2 s each through one proxy to one HA pair; at
   6 s the backup becomes active and the primary's process is killed;
   probing every 1 s on both (oos_check = oos_force = ds_ping_interval = 1).
   Failed calls include BYEs of established calls that cannot reach the
   dead member.
4. Scale: %d bindings registered through one of 2 proxies; shm growth of the
   replica divided by the bindings it holds; then the replica is restarted
   with an empty registration database and timed until it holds them all
   again (baseline: dmq_usrloc's full sync, batches of 50; sipcluster: its
   own start-up sync, which sends a peer that holds nothing yet its
   bindings in dmq_usrloc's format, applied without being broadcast again).
5. Saturation: each proxy alone on one CPU (`taskset`, %d children),
   SIPp and the stand-ins on the other. CPU per call there: 3 runs of 8,000
   calls at 1,000/s, idle CPU subtracted, the median. Then stepped rates
   (calls from 1,000/s by 500, REGISTERs with digest authentication by the
   stand-in from 500/s by 250; one proxy, REGISTER relayed and stored on
   the 200) until a step loses 0.1 %% or more; the highest clean step
   counts. The load CPU column tells whether the generator side, not the
   proxy, ran out first.
6. Selection: `bench/bench_select` over the module's own selection code;
   sipcluster picks from a precomputed SWRR cycle, the baseline column shows
   the classic O(n) SWRR step for reference.
""" % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), took, machine(),
       CHILDREN, SHM, table, STEP, steps, SAT_STEP, PROXY_CPU, SAT_CHILDREN, LOAD_CPU,
       LOAD_CPU, sat, 4000, SCALE_N, SAT_CHILDREN)
    os.makedirs(os.path.join(TOP, "docs"), exist_ok=True)
    with open(os.path.join(TOP, "docs", "benchmarks.md"), "w") as f:
        f.write(doc)
    print()
    print(table)
    print("written to docs/benchmarks.md (%.0f s)" % took)


if __name__ == "__main__":
    main()
