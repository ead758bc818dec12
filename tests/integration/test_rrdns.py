"""rr-host end to end with real parts (issue 21, item 3): a real DNS server
(Debian's dnsmasq, scripts/lab/dns) on a loopback address serves the data
center's rr-host as SRV and A records for its two proxies, exactly as
scripts/lab/lab does for the example document. A real softphone (baresip,
asking only that DNS server) places a call through proxy dc1-a, which
Record-Routes with the rr-host; dc1-a is then killed (SIGKILL) mid-call, and
the phone's BYE, sent where DNS says (RFC 3263: SRV, then the next target
when the first does not answer), completes through the survivor dc1-b.

  dc1: proxies dc1-a (127.37.1.1, SRV priority 10: tried first) and dc1-b
       (127.37.1.2, priority 20), rr-host dc1.sipcluster.test
  pair n1: a1 (127.37.1.11), a stand-in that answers the call with SDP
  DNS: 127.37.0.53:53; phone alice: 127.37.9.1"""

import os
import re
import subprocess
import time
import unittest

from harness import TOP, Cluster, kamcmd, wait_until, cluster_xml, pair_xml
from phones import Phone

B = "127.37"
PROXIES = {"dc1-a": B + ".1.1", "dc1-b": B + ".1.2"}
RRH = "dc1.sipcluster.test"
A1 = B + ".1.11"
DNS = B + ".0.53"
PHONE = B + ".9.1"
ARGS = ["-A", "NO_PIKE", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1",
        "-A", "SERVER_TIMEOUT=1500", "-A", "UL_TIMER=1"]
DNS_SCRIPT = os.path.join(TOP, "scripts", "lab", "dns")


def doc():
    body = ""
    for i, (n, a) in enumerate(PROXIES.items()):
        body += ('  <proxy name="%s" server-id="%d" address="%s" geo-location="dc1" '
                 'rr-host="%s"/>\n' % (n, i + 1, a, RRH))
    body += pair_xml("n1", "dc1", [("a1", A1, "primary")])
    return cluster_xml("rrdns", body).replace(
        '<sip-cluster name="rrdns">',
        '<sip-cluster name="rrdns" secret="rr-dns-test-secret-0123456789">')


def trace(phone):
    """(direction, peer, first line) of the phone's SIP trace"""
    text = re.sub(r"\x1b\[[0-9;]*m", "", phone.log_text())
    out = []
    for tp, src, dst, first in re.findall(r"#\n(UDP|TCP|TLS) (\S+) -> (\S+)\n([^\r\n]+)", text):
        mine = src.startswith(PHONE + ":")
        out.append(("out" if mine else "in", dst if mine else src, first))
    return out


class TestRrHostThroughRealDns(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("rrdns", doc())
        cls.dnsdir = os.path.join(c.dir, "dns")
        p = subprocess.run([DNS_SCRIPT, "start", "--cluster", c.file, "--dir", cls.dnsdir,
                            "--addr", DNS, "--first", "dc1-a", "--transports", "udp"],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, p.stdout + p.stderr
        c.start_standin("a1", A1, extra=["-A", "ANSWER_SDP"])
        for n in PROXIES:
            c.start_proxy(n, ARGS)
        assert wait_until(lambda: all(
            x["state"] == "in-service" for x in c.pairs("dc1-a").values()), 10)
        # the phone has no outbound proxy: it finds its registrar
        # (sipcluster.test), the proxy for its call and every in-dialog
        # request's next hop (the Record-Route host) by DNS; dc1-a first
        cls.alice = Phone(c.dir, "alice", PHONE, "alice", None,
                          rtp_base=23000, dns="%s:53" % DNS).start()
        assert cls.alice.registered(10), "alice did not register"

    @classmethod
    def tearDownClass(cls):
        cls.alice.stop()
        subprocess.run([DNS_SCRIPT, "stop", "--dir", cls.dnsdir], timeout=10)
        cls.c.stop_all()

    def byes(self):
        out = kamcmd(self.c.rundir("a1"), "pv.shvGet", "byes").stdout
        m = re.search(r"value:\s*(\d+)", out)
        return int(m.group(1)) if m else -1

    def test_bye_reaches_a_survivor_through_dns_after_sigkill(self):
        a = self.alice
        n0 = a.n_events()
        a.dial("sip:5000@sipcluster.test")
        self.assertIsNotNone(a.wait_event("CALL_ESTABLISHED", 10, n0)[1], "no call")
        rr = [l for l in a.log_text().splitlines() if l.lower().startswith("record-route:")]
        self.assertTrue(any(RRH in l and ";sch=1" in l for l in rr), rr)
        time.sleep(1.0)
        byes0 = self.byes()
        # the proxy that took (and recorded) the call dies
        pid = int(open(os.path.join(self.c.rundir("dc1-a"), "kamailio.pid")).read())
        os.killpg(pid, 9)
        self.assertTrue(wait_until(lambda: subprocess.run(
            ["kill", "-0", str(pid)], capture_output=True).returncode != 0, 5))
        t0 = time.monotonic()
        n1 = a.n_events()
        a.hangup()
        self.assertIsNotNone(a.wait_event("CALL_CLOSED", 10, n1)[1])
        # the stand-in SIP Server gets the BYE through the survivor: over
        # UDP the phone moves to the next SRV target when the transaction
        # to the first one times out (64*T1 = 32 s, RFC 3263 4.3)
        self.assertTrue(wait_until(lambda: self.byes() == byes0 + 1, 45, 0.2), self.byes())
        took = time.monotonic() - t0
        byes = [t for t in trace(a) if t[0] == "out" and t[2].startswith("BYE ")]
        print("\n    BYE sent to %s; completed through dc1-b %.1f s after the hang-up"
              % (sorted({t[1] for t in byes}), took), end=" ", flush=True)
        self.assertEqual(byes[0][1], PROXIES["dc1-a"] + ":5060")  # SRV priority 10
        self.assertEqual(byes[-1][1], PROXIES["dc1-b"] + ":5060")
        # and the phone got the 200 for its BYE from dc1-b
        text = re.sub(r"\x1b\[[0-9;]*m", "", a.log_text())
        self.assertRegex(text, r"#\n\w+ %s:5060 -> %s:\d+\nSIP/2\.0 200 [^#]*?CSeq: \d+ BYE"
                         % (re.escape(PROXIES["dc1-b"]), re.escape(PHONE)))
        # the phone found dc1-b by asking the DNS server for the rr-host
        log = open(os.path.join(self.dnsdir, "dnsmasq.log")).read()
        self.assertRegex(log, r"query\[SRV\] _sip\._udp\.dc1\.sipcluster\.test ")


if __name__ == "__main__":
    unittest.main()
