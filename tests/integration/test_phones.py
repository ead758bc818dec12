"""Real SIP phones end to end (issue 10): Debian's baresip, configured as
agents configure theirs (the proxy as outbound proxy), registers over UDP,
TCP and TLS through proxies of two data centers; the stand-in SIP Server
sends a call for a registered DN back through a proxy, as a Genesys SIP
Server does for agent-to-agent calls. Audio flows both ways, hold/resume
(re-INVITE) and hang-up work from either side, and every request to a phone
arrives on its own flow from the proxy it registered with (the phones' SIP
traces). The same through a switchover of the SIP Server pair mid-call.

  dc1: proxy p1 (127.27.1.1), pair n1 = a1 / b1 (UDP)
  dc2: proxy p2 (127.27.2.1), pair n2 = a2 (TLS)
  proxies reach each other (DMQ, Path hops) over TLS
  alice: UDP via p1, bob: TCP via p2, carol: TLS via p1"""

import os
import re
import time
import unittest

from harness import (RUNS, Cluster, kamcmd, make_pki, ul_dump, wait_until,
                     cluster_xml, pair_xml, proxy_xml)
from phones import Phone

B = "127.27"
P1, P2 = B + ".1.1", B + ".2.1"
A1, B1, A2 = B + ".1.11", B + ".1.12", B + ".2.11"
PHONES = {"alice": (B + ".9.1", "udp", P1), "bob": (B + ".9.2", "tcp", P2),
          "carol": (B + ".9.3", "tls", P1)}
ARGS = ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "SERVER_TIMEOUT=1500",
        "-A", "UL_TIMER=1"]


def doc():
    body = proxy_xml("p1", P1, "dc1", port=5061, transport="tls")
    body += proxy_xml("p2", P2, "dc2", port=5061, transport="tls")
    body += pair_xml("n1", "dc1", [("a1", A1, "primary"), ("b1", B1, "backup")])
    body += pair_xml("n2", "dc2", [("a2", A2, "primary", 5061, "tls")])
    return cluster_xml("phones", body).replace(
        '<sip-cluster name="phones">', '<sip-cluster name="phones" secret="phones-secret-0123456789">')


def received_requests(phone):
    """(transport, source, destination, method) of every request the phone
    received, from its SIP trace (the phone's own end of a flow: where its
    REGISTERs come from)"""
    text = re.sub(r"\x1b\[[0-9;]*m", "", phone.log_text())
    msgs = re.findall(r"#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n(\S+) ", text)
    own = {src for tp, src, dst, first in msgs if first == "REGISTER"}
    return [(tp, src, dst, first) for tp, src, dst, first in msgs
            if dst in own and not first.startswith("SIP/2.0")]


