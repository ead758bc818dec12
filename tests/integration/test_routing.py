"""Geo-aware routing through real proxies to real stand-in SIP Servers:
SWRR distribution, call pinning through any proxy, switchover mid-call,
failover inside the transaction under load, cross-data-center failover,
X-Genesys-Route, overload control. Timers at 1 s."""

import os
import re
import socket
import subprocess
import time
import unittest

from harness import (RUNS, SIPP_UAC, Call, Cluster, kamcmd, parse_kamcmd, reply_code,
                     shm_used, sip_request, sipp, wait_until, cluster_xml,
                     pair_xml, proxy_xml)

B = "127.23"
P1, P2, P3, P4 = (B + ".0.1", 5060), (B + ".0.2", 5060), (B + ".0.3", 5060), (B + ".0.4", 5060)
SERVERS = {  # name: (address, role)
    "a1": (B + ".1.11", "primary"), "b1": (B + ".1.12", "backup"),
    "a2": (B + ".2.11", "primary"), "b2": (B + ".2.12", "backup"),
    "a3": (B + ".3.11", "primary"),
}
# SIPp drives hundreds of calls/s from one address: the per-source rate
# limit (pike) of the shipped cfg is off for these proxies
TIMERS = ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "SERVER_TIMEOUT=1000",
          "-A", "NO_PIKE"]


def doc(w1=1, w2=1, n1_admin=None):
    body = (proxy_xml("p1", P1[0], "dc1") + proxy_xml("p2", P2[0], "dc1")
            + proxy_xml("p3", P3[0], "dc2") + proxy_xml("p4", P4[0], "dc1"))
    extra = {"admin": n1_admin} if n1_admin else {}
    body += pair_xml("n1", "dc1", [("a1", SERVERS["a1"][0], "primary"),
                                   ("b1", SERVERS["b1"][0], "backup")], weight=w1, **extra)
    body += pair_xml("n2", "dc1", [("a2", SERVERS["a2"][0], "primary"),
                                   ("b2", SERVERS["b2"][0], "backup")], weight=w2)
    body += pair_xml("n3", "dc2", [("a3", SERVERS["a3"][0], "primary")])
    # a gateway the SIP Servers reach through the proxies (X-Genesys-Route
    # is honoured towards listed hops only)
    body += '  <sbc name="gw1" address="%s" port="5080"/>\n' % (B + ".9.7")
    return cluster_xml("routing", body)


