"""IPv6 and dual stack (issue 10): proxy p6a on ::1 (its address in the
document) and on 127.28.0.1, the SIP Server on ::1 (every host its own
port). Endpoints of both families register through p6a (UDP over IPv6, TCP
over IPv4) and the SIP Server reaches each on its own flow, from the
proxy's socket of the endpoint's family; calls from both families go
through and end along their Record-Route set.

One proxy only: registrar's path_check_local compares a Path hop's host,
not its port, so proxies of one cluster need addresses of their own (on
::1 they would share one)."""

import os
import re
import subprocess
import time
import unittest
import uuid

from harness import (RUNS, SIPP_UAC, Cluster, Endpoint, kamcmd, reply_code,
                     send_raw, sip_msg, sipp, ul_dump, wait_until, cluster_xml)

V4 = "127.28.0.1"
P6A, S6 = 5260, 5270
ARGS = ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "UL_TIMER=1"]


def doc():
    return cluster_xml("ipv6", (
        '  <proxy name="p6a" address="::1" port="%d" geo-location="dc1"/>\n'
        '  <ha-pair name="n6" geo-location="dc1">\n'
        '    <server name="s6" address="::1" port="%d" role="primary"/>\n'
        '  </ha-pair>\n' % (P6A, S6)))


class TestDualStack(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("ipv6", doc())
        c.start_standin("s6", "[::1]", port=S6)
        c.start_proxy("p6a", ARGS + ["-A", "LISTEN_ADDR2=%s" % V4])
        assert wait_until(lambda: c.pairs("p6a")["n6"]["state"] == "in-service"
                          and c.pairs("p6a")["n6"]["SERVERS"]["s6"]["last_code"] == "200", 10)

    @classmethod
    def tearDownClass(cls):
        cls.c.stop_all()

    def deliver(self, user):
        """the SIP Server sends a MESSAGE for user through the proxy"""
        send_raw(sip_msg("MESSAGE sip:%s@sipcluster.test SIP/2.0" % user, [
            "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
            "Max-Forwards: 70", "From: <sip:srv@x>;tag=1",
            "To: <sip:%s@sipcluster.test>" % user, "Call-ID: %s" % uuid.uuid4().hex,
            "CSeq: 1 MESSAGE", "X-Standin-Forward: sip:[::1]:%d" % P6A]),
            ("::1", S6), "::1", want=0, timeout=0.1)

    def test_1_both_families_register_and_are_reached(self):
        e6 = Endpoint("::1", ("::1", P6A), "v6user")
        e4 = Endpoint("127.28.9.1", (V4, P6A), "v4user", transport="tcp")
        try:
            self.assertEqual(reply_code(e6.register(600)), 200)
            self.assertEqual(reply_code(e4.register(600)), 200)
            b = ul_dump(self.c.rundir("p6a"))
            self.assertEqual(b["v6user"][0]["Path"],
                             "<sip:[::1]:%d;lr;received=sip:[::1]:%d>" % (P6A, e6.port))
            self.assertEqual(b["v4user"][0]["Path"],
                             "<sip:[::1]:%d;lr;received=sip:127.28.9.1:%d%%3Btransport%%3Dtcp>"
                             % (P6A, e4.port))
            for ep in (e6, e4):
                self.deliver(ep.user)
                msg, src = ep.recv(5)
                self.assertIsNotNone(msg, "%s not reached" % ep.user)
                self.assertTrue(msg.startswith("MESSAGE "), msg)
                ep.answer(msg)
            # each from p6a, the proxy holding its flow, in its own family
            self.assertEqual(e4.sock.getpeername(), (V4, P6A))
        finally:
            for ep in (e6, e4):
                ep.register(0)
                ep.close()

    def test_2_calls_from_both_families(self):
        for src, target in (("::1", "[::1]:%d" % P6A), ("127.28.9.2", "%s:%d" % (V4, P6A))):
            log = os.path.join(RUNS, "ipv6", "calls-%s.log" % src.replace(":", "_"))
            rc, out = sipp(["-sf", SIPP_UAC, "-i", src, "-p", "0", "-m", "20", "-r", "10",
                            "-d", "200", "-timeout", "30", "-trace_logs", "-log_file", log,
                            target], timeout=60)
            served = re.findall(r"SERVED \S+ (\S+)", open(log).read()) if os.path.exists(log) else []
            print("\n    %s: exit %d, %d calls answered by %s" % (
                src, rc, len(served), set(served)), end="", flush=True)
            self.assertEqual(rc, 0, out[-2000:])
            self.assertEqual(len(served), 20)
        self.assertGreaterEqual(self.c.shv("s6", "byes"), 40)


if __name__ == "__main__":
    unittest.main()