class TestRealPhones(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("phones", doc())
        pki = os.path.join(c.dir, "pki")
        cls.tls = make_pki(pki, {"p1": P1, "p2": P2, "a2": A2})
        cls.ca = os.path.join(pki, "ca.pem")
        c.start_standin("a1", A1, extra=["-A", "PARTNER_ALIAS=%s:5060" % B1])
        c.start_standin("b1", B1, backup=True, extra=["-A", "PARTNER_ALIAS=%s:5060" % A1])
        c.start_standin("a2", A2, tls_cfg=cls.tls["a2"])
        # agent-to-agent calls go back through the proxy of the server's
        # data center, over the transport the document names for it
        for n in ("a1", "b1"):
            kamcmd(c.rundir(n), "pv.shvSet", "a2a", "str", "sip:%s:5060" % P1)
        kamcmd(c.rundir("a2"), "pv.shvSet", "a2a", "str", "sip:%s:5061;transport=tls" % P2)
        for p in ("p1", "p2"):
            c.start_proxy(p, ARGS, tls_cfg=cls.tls[p])
        assert wait_until(lambda: all(
            x["state"] == "in-service" for x in c.pairs("p1").values()), 10), c.pairs("p1")
        # DMQ over TLS: each proxy sees the other
        assert wait_until(lambda: all(
            len(re.findall(r"status: active", kamcmd(c.rundir(n), "dmq.list_nodes").stdout)) >= 2
            for n in ("p1", "p2")), 20, 0.2)
        cls.phones = {}
        base = 21000
        for name, (ip, tp, proxy) in PHONES.items():
            port = 5061 if tp == "tls" else 5060
            ph = Phone(c.dir, name, ip, name, (proxy, port), transport=tp,
                       rtp_base=base, cafile=cls.ca if tp == "tls" else None)
            base += 100
            cls.phones[name] = ph.start()
        for ph in cls.phones.values():
            assert ph.registered(10), "%s did not register" % ph.name
        # every binding replicated to both proxies
        assert wait_until(lambda: all(
            set(PHONES) <= set(ul_dump(c.rundir(p))) for p in ("p1", "p2")), 5)

    @classmethod
    def tearDownClass(cls):
        for ph in getattr(cls, "phones", {}).values():
            ph.stop()
        cls.c.stop_all()

    def call(self, caller, callee, holder, hanger):
        a, b = self.phones[caller], self.phones[callee]
        na, nb = a.n_events(), b.n_events()
        sent0 = {n: len(p.rtp_packets()) for n, p in self.phones.items()}
        a.dial("sip:%s@sipcluster.test" % callee)
        self.assertIsNotNone(b.wait_event("CALL_ESTABLISHED", 10, nb)[1], "callee")
        self.assertIsNotNone(a.wait_event("CALL_ESTABLISHED", 10, na)[1], "caller")
        time.sleep(1.5)
        h = self.phones[holder]
        h.hold()
        time.sleep(1.5)
        h.resume()
        time.sleep(1.5)
        self.phones[hanger].hangup()
        other = b if hanger == caller else a
        n0 = na if other is a else nb
        self.assertIsNotNone(other.wait_event("CALL_CLOSED", 8, n0)[1],
                             "%s did not see the hang-up" % other.name)
        time.sleep(0.5)
        for p in (a, b):
            stats = p.rtp_packets()
            self.assertGreater(len(stats), sent0[p.name], "%s: no RTP summary" % p.name)
            sent, rcvd = stats[-1]
            print("\n    %s: %d RTP packets sent, %d received" % (p.name, sent, rcvd),
                  end="", flush=True)
            self.assertGreater(sent, 100)
            self.assertGreater(rcvd, 100)

    def assert_own_flow(self):
        """every request to a phone came from its proxy, on its own flow"""
        for name, (ip, tp, proxy) in PHONES.items():
            ph = self.phones[name]
            reqs = [r for r in received_requests(ph) if r[3] not in ("OPTIONS",)]
            self.assertTrue(reqs, "%s received no request" % name)
            port = 5061 if tp == "tls" else 5060
            srcs = {(r[0], r[1]) for r in reqs}
            self.assertEqual(srcs, {(tp.upper(), "%s:%d" % (proxy, port))},
                             "%s: requests from %s" % (name, reqs))
            # one flow: over TCP/TLS a single connection
            self.assertEqual(len({r[2] for r in reqs}), 1, reqs)

    def test_1_udp_agent_calls_tcp_agent_in_other_dc(self):
        self.call("alice", "bob", holder="alice", hanger="bob")
        self.assertGreaterEqual(self.c.shv("a1", "a2a_calls"), 1)

    def test_2_tcp_agent_calls_tls_agent(self):
        self.call("bob", "carol", holder="carol", hanger="bob")
        self.assertGreaterEqual(self.c.shv("a2", "a2a_calls"), 1)

    def test_3_switchover_mid_call(self):
        a, b = self.phones["alice"], self.phones["bob"]
        na, nb = a.n_events(), b.n_events()
        a.dial("sip:bob@sipcluster.test")
        self.assertIsNotNone(b.wait_event("CALL_ESTABLISHED", 10, nb)[1])
        self.assertIsNotNone(a.wait_event("CALL_ESTABLISHED", 10, na)[1])
        self.assertEqual(self.c.pairs("p1")["n1"]["active"], "a1")
        # the pair switches over: b1 takes over, a1 dies
        self.c.set_shv("b1", "active", 1)
        self.c.stop("a1")
        try:
            self.assertTrue(wait_until(lambda: all(
                self.c.pairs(p)["n1"]["active"] == "b1" for p in ("p1", "p2")), 8))
            b1_before = self.c.log("b1").count("got INVITE")
            # bob puts alice on hold and back (re-INVITEs through b1), then
            # alice hangs up (BYE through b1)
            b.hold()
            time.sleep(1.5)
            b.resume()
            time.sleep(1.5)
            a.hangup()
            self.assertIsNotNone(b.wait_event("CALL_CLOSED", 8, nb)[1])
            time.sleep(0.5)
            # audio went on through the switchover (media is end to end)
            for p in (a, b):
                sent, rcvd = p.rtp_packets()[-1]
                self.assertGreater(sent, 100)
                self.assertGreater(rcvd, 100)
            log = self.c.log("b1")
            self.assertGreaterEqual(log.count("got INVITE") - b1_before, 2)
            self.assertIn("got BYE", log)
        finally:
            self.c.start_standin("a1", A1, extra=["-A", "PARTNER_ALIAS=%s:5060" % B1])
            kamcmd(self.c.rundir("a1"), "pv.shvSet", "a2a", "str", "sip:%s:5060" % P1)
            self.c.set_shv("b1", "active", 0)
            self.assertTrue(wait_until(lambda: self.c.pairs("p1")["n1"]["active"] == "a1", 8))

    def test_9_every_request_on_its_own_flow(self):
        # after the calls above (alphabetical order: runs last)
        self.assert_own_flow()


if __name__ == "__main__":
    unittest.main()