class TestRouting(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = Cluster("routing", doc())
        for name, (addr, role) in SERVERS.items():
            cls.c.start_standin(name, addr, backup=(role == "backup"))
        cls.c.start_proxy("p1", TIMERS)
        cls.c.start_proxy("p2", TIMERS + ["-A", "CROSS_DC_FAILOVER=0"])
        cls.c.start_proxy("p3", TIMERS)
        cls.c.start_proxy("p4", TIMERS + ["-A", "OVERLOAD_RATE=10"])

    @classmethod
    def tearDownClass(cls):
        cls.c.stop_all()

    def setUp(self):
        # every stand-in running in its configured role, all pairs in service
        c = self.c
        for name, (addr, role) in SERVERS.items():
            pidf = os.path.join(c.rundir(name), "kamailio.pid")
            if not os.path.exists(pidf):
                c.start_standin(name, addr, backup=(role == "backup"))
            c.set_shv(name, "active", 1 if role == "primary" else 0)
            c.set_shv(name, "backup_code", 0)
            c.set_shv(name, "invite_code", 200)
        c.write(doc())
        for p in ("p1", "p2", "p3", "p4"):
            kamcmd(c.rundir(p), "sipcluster.reload")

        def ready():
            for p in ("p1", "p2"):
                pairs = c.pairs(p)
                for n, a in (("n1", "a1"), ("n2", "a2"), ("n3", "a3")):
                    if pairs[n]["state"] != "in-service" or pairs[n]["active"] != a:
                        return False
            return True
        self.assertTrue(wait_until(ready, 10), self.c.pairs("p1"))

    def counts(self, var="invites"):
        return {n: self.c.shv(n, var) for n in SERVERS}

    def delta(self, before, after):
        return {n: after[n] - before[n] for n in before}

    def run_calls(self, n, rate, proxy=P1, src=B + ".9.1", duration=0, tag="calls"):
        log = os.path.join(RUNS, "routing", "%s.log" % tag)
        if os.path.exists(log):
            os.unlink(log)
        rc, out = sipp(["-sf", SIPP_UAC, "-i", src, "-p", "0", "-m", n, "-r", rate,
                        "-d", duration, "-timeout", "120", "-trace_logs", "-log_file", log,
                        "%s:%d" % proxy], timeout=150)
        served = []
        if os.path.exists(log):
            served = re.findall(r"SERVED \S+ (\S+)", open(log).read())
        return rc, served, out

    def test_1_distribution_equal_weights(self):
        before = self.counts()
        rc, served, out = self.run_calls(1000, 300, tag="w11")
        self.assertEqual(rc, 0, out[-2000:])
        d = self.delta(before, self.counts())
        total = d["a1"] + d["a2"]
        self.assertEqual(total, 1000, d)
        share = 100.0 * d["a1"] / total
        print("\n    1:1 -> a1 %.1f %% / a2 %.1f %%" % (share, 100 - share), end=" ", flush=True)
        self.assertLessEqual(abs(share - 50), 5)
        self.assertEqual(d["b1"] + d["b2"] + d["a3"], 0)
        # SWRR is exact over a cycle
        self.assertEqual(d["a1"], 500)
        self.assertEqual(len(served), 1000)

    def test_2_distribution_3_to_1(self):
        self.c.write(doc(w1=3, w2=1))
        kamcmd(self.c.rundir("p1"), "sipcluster.reload")
        before = self.counts()
        calls0 = {n: int(p["calls"]) for n, p in self.c.pairs("p1").items()}
        rc, served, out = self.run_calls(1000, 300, tag="w31")
        self.assertEqual(rc, 0, out[-2000:])
        d = self.delta(before, self.counts())
        total = d["a1"] + d["a2"]
        self.assertEqual(total, 1000, d)
        share = 100.0 * d["a1"] / total
        print("\n    3:1 -> a1 %.1f %% / a2 %.1f %%" % (share, 100 - share), end=" ", flush=True)
        self.assertLessEqual(abs(share - 75), 5)
        # the RPC counts calls per pair
        calls = {n: int(p["calls"]) - calls0[n] for n, p in self.c.pairs("p1").items()}
        self.assertEqual(calls["n1"], d["a1"])
        self.assertEqual(calls["n2"], d["a2"])

    def test_3_bye_through_another_proxy_reaches_same_member(self):
        for i in range(4):
            call = Call(B + ".9.2")
            r = call.invite(P1)
            self.assertEqual(reply_code(r), 200, r)
            srv = call.served_by(r)
            self.assertIn(srv, ("a1", "a2"))
            self.assertTrue(any(";scp=n%s" % srv[1] in x for x in call.routes), call.routes)
            call.ack(P2)
            r = call.bye(P2)
            self.assertEqual(reply_code(r), 200, r)
            self.assertEqual(call.served_by(r), srv)
            call.close()

    def test_4_switchover_mid_call(self):
        call = Call(B + ".9.3")
        r = call.invite(P1)
        self.assertEqual(reply_code(r), 200, r)
        srv = call.served_by(r)
        partner = "b" + srv[1]
        call.ack(P1)
        # the active member dies, its partner takes over
        self.c.set_shv(partner, "active", 1)
        self.c.stop(srv)
        self.assertTrue(wait_until(
            lambda: self.c.pairs("p1")["n" + srv[1]]["active"] == partner, 6))
        before = self.c.stats("p1")["dialog_retargeted"]
        r = call.bye(P1)
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), partner)
        self.assertEqual(self.c.stats("p1")["dialog_retargeted"], before + 1)
        call.close()

    def test_5_kill_active_member_under_load_no_failed_call(self):
        st0 = self.c.stats("p1")
        log = os.path.join(RUNS, "routing", "load.log")
        if os.path.exists(log):
            os.unlink(log)
        proc = subprocess.Popen(
            ["sipp", "-nostdin", "-sf", SIPP_UAC, "-i", B + ".9.4", "-p", "0",
             "-m", "400", "-r", "20", "-d", "1000", "-timeout", "90",
             "-trace_logs", "-log_file", log, "%s:%d" % P1],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(6)
        # switchover: the backup becomes the primary, the old primary dies
        self.c.set_shv("b1", "active", 1)
        self.c.stop("a1")
        out, _ = proc.communicate(timeout=120)
        st1 = self.c.stats("p1")
        served = re.findall(r"SERVED \S+ (\S+)", open(log).read())
        failovers = st1["failovers"] - st0["failovers"]
        retargeted = st1["dialog_retargeted"] - st0["dialog_retargeted"]
        print("\n    400 calls at 20/s, a1 killed at 6 s: exit %d, %d answered, "
              "%d failovers, %d in-dialog re-targets, served %s"
              % (proc.returncode, len(served), failovers, retargeted,
                 {s: served.count(s) for s in sorted(set(served))}), end=" ", flush=True)
        self.assertEqual(proc.returncode, 0, out[-3000:])
        self.assertEqual(len(served), 400)
        self.assertGreater(served.count("b1"), 0)
        self.assertEqual(self.c.pairs("p1")["n1"]["active"], "b1")

    def test_6_cross_data_center(self):
        # all local pairs down
        for s in ("a1", "a2"):
            self.c.set_shv(s, "active", 0)
        self.assertTrue(wait_until(lambda: all(
            self.c.pairs("p1")[n]["state"] == "out-of-service" for n in ("n1", "n2")), 6))
        self.assertTrue(wait_until(lambda: all(
            self.c.pairs("p2")[n]["state"] == "out-of-service" for n in ("n1", "n2")), 6))
        st0 = self.c.stats("p1")
        call = Call(B + ".9.5")
        r = call.invite(P1)
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), "a3")
        call.ack(P1)
        self.assertEqual(reply_code(call.bye(P1)), 200)
        call.close()
        self.assertEqual(self.c.stats("p1")["cross_dc_routed"], st0["cross_dc_routed"] + 1)
        # p2 runs with cross_dc_failover off: 503 + Retry-After + a reason
        call = Call(B + ".9.5")
        r = call.invite(P2)
        call.close()
        self.assertEqual(reply_code(r), 503, r)
        self.assertRegex(r, r"(?m)^Retry-After: \d+")
        self.assertIn("no SIP Server in service in dc1 (cross-data-center failover off)", r)
        # and with nothing in service anywhere p1 answers 503 too
        self.c.set_shv("a3", "active", 0)
        self.assertTrue(wait_until(
            lambda: self.c.pairs("p1")["n3"]["state"] == "out-of-service", 6))
        r = sip_request("MESSAGE", "sip:x@%s:5060" % P1[0], B + ".9.6")
        self.assertEqual(reply_code(r), 503, r)
        self.assertIn("nor in any other data center", r)
        self.assertRegex(r, r"(?m)^Retry-After: \d+")
        self.c.set_shv("a3", "active", 1)

    def test_7_x_genesys_route(self):
        # a next hop that records what it receives
        hop = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        hop.bind((B + ".9.7", 5080))
        hop.settimeout(3)
        try:
            # from a SIP Server (a1 forwards a request it "originates")
            sip_request("MESSAGE", "sip:x@%s:5060" % SERVERS["a1"][0], B + ".9.8",
                        dst=(SERVERS["a1"][0], 5060),
                        headers=["X-Standin-Forward: sip:%s:5060" % P1[0],
                                 "X-Genesys-Route: sip:%s:5080" % (B + ".9.7")],
                        want_reply=False)
            data, src = hop.recvfrom(65535)
            msg = data.decode()
            self.assertTrue(msg.startswith("MESSAGE "), msg)
            self.assertEqual(src[0], P1[0])
            self.assertNotIn("X-Genesys-Route", msg)
            # from an endpoint: ignored (goes to a SIP Server) and stripped
            x0 = sum(self.c.shv(n, "xgr_seen") for n in ("a1", "a2"))
            o0 = sum(self.c.shv(n, "other") for n in ("a1", "a2"))
            r = sip_request("MESSAGE", "sip:x@%s:5060" % P1[0], B + ".9.9",
                            headers=["X-Genesys-Route: sip:%s:5080" % (B + ".9.7"),
                                     "X-Test: endpoint-xgr"])
            self.assertEqual(reply_code(r), 200, r)
            self.assertRegex(r, r"X-Served-By: a[12]")
            # nothing of the endpoint's request reached the hop (the first
            # MESSAGE, unanswered, may still be retransmitted)
            hop.settimeout(0.5)
            try:
                while True:
                    data, _ = hop.recvfrom(65535)
                    self.assertNotIn("endpoint-xgr", data.decode())
            except socket.timeout:
                pass
            self.assertEqual(sum(self.c.shv(n, "xgr_seen") for n in ("a1", "a2")), x0)
            self.assertEqual(sum(self.c.shv(n, "other") for n in ("a1", "a2")), o0 + 1)
            st = self.c.stats("p1")
            self.assertGreaterEqual(st["xgr_used"], 1)
            self.assertGreaterEqual(st["xgr_dropped"], 1)
        finally:
            hop.close()

    def test_8_no_open_relay(self):
        # an endpoint's in-dialog request (To tag, our Route) aimed at a
        # host that is not a cluster SIP Server
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((B + ".9.10", 0))
        ip, port = s.getsockname()
        msg = ("BYE sip:victim@%s:5090 SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKx1;rport\r\n"
               "Max-Forwards: 70\r\nRoute: <sip:%s:5060;lr>\r\nFrom: <sip:a@b>;tag=1\r\n"
               "To: <sip:victim@c>;tag=2\r\nCall-ID: relay-test\r\nCSeq: 2 BYE\r\n"
               "Content-Length: 0\r\n\r\n" % (B + ".9.20", ip, port, P1[0]))
        s.sendto(msg.encode(), P1)
        s.settimeout(3)
        data, _ = s.recvfrom(65535)
        s.close()
        self.assertIn(reply_code(data.decode()), (403, 404), data)

    def test_91_which_and_check(self):
        p1 = self.c.rundir("p1")
        for i in range(4):
            w = parse_kamcmd(kamcmd(p1, "sipcluster.which", "new").stdout)
            call = Call(B + ".9.13")
            r = call.invite(P1)
            self.assertEqual(reply_code(r), 200, r)
            # the next call goes where sipcluster.which said
            self.assertEqual(call.served_by(r), w["member"])
            self.assertEqual(w["pair"], "n" + w["member"][1])
            self.assertEqual(w["data_center"], "local")
            call.ack(P1)
            call.bye(P1)
            call.close()
        ok = kamcmd(p1, "sipcluster.check").stdout
        self.assertIn("ok: cluster 'routing'", ok)
        bad = os.path.join(self.c.dir, "bad.xml")
        with open(bad, "w") as f:
            f.write(doc().replace('name="n2"', 'name="n1"'))
        r = kamcmd(p1, "sipcluster.check", bad, check=False)
        self.assertIn("duplicate name 'n1'", r.stdout + r.stderr)
        self.assertIn("%s:" % bad, r.stdout + r.stderr)
        # nothing was loaded
        self.assertEqual(set(self.c.pairs("p1")), {"n1", "n2", "n3"})

    def test_92_drain_in_the_document(self):
        # the operator drains n1 in the document: after a reload (and after
        # a restart) new calls avoid it, calls pinned to it go on
        call = None
        for i in range(4):  # a call on n1
            c = Call(B + ".9.14")
            r = c.invite(P1)
            self.assertEqual(reply_code(r), 200, r)
            c.ack(P1)
            if c.served_by(r) == "a1":
                call = c
                break
            c.bye(P1)
            c.close()
        self.assertIsNotNone(call)
        self.c.write(doc(n1_admin="out-of-service"))
        kamcmd(self.c.rundir("p1"), "sipcluster.reload")
        self.assertEqual(self.c.pairs("p1")["n1"]["admin"], "out-of-service")
        self.assertEqual(self.c.pairs("p1")["n1"]["state"], "out-of-service")
        before = self.counts()
        for i in range(6):
            c = Call(B + ".9.15")
            r = c.invite(P1)
            self.assertEqual(c.served_by(r), "a2")
            c.ack(P1)
            c.bye(P1)
            c.close()
        self.assertEqual(self.delta(before, self.counts())["a1"], 0)
        r = call.bye(P1)
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), "a1")
        call.close()
        # a restarted proxy starts drained too (the document says so)
        self.c.stop("p3")
        self.c.start_proxy("p3", TIMERS)
        self.assertEqual(self.c.pairs("p3")["n1"]["admin"], "out-of-service")

    def test_93_reloads_and_state_changes_under_load(self):
        # requests read the topology and the schedules without a lock while
        # reloads and pair state changes replace them: no call fails or
        # goes astray, and every replaced version is freed afterwards
        p1 = self.c.rundir("p1")
        t0 = self.c.topo("p1")
        freed0 = int(t0["retired_freed"])
        shm0 = shm_used(p1)
        log = os.path.join(RUNS, "routing", "churn.log")
        if os.path.exists(log):
            os.unlink(log)
        before = self.counts()
        proc = subprocess.Popen(
            ["sipp", "-nostdin", "-sf", SIPP_UAC, "-i", B + ".9.16", "-p", "0",
             "-m", "1500", "-r", "150", "-d", "100", "-timeout", "90",
             "-trace_logs", "-log_file", log, "%s:%d" % P1],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reloads = flips = 0
        deadline = time.time() + 60
        while proc.poll() is None and time.time() < deadline and reloads < 200:
            self.c.write(doc(w1=1 + reloads % 3))
            kamcmd(p1, "sipcluster.reload")
            reloads += 1
            kamcmd(p1, "sipcluster.set_state", "n2",
                   "out-of-service" if flips % 2 == 0 else "auto")
            flips += 1
        if flips % 2:
            kamcmd(p1, "sipcluster.set_state", "n2", "auto")
            flips += 1
        out, _ = proc.communicate(timeout=120)
        served = re.findall(r"SERVED \S+ (\S+)", open(log).read())
        d = self.delta(before, self.counts())
        print("\n    1500 calls at 150/s with %d reloads and %d drains/undrains: "
              "exit %d, served %s" % (reloads, flips, proc.returncode,
                                      {s: served.count(s) for s in sorted(set(served))}),
              end=" ", flush=True)
        self.assertEqual(proc.returncode, 0, out[-3000:])
        self.assertEqual(len(served), 1500)
        self.assertGreater(reloads, 10)
        # only the local active members took calls
        self.assertEqual(d["a1"] + d["a2"], 1500, d)
        self.assertEqual(d["b1"] + d["b2"] + d["a3"], 0, d)
        # every reload retired a view and a topology, every drain a view
        # (the undrain after a reload changes nothing: the reload already
        # applied the document's admin state): all freed once the last
        # request let go
        def reclaimed():
            t = self.c.topo("p1")
            return (int(t["retired_pending"]) == 0
                    and int(t["retired_freed"]) - freed0 >= 2 * reloads + flips // 2)
        self.assertTrue(wait_until(reclaimed, 10), self.c.topo("p1"))
        # and the memory with them (transactions gone after tm's wait timer)
        self.assertTrue(wait_until(lambda: shm_used(p1) - shm0 < 256 * 1024, 20),
                        (shm0, shm_used(p1)))

    def test_9_overload_control(self):
        # p4 allows 10 new INVITEs per second: 5/s passes, 40/s does not
        rc, served, out = self.run_calls(15, 5, proxy=P4, src=B + ".9.11", tag="ov-low")
        self.assertEqual(rc, 0, out[-1500:])
        self.assertEqual(len(served), 15)
        rc, served, out = self.run_calls(120, 40, proxy=P4, src=B + ".9.12", tag="ov-high")
        print("\n    40 calls/s against a limit of 10/s: %d of 120 answered"
              % len(served), end=" ", flush=True)
        self.assertNotEqual(rc, 0)
        self.assertLess(len(served), 80)
        self.assertGreater(len(served), 15)
        self.assertIn("503", out)


if __name__ == "__main__":
    unittest.main()
