"""Active out-of-service detection against real stand-in SIP Servers, with
oos_check = oos_force = 1 s."""

import os
import re
import time
import unittest

from harness import (Cluster, kamcmd, reply_code, sip_request, wait_until,
                     cluster_xml, pair_xml, proxy_xml)

B = "127.22"
PX = B + ".0.1"
CHECK, FORCE = 1, 1


def doc(with_n2=True, with_n3=False):
    body = proxy_xml("px", PX, "dc1") + proxy_xml("py", B + ".0.2", "dc2")
    body += pair_xml("n1", "dc1", [("a", B + ".1.11", "primary"), ("b", B + ".1.12", "backup")])
    if with_n2:
        body += pair_xml("n2", "dc1", [("s", B + ".2.11", "primary")])
    if with_n3:
        body += pair_xml("n3", "dc2", [("t", B + ".3.11", "primary"), ("u", B + ".3.12", "backup")])
    return cluster_xml("health", body)


class TestHealth(unittest.TestCase):

    def setUp(self):
        self.c = Cluster("health", doc())
        self.c.start_standin("a", B + ".1.11")
        self.c.start_standin("b", B + ".1.12", backup=True)
        self.c.start_proxy("px", ["-A", "OOS_CHECK=%d" % CHECK, "-A", "OOS_FORCE=%d" % FORCE])
        self.assertTrue(wait_until(lambda: self.n1()["SERVERS"]["a"]["last_code"] == "200", 5))

    def tearDown(self):
        self.c.stop_all()

    def n1(self):
        return self.c.pairs("px")["n1"]

    def test_primary_answers_backup_gets_no_options(self):
        a0 = self.c.shv("a", "options_rx")
        time.sleep(4.2)
        a1 = self.c.shv("a", "options_rx")
        # one ping per oos_check (give or take the edges)
        self.assertGreaterEqual(a1 - a0, 3)
        self.assertLessEqual(a1 - a0, 6)
        self.assertEqual(self.c.shv("b", "options_rx"), 0)
        n1 = self.n1()
        self.assertEqual(n1["state"], "in-service")
        self.assertEqual(n1["active"], "a")
        self.assertEqual(n1["mode"], "check")
        a = n1["SERVERS"]["a"]
        self.assertEqual(a["fails"], "0")
        self.assertGreaterEqual(int(a["rtt_ms"]), 0)
        self.assertLess(int(a["rtt_ms"]), 500)
        self.assertLess(int(a["last_answer_age_ms"]), 1500)
        self.assertEqual(n1["SERVERS"]["b"]["last_code"], "0")

    def test_primary_dies_backup_active_within_bound(self):
        self.c.set_shv("b", "active", 1)  # the backup takes over...
        t0 = time.monotonic()
        self.c.stop("a")  # ...when the primary's process stops
        ok = wait_until(lambda: self.n1()["active"] == "b", 10, 0.02)
        elapsed = time.monotonic() - t0
        bound = CHECK + 2 * FORCE + 1
        print("\n    backup active %.2f s after the primary stopped (bound %d s)"
              % (elapsed, bound), end=" ", flush=True)
        self.assertTrue(ok)
        self.assertLessEqual(elapsed, bound)
        n1 = self.n1()
        self.assertEqual(n1["state"], "in-service")
        self.assertEqual(n1["SERVERS"]["b"]["active"], "yes")
        self.assertEqual(n1["SERVERS"]["b"]["last_code"], "200")
        self.assertGreaterEqual(int(n1["SERVERS"]["a"]["fails"]), 1)
        log = self.c.log("px")
        self.assertEqual(len(re.findall(r"member 'b' \(%s.1.12:5060\) is now active, was 'a'" % B,
                                        log)), 1, log[-2000:])
        self.assertIn("pair-state: pair=n1 state=in-service active=b", log)
        self.assertGreaterEqual(self.c.stats("px")["switchovers"], 1)

    def test_both_silent_out_of_service_then_primary_back(self):
        self.c.set_shv("a", "active", 0)
        self.assertTrue(wait_until(lambda: self.n1()["state"] == "out-of-service", 6))
        n1 = self.n1()
        self.assertEqual(n1["mode"], "force")
        log = self.c.log("px")
        self.assertEqual(log.count(
            "[40001] SIP Server HA pair (%s.1.11:5060) is unavailable: pair 'n1'" % B), 1)
        self.assertIn("pair-state: pair=n1 state=out-of-service", log)
        self.assertGreaterEqual(self.c.stats("px")["pairs_out_of_service"], 1)
        # probing goes on, alternating at the force pace
        b0 = self.c.shv("b", "options_rx")
        time.sleep(2.5)
        self.assertGreaterEqual(self.c.shv("b", "options_rx") - b0, 1)
        # the primary comes back
        self.c.set_shv("a", "active", 1)
        self.assertTrue(wait_until(lambda: self.n1()["state"] == "in-service", 5))
        n1 = self.n1()
        self.assertEqual(n1["active"], "a")
        self.assertEqual(n1["mode"], "check")
        self.assertIn("HA pair 'n1' (%s.1.11:5060) is back in service, active member 'a'" % B,
                      self.c.log("px"))
        # one DOWN and one UP, not one per ping
        self.assertEqual(self.c.log("px").count("is unavailable: pair 'n1'"), 1)

    def test_backup_answering_503_is_not_active(self):
        self.c.set_shv("b", "backup_code", 503)
        self.c.stop("a")
        self.assertTrue(wait_until(lambda: self.n1()["state"] == "out-of-service", 6))
        time.sleep(1.5)
        n1 = self.n1()
        self.assertEqual(n1["state"], "out-of-service")
        self.assertEqual(n1["active"], "a")
        self.assertEqual(n1["SERVERS"]["b"]["last_code"], "503")
        self.assertEqual(n1["switchovers"], "0")

    def test_request_from_backup_flips_once_it_answers(self):
        self.c.set_shv("b", "active", 1)  # both answer: only a request tells
        time.sleep(1.2)
        self.assertEqual(self.n1()["active"], "a")
        # a request from an unknown address flips nothing
        r = sip_request("MESSAGE", "sip:x@%s:5060" % PX, B + ".1.99", 5060)
        self.assertIsNotNone(reply_code(r))
        # nor one from the backup's address but another port
        r = sip_request("MESSAGE", "sip:x@%s:5060" % PX, B + ".1.12", 5099)
        self.assertIsNotNone(reply_code(r))
        n1 = self.n1()
        self.assertEqual(n1["active"], "a")
        self.assertEqual(n1["switchovers"], "0")
        # the backup sends an out-of-dialog MESSAGE: no proof (a backup may
        # send OPTIONS, REGISTER, MESSAGE)
        r = sip_request("MESSAGE", "sip:x@%s.1.12:5060" % B,
                        B + ".9.1", dst=(B + ".1.12", 5060),
                        headers=["X-Standin-Forward: sip:%s:5060" % PX])
        time.sleep(0.3)
        self.assertEqual(self.n1()["active"], "a")
        # the backup itself sends a dialog-forming request to the proxy
        t0 = time.monotonic()
        r = sip_request("INVITE", "sip:x@%s.1.12:5060" % B,
                        B + ".9.1", dst=(B + ".1.12", 5060),
                        headers=["X-Standin-Forward: sip:%s:5060" % PX])
        self.assertTrue(wait_until(lambda: self.n1()["active"] == "b", 2, 0.02))
        print("\n    flipped %.0f ms after the request" % ((time.monotonic() - t0) * 1000),
              end=" ", flush=True)
        n1 = self.n1()
        self.assertEqual(n1["switchovers"], "1")
        self.assertGreaterEqual(int(n1["SERVERS"]["b"]["requests"]), 1)
        self.assertIn("member 'b' (%s.1.12:5060) is now active, was 'a' (request received "
                      "from it, confirmed by OPTIONS 200)" % B, self.c.log("px"))
        # it stays active: it answers the pings
        time.sleep(2.5)
        self.assertEqual(self.n1()["active"], "b")

    def test_reload_keeps_state_and_drops_removed_pair(self):
        self.c.set_shv("b", "active", 1)
        kamcmd(self.c.rundir("px"), "sipcluster.set_state", "b", "active")
        kamcmd(self.c.rundir("px"), "sipcluster.set_state", "b", "auto")
        self.assertEqual(self.n1()["active"], "b")
        before = self.n1()
        self.c.write(doc(with_n2=False, with_n3=True))
        out = kamcmd(self.c.rundir("px"), "sipcluster.reload").stdout
        self.assertIn("reloaded", out)
        pairs = self.c.pairs("px")
        self.assertEqual(sorted(pairs), ["n1", "n3"])
        n1 = pairs["n1"]
        self.assertEqual(n1["active"], "b")
        self.assertEqual(n1["switchovers"], before["switchovers"])
        self.assertEqual(n1["SERVERS"]["b"]["uid"], before["SERVERS"]["b"]["uid"])
        # the new pair is probed (nobody answers there)
        self.assertTrue(wait_until(lambda: self.c.pairs("px")["n3"]["state"] == "out-of-service", 6))
        self.assertEqual(self.c.pairs("px")["n1"]["active"], "b")

    def test_set_state_overrides(self):
        d = self.c.rundir("px")
        out = kamcmd(d, "sipcluster.set_state", "n1", "out-of-service").stdout
        self.assertIn("Ok", out)
        n1 = self.n1()
        self.assertEqual((n1["state"], n1["admin"]), ("out-of-service", "out-of-service"))
        self.assertIn("[40001]", self.c.log("px"))
        kamcmd(d, "sipcluster.set_state", "n1", "auto")
        self.assertEqual(self.n1()["state"], "in-service")
        # force the (silent) backup: it is the active member whatever pings say
        kamcmd(d, "sipcluster.set_state", "b", "active")
        time.sleep(2.5)
        n1 = self.n1()
        self.assertEqual((n1["active"], n1["state"]), ("b", "in-service"))
        self.assertEqual(n1["SERVERS"]["b"]["admin"], "active")
        kamcmd(d, "sipcluster.set_state", "b", "auto")
        self.assertTrue(wait_until(lambda: self.n1()["active"] == "a", 6))
        # bad input
        out = kamcmd(d, "sipcluster.set_state", "nope", "auto", check=False).stdout
        self.assertIn("404", out)
        out = kamcmd(d, "sipcluster.set_state", "n1", "sideways", check=False).stdout
        self.assertIn("400", out)

    def test_single_server_pair_and_statistics(self):
        # n2's only server is not running: out of service
        self.assertTrue(wait_until(
            lambda: self.c.pairs("px")["n2"]["state"] == "out-of-service", 5))
        self.c.start_standin("s", B + ".2.11")
        self.assertTrue(wait_until(
            lambda: self.c.pairs("px")["n2"]["state"] == "in-service", 4))
        st = self.c.stats("px")
        self.assertGreaterEqual(st["pings_sent"], 3)
        self.assertGreater(st["ping_failures"], 0)
        self.assertEqual(st["pairs_out_of_service"], 0)


if __name__ == "__main__":
    unittest.main()


class TestProbeTimeout(unittest.TestCase):
    """The probe timeout is the module's own (min(oos-check, oos-force) in
    check mode), not tm's fr_timer (4 s in the shipped cfg): a member that
    answers OPTIONS after 4.5 s with oos-check = oos-force = 6 s is alive;
    one that answers after 7 s is not."""

    def setUp(self):
        body = proxy_xml("pt", B + ".5.1", "dc1")
        body += pair_xml("slow", "dc1", [("m", B + ".5.11", "primary")],
                         oos_check=6, oos_force=6)
        self.c = Cluster("health-timeout", cluster_xml("timeout", body))
        self.c.start_standin("m", B + ".5.11")
        self.c.set_shv("m", "options_delay_ms", 4500)
        self.c.start_proxy("pt")

    def tearDown(self):
        self.c.stop_all()

    def pair(self):
        return self.c.pairs("pt")["slow"]

    def test_answer_after_fr_timer_but_within_oos_timeout_is_alive(self):
        self.assertTrue(wait_until(
            lambda: self.pair()["SERVERS"]["m"]["last_code"] == "200", 12, 0.2))
        p = self.pair()
        m = p["SERVERS"]["m"]
        print("\n    answered after %s ms (tm fr_timer 4000 ms, probe timeout 6000 ms)"
              % m["rtt_ms"], end=" ", flush=True)
        self.assertGreaterEqual(int(m["rtt_ms"]), 4400)
        self.assertEqual(m["fails"], "0")
        self.assertEqual(p["state"], "in-service")
        self.assertEqual(p["mode"], "check")
        self.assertEqual(self.c.stats("pt").get("ping_failures"), 0)
        # slower than the probe timeout: a miss, counted at about 6 s
        self.c.set_shv("m", "options_delay_ms", 7000)
        t0 = time.monotonic()
        self.assertTrue(wait_until(lambda: int(self.pair()["SERVERS"]["m"]["fails"]) >= 1,
                                   16, 0.1))
        self.assertEqual(self.pair()["SERVERS"]["m"]["last_code"], "408")
