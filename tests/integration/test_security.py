"""No relay for outsiders (issue 9): an attacker at an address that is not in
the cluster document tries to make a proxy forward requests to a host of its
choice (Route sets, Path smuggling, forged ;scp= pins, stray replies, loops,
spoofed SIP Server sources) or to corrupt the registrar (unregister that
refreshes, late 200s, un-normalised AoRs, absurd expiries). Every foreign
host (a Sink on 127.66.x.x) must receive nothing.

3 proxies (p1, p2 in dc1, p3 in dc2), pairs n1 (a1/b1), n2, n4 (weight 0)
in dc1, n3 in dc2, n5 (a5 + a backup b5 that is not running), one SBC."""

import os
import re
import socket
import time
import unittest
import uuid

from harness import (Call, Cluster, Endpoint, Sink, core_stat, final_reply,
                     kamcmd, reply_code, send_raw, sip_msg, ul_dump,
                     wait_until, cluster_xml, pair_xml)

B = "127.25"
P1, P2, P3 = (B + ".0.1", 5060), (B + ".0.2", 5060), (B + ".0.3", 5060)
SERVERS = {"a1": (B + ".1.11", "primary", "n1"), "b1": (B + ".1.12", "backup", "n1"),
           "a2": (B + ".2.11", "primary", "n2"), "a3": (B + ".3.11", "primary", "n3"),
           "a4": (B + ".4.11", "primary", "n4"), "a5": (B + ".5.11", "primary", "n5")}
B5 = B + ".5.12"  # backup of n5, deliberately not running
SBC = B + ".8.1"
EVIL = B + ".9.66"   # the attacker's own address (not in the document)
SECRET = "lab-secret-0123456789"
ARGS = ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "SERVER_TIMEOUT=1000",
        "-A", "UL_TIMER=1"]


FOREIGN = "127.66.0.1"  # the first Sink
LOCAL_HOOKS = """#!define WITH_LOCAL_REQUEST
route[LOCAL_REQUEST] {
	if(is_method("INVITE") && $rU == "barred") {
		sl_send_reply("403", "Barred by site policy");
		exit;
	}
}
#!define WITH_LOCAL_RELAY
route[LOCAL_RELAY] {
	if($rU == "hookevil") {
		$du = "sip:%s:5060";
	}
}
""" % FOREIGN


def doc():
    body = ""
    for n, (a, g) in (("p1", (P1[0], "dc1")), ("p2", (P2[0], "dc1")), ("p3", (P3[0], "dc2"))):
        body += '  <proxy name="%s" address="%s" port="5060" geo-location="%s"/>\n' % (n, a, g)
    body += '  <sbc name="sbc1" address="%s" port="5060"/>\n' % SBC
    body += pair_xml("n1", "dc1", [("a1", SERVERS["a1"][0], "primary"),
                                   ("b1", SERVERS["b1"][0], "backup")])
    # a2 is reached over TCP, on an explicit port
    body += ('  <ha-pair name="n2" geo-location="dc1">\n    <server name="a2" address="%s" '
             'port="5060" transport="tcp" role="primary"/>\n  </ha-pair>\n' % SERVERS["a2"][0])
    body += pair_xml("n3", "dc2", [("a3", SERVERS["a3"][0], "primary")])
    body += pair_xml("n4", "dc1", [("a4", SERVERS["a4"][0], "primary")], weight=0)
    body += pair_xml("n5", "dc1", [("a5", SERVERS["a5"][0], "primary"),
                                   ("b5", B5, "backup")], weight=0)
    return cluster_xml("security", body).replace(
        '<sip-cluster name="security">', '<sip-cluster name="security" secret="%s">' % SECRET)


def indialog(method, ruri, routes, src_note="x", extra=()):
    """an in-dialog-shaped request (To tag) with the given Route headers"""
    hdrs = ["Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s;rport" % uuid.uuid4().hex[:12],
            "Max-Forwards: 70"]
    hdrs += ["Route: %s" % r for r in routes]
    hdrs += ["From: <sip:evil@%s>;tag=%s" % (EVIL, uuid.uuid4().hex[:6]),
             "To: <sip:victim@example.net>;tag=%s" % uuid.uuid4().hex[:6],
             "Call-ID: %s-%s" % (src_note, uuid.uuid4().hex),
             "CSeq: 2 %s" % method,
             "Contact: <sip:evil@{LIP}:{LPORT}>"] + list(extra)
    return sip_msg("%s %s SIP/2.0" % (method, ruri), hdrs)


class TestNoRelay(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("security", doc())
        for name, (addr, role, _) in SERVERS.items():
            c.start_standin(name, addr, backup=(role == "backup"))
        for n in ("p1", "p2"):
            c.start_proxy(n, ARGS)
        # p3 closes idle TCP connections after 3 s (default 120 s), and runs
        # an operator's hooks (sipcluster-local.cfg beside its cfg): one
        # bars a number, one tries to send a request to a foreign host
        os.makedirs(c.rundir("p3"), exist_ok=True)
        with open(os.path.join(c.rundir("p3"), "sipcluster-local.cfg"), "w") as f:
            f.write(LOCAL_HOOKS)
        c.start_proxy("p3", ARGS + ["-A", "TCP_IDLE_LIFETIME=3"])
        cls.sinks = [Sink(B.replace("127.25", "127.66") + ".0.%d" % i) for i in (1, 2)]
        cls.F = cls.sinks[0]
        assert wait_until(lambda: all(
            p["state"] == "in-service" for n, p in c.pairs("p1").items()), 10), c.pairs("p1")

    @classmethod
    def tearDownClass(cls):
        for s in cls.sinks:
            s.close()
        cls.c.stop_all()

    def setUp(self):
        for s in self.sinks:
            s.got.clear()
        for n, (a, role, _) in SERVERS.items():
            for var, v in (("reg_noauth", 0), ("reg_code", 0), ("reg_delay_ms", 0)):
                self.c.set_shv(n, var, v)
            for var in ("reg_contact", "reg_expires_hdr"):
                kamcmd(self.c.rundir(n), "pv.shvSet", var, "str", "-")

    def tearDown(self):
        time.sleep(0.3)  # let any relayed retransmission arrive
        self.assertEqual([g for s in self.sinks for g in s.got], [],
                         "a host outside the cluster received traffic")

    def served(self, n):
        return self.c.shv(n, "other") + self.c.shv(n, "byes") + self.c.shv(n, "invites")

    # ---- 1. in-dialog-shaped requests with foreign Route sets

    def test_01_in_dialog_foreign_route_refused(self):
        ours = "<sip:%s:5060;lr>" % P1[0]
        foreign = "<%s;lr>" % self.F.uri
        for method in ("BYE", "INVITE", "MESSAGE", "NOTIFY"):
            for routes in ([ours + ", " + foreign], [ours, foreign], [foreign]):
                msgs = send_raw(indialog(method, "sip:victim@%s:5060" % self.F.ip, routes),
                                P1, EVIL)
                r = final_reply(msgs)
                self.assertIn(reply_code(r), (403, 404), (method, routes, r))

    def test_02_initial_request_route_sets(self):
        # the outbound-proxy Route (ours) is consumed; a foreign one refused
        ours = "<sip:%s:5060;lr>" % P1[0]
        before = self.served("a1") + self.served("a2")
        hdrs = ["Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s;rport" % uuid.uuid4().hex[:12],
                "Max-Forwards: 70", "Route: %s" % ours,
                "From: <sip:ep@%s>;tag=1" % EVIL, "To: <sip:dn1000@sipcluster.test>",
                "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 MESSAGE"]
        r = final_reply(send_raw(sip_msg("MESSAGE sip:dn1000@sipcluster.test SIP/2.0", hdrs),
                                 P1, EVIL))
        self.assertEqual(reply_code(r), 200, r)
        self.assertRegex(r, r"X-Served-By: a[12]")
        self.assertRegex(r, r"(?m)^X-Got-Route: *\r?$", "our own Route was forwarded")
        self.assertEqual(self.served("a1") + self.served("a2"), before + 1)
        hdrs[6] = "CSeq: 1 INVITE"
        for routes in ([ours + ", <%s;lr>" % self.F.uri], ["<%s;lr>" % self.F.uri]):
            hdrs[2] = "Route: %s" % routes[0]
            hdrs[5] = "Call-ID: %s" % uuid.uuid4().hex
            r = final_reply(send_raw(sip_msg("INVITE sip:dn1000@sipcluster.test SIP/2.0", hdrs),
                                     P1, EVIL))
            self.assertEqual(reply_code(r), 403, r)

    # ---- 2. Path smuggled in a REGISTER

    def test_03_path_only_from_listed_sbc_with_supported_path(self):
        self.c.set_shv("a1", "reg_noauth", 1)
        self.c.set_shv("a2", "reg_noauth", 1)
        ep = Endpoint(EVIL, P1, "pathuser", extra_headers=[
            "Path: <%s;lr>" % self.F.uri, "Supported: path"])
        r = ep.register(600)
        self.assertEqual(reply_code(r), 403, r)
        ep.close()
        time.sleep(0.3)
        self.assertNotIn("pathuser", ul_dump(self.c.rundir("p1")))
        # from the listed SBC, with Supported: path: kept after ours
        sbc = Endpoint(SBC, P1, "sbcuser", src_port=5060, extra_headers=[
            "Path: <sip:%s:5060;lr;received=sip:127.25.99.5:5062>" % SBC, "Supported: path"])
        self.assertEqual(reply_code(sbc.register(600)), 200)
        b = wait_until(lambda: ul_dump(self.c.rundir("p2")).get("sbcuser"), 2)
        self.assertTrue(b)
        self.assertRegex(b[0]["Path"], r"^<sip:%s:5060;lr;received=sip:%s:5060>,\s*<sip:%s:5060;lr;"
                         % (re.escape(P1[0]), re.escape(SBC), re.escape(SBC)))
        self.assertEqual(reply_code(sbc.register(0)), 200)
        sbc.close()
        # from the SBC without Supported: path: 420 Bad Extension
        sbc = Endpoint(SBC, P1, "sbcuser2", src_port=5060, extra_headers=[
            "Path: <sip:%s:5060;lr>" % SBC])
        r = sbc.register(600)
        self.assertEqual(reply_code(r), 420, r)
        self.assertRegex(r, r"(?mi)^Unsupported:\s*path")
        sbc.close()

    # ---- 3. ;scp= is checked

    def test_04_forged_pins(self):
        ours = "<sip:%s:5060;lr;scp=%%s>" % P1[0]
        # another data center's pair, no valid MAC: refused
        a3 = self.served("a3")
        for pin in ("n3", "n3~0123456789abcdef"):
            r = final_reply(send_raw(indialog("BYE", "sip:x@%s:5060" % SERVERS["a3"][0],
                                              [ours % pin]), P1, EVIL))
            self.assertEqual(reply_code(r), 403, r)
        self.assertEqual(self.served("a3"), a3)
        # a pair that does not exist
        r = final_reply(send_raw(indialog("BYE", "sip:x@%s:5060" % SERVERS["a1"][0],
                                          [ours % "no-such-pair"]), P1, EVIL))
        self.assertIn(reply_code(r), (403, 404), r)
        # a drained local pair still takes its pinned calls
        call = Call(EVIL)
        r = call.invite(P1)
        self.assertEqual(reply_code(r), 200, r)
        pair = "n" + call.served_by(r)[1]
        kamcmd(self.c.rundir("p1"), "sipcluster.set_state", pair, "out-of-service")
        try:
            call.ack(P1)
            r = call.bye(P1)
            self.assertEqual(reply_code(r), 200, r)
            self.assertEqual(call.served_by(r), "a" + pair[1])
        finally:
            kamcmd(self.c.rundir("p1"), "sipcluster.set_state", pair, "auto")
            call.close()

    def test_05_legit_cross_dc_pin_survives_local_recovery(self):
        # local pairs out: the call goes to dc2 and is pinned there (with a
        # MAC); local pairs come back; the BYE still reaches dc2
        p1 = self.c.rundir("p1")
        for n in ("n1", "n2"):
            kamcmd(p1, "sipcluster.set_state", n, "out-of-service")
        try:
            call = Call(EVIL)
            r = call.invite(P1)
            self.assertEqual(reply_code(r), 200, r)
            self.assertEqual(call.served_by(r), "a3")
            self.assertTrue(any(re.search(r";scp=n3~[0-9a-f]{16}", x) for x in call.routes),
                            call.routes)
        finally:
            for n in ("n1", "n2"):
                kamcmd(p1, "sipcluster.set_state", n, "auto")
        call.ack(P1)
        r = call.bye(P2)  # any proxy of the cluster
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), "a3")
        call.close()

    # ---- 4. unregister semantics (RFC 3261 10.3)

    def reg_ep(self, user, proxy=P1):
        for n in ("a1", "a2"):
            self.c.set_shv(n, "reg_noauth", 1)
        ep = Endpoint(B + ".9.1", proxy, user)
        self.assertEqual(reply_code(ep.register(600)), 200)
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("p1")).get(user), 2))
        return ep

    def bindings(self, user):
        return ul_dump(self.c.rundir("p1")).get(user, [])

    def live_bindings(self, user):
        """bindings lookup() would return: usrloc's write-back mode keeps a
        removed one, marked "Expires: deleted", until its next timer run"""
        return [b for b in self.bindings(user) if b.get("Expires") != "deleted"]

    def test_06_unregister_is_not_a_refresh(self):
        ep = self.reg_ep("unreg1")
        other = "<sip:unreg1@127.25.99.9:5070>;expires=3600"
        for n in ("a1", "a2"):
            kamcmd(self.c.rundir(n), "pv.shvSet", "reg_contact", "str", other)
        r = ep._register_once(0)
        self.assertEqual(reply_code(r), 200, r)
        time.sleep(0.3)
        self.assertEqual(self.live_bindings("unreg1"), [], "expires=0 refreshed a binding")

    def test_07_reply_expires_header_does_not_override_contact_zero(self):
        # the request's contact says expires=0; the 200 does not list it and
        # carries "Expires: 3600": the binding is gone, not refreshed
        ep = self.reg_ep("unreg2")
        for n in ("a1", "a2"):
            kamcmd(self.c.rundir(n), "pv.shvSet", "reg_contact", "str", "none")
            kamcmd(self.c.rundir(n), "pv.shvSet", "reg_expires_hdr", "str", "s:3600")
        r = ep._register_once(0, cparams=";expires=0", expires_hdr=False)
        self.assertEqual(reply_code(r), 200, r)
        time.sleep(0.3)
        self.assertEqual(self.live_bindings("unreg2"), [])

    def test_08_bad_expires_values(self):
        ep = self.reg_ep("unreg3")
        self.assertEqual(len(self.bindings("unreg3")), 1)
        # non-numeric, empty, 10+ digits: refused, the binding stays as it was
        for hdr, contact in (("Expires: abc", None), ("Expires: 99999999999", None),
                             (None, "<%s>;expires=" % ep.contact),
                             (None, "<%s>;expires=1x" % ep.contact)):
            ep.cseq += 1
            lines = ["REGISTER sip:sipcluster.test SIP/2.0",
                     "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (ep.ip, ep.port, uuid.uuid4().hex[:10]),
                     "Max-Forwards: 70", "From: <sip:unreg3@sipcluster.test>;tag=%s" % ep.tag,
                     "To: <sip:unreg3@sipcluster.test>", "Call-ID: %s" % ep.callid,
                     "CSeq: %d REGISTER" % ep.cseq,
                     "Contact: %s" % (contact or "<%s>" % ep.contact)]
            if hdr:
                lines.append(hdr)
            ep.send(sip_msg(lines[0], lines[1:]))
            msg, _ = ep.recv(3)
            self.assertEqual(reply_code(msg), 400, (hdr, contact, msg))
        b = self.bindings("unreg3")
        self.assertEqual(len(b), 1, b)
        self.assertGreater(int(b[0]["Expires"]), 500)
        ep.register(0)

    def test_09_granted_expiry_is_capped(self):
        ep = self.reg_ep("capped")
        for n in ("a1", "a2"):
            kamcmd(self.c.rundir(n), "pv.shvSet", "reg_contact", "str",
                   "<%s>;expires=2147483647" % ep.contact)
        self.assertEqual(reply_code(ep.register(2147483647)), 200)
        time.sleep(0.3)
        b = self.bindings("capped")
        self.assertEqual(len(b), 1)
        self.assertLessEqual(int(b[0]["Expires"]), 86400)
        ep.register(0)

    # ---- 5. only what the endpoint is told is stored

    def test_10_late_200_from_abandoned_branch_not_stored(self):
        # n1's active member a1 answers 200 after 1.5 s (SERVER_TIMEOUT is
        # 1 s); the failover to b1 is answered 403 and relayed; the late 200
        # must not create a binding
        user = None
        for i in range(200):  # an AoR whose rendezvous pair is n1
            u = "late%d" % i
            self.c.set_shv("a1", "reg_code", 200)
            self.c.set_shv("a2", "reg_code", 299)
            r = Endpoint(B + ".9.2", P1, u)._register_once(0)
            if re.search(r"X-Served-By: a1", r or ""):
                user = u
                break
        self.assertIsNotNone(user)
        self.c.set_shv("a1", "reg_delay_ms", 1500)
        self.c.set_shv("b1", "active", 1)
        self.c.set_shv("b1", "reg_code", 403)
        try:
            ep = Endpoint(B + ".9.2", P1, user)
            r = ep._register_once(600)
            self.assertEqual(reply_code(r), 403, r)
            time.sleep(1.5)
            self.assertEqual(self.bindings(user), [])
        finally:
            self.c.set_shv("b1", "active", 0)
            self.c.set_shv("b1", "reg_code", 0)
            self.c.set_shv("a1", "reg_delay_ms", 0)
            self.assertTrue(wait_until(
                lambda: self.c.pairs("p1")["n1"]["active"] == "a1", 6))

    # ---- 6. AoR normalised like registrar's extract_aor

    def test_11_aor_normalised(self):
        for n in ("a1", "a2"):
            self.c.set_shv(n, "reg_noauth", 1)
        ep = Endpoint(B + ".9.3", P1, "Al%69ce", domain="SIPCluster.TEST")
        self.assertEqual(reply_code(ep.register(600)), 200)
        # unescaped and, with registrar's default case_sensitive 0, lower case
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("p1")).get("alice"), 2),
                        ul_dump(self.c.rundir("p1")).keys())
        # a SIP Server calls sip:ALICE@...: delivered to the endpoint
        send_raw(sip_msg("MESSAGE sip:ALICE@sipcluster.test SIP/2.0", [
            "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
            "Max-Forwards: 70", "From: <sip:srv@x>;tag=1", "To: <sip:Alice@sipcluster.test>",
            "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 MESSAGE",
            "X-Standin-Forward: sip:%s:5060" % P1[0]]), (SERVERS["a1"][0], 5060), B + ".9.4",
            want=0, timeout=0.1)
        msg, _ = ep.recv(3)
        self.assertIsNotNone(msg)
        self.assertTrue(msg.startswith("MESSAGE "), msg)
        ep.answer(msg)
        ep.register(0)

    # ---- 7. spoofed SIP Server sources

    def test_12_tcp_client_on_a_server_host_is_not_that_server(self):
        # a process on a2's host, but not a2's port, over TCP (a2 is a TCP
        # server with an explicit port in the document)
        hdrs = ["Via: SIP/2.0/TCP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
                "Max-Forwards: 70", "From: <sip:x@y>;tag=1", "To: <sip:dn@sipcluster.test>",
                "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 MESSAGE",
                "X-Genesys-Route: %s" % self.F.uri]
        r = final_reply(send_raw(sip_msg("MESSAGE sip:dn@sipcluster.test SIP/2.0", hdrs), P1,
                                 SERVERS["a2"][0], transport="tcp"))
        # treated as an endpoint: X-Genesys-Route ignored, goes to a SIP Server
        self.assertEqual(reply_code(r), 200, r)
        self.assertRegex(r, r"X-Served-By: a[12]")

    def test_13_only_dialog_requests_prove_activity(self):
        self.assertEqual(self.c.pairs("p1")["n5"]["active"], "a5")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((B5, 5060))
        try:
            for m in ("OPTIONS", "MESSAGE", "REGISTER"):
                s.sendto(sip_msg("%s sip:%s:5060 SIP/2.0" % (m, P1[0]), [
                    "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%s" % (B5, uuid.uuid4().hex[:10]),
                    "Max-Forwards: 70", "From: <sip:b5@x>;tag=1", "To: <sip:p1@y>",
                    "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 %s" % m]).encode(), P1)
            time.sleep(0.5)
            self.assertEqual(self.c.pairs("p1")["n5"]["active"], "a5")
            # an INVITE from the backup's address and port is a claim, not
            # proof: b5 is probed at once and, silent (not running), stays
            # the backup
            n5 = self.c.pairs("p1")["n5"]
            p0, sw0 = int(n5["SERVERS"]["b5"]["pings"]), n5["switchovers"]
            s.sendto(sip_msg("INVITE sip:nobody@sipcluster.test SIP/2.0", [
                "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%s" % (B5, uuid.uuid4().hex[:10]),
                "Max-Forwards: 70", "From: <sip:b5@x>;tag=1", "To: <sip:nobody@sipcluster.test>",
                "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 INVITE"]).encode(), P1)
            self.assertTrue(wait_until(
                lambda: int(self.c.pairs("p1")["n5"]["SERVERS"]["b5"]["pings"]) > p0, 2))
            time.sleep(1.5)
        finally:
            s.close()
        n5 = self.c.pairs("p1")["n5"]
        self.assertEqual(n5["active"], "a5", n5)
        self.assertEqual(n5["switchovers"], sw0, n5)

    # ---- 8. what a hostile-traffic run found

    def test_14_stray_reply_dropped(self):
        rep = sip_msg("SIP/2.0 200 OK", [
            "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bKnosuchtxn" % P1[0],
            "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bKvictim" % (self.F.ip, self.F.port),
            "From: <sip:a@b>;tag=1", "To: <sip:c@d>;tag=2", "Call-ID: stray",
            "CSeq: 1 INVITE"])
        send_raw(rep, P1, EVIL, want=0, timeout=0.2)

    def test_15_route_naming_us_60_times_is_no_loop(self):
        rcv0 = core_stat(self.c.rundir("p1"), "rcv_requests")
        routes = ["<sip:%s:5060;lr>" % P1[0]] * 30 + ["<sip:%s:5060;lr>, <sip:%s:5060;lr>"
                                                       % (P1[0], P1[0])] * 15
        r = final_reply(send_raw(indialog("BYE", "sip:x@%s:5060" % SERVERS["a1"][0], routes),
                                 P1, EVIL))
        self.assertEqual(reply_code(r), 200, r)
        self.assertIn("X-Served-By: a1", r)
        # 1 request in (ours), plus the OPTIONS keepalive traffic at most
        self.assertLess(core_stat(self.c.rundir("p1"), "rcv_requests") - rcv0, 5)

    def test_15b_site_hooks_run_but_cannot_open_a_relay(self):
        import harness
        if harness.ROUTING == "lua":
            self.skipTest("the LOCAL_* hooks belong to the native routing only "
                          "(examples/kemi-lua/README.md)")
        # route[LOCAL_REQUEST] of the operator's sipcluster-local.cfg answers
        call = Call(EVIL, ruri_user="barred")
        r = call.invite(P3)
        self.assertEqual(reply_code(r), 403, r)
        self.assertIn("Barred by site policy", r)
        call.close()
        # route[LOCAL_RELAY] points an outsider's call at a foreign host:
        # onsend_route still drops it
        call = Call(EVIL, ruri_user="hookevil")
        r = call.invite(P3)
        self.assertNotEqual(reply_code(r), 200, r)
        call.close()
        time.sleep(0.5)
        self.assertEqual([g for s in self.sinks for g in s.got], [])
        # everybody else is routed as before
        call = Call(EVIL)
        self.assertEqual(reply_code(call.invite(P3)), 200)
        call.ack(P3)
        self.assertEqual(reply_code(call.bye(P3)), 200)
        call.close()

    def test_16_oversized_message_refused(self):
        def invite(callid, transport):
            hdrs = ["Via: SIP/2.0/%s {LIP}:{LPORT};branch=z9hG4bK%s;rport"
                    % (transport.upper(), uuid.uuid4().hex[:10]),
                    "Max-Forwards: 70", "From: <sip:ep@%s>;tag=1" % EVIL,
                    "To: <sip:dn@sipcluster.test>", "Call-ID: %s" % callid, "CSeq: 1 INVITE",
                    "Contact: <sip:ep@{LIP}:{LPORT}>"]
            return final_reply(send_raw(sip_msg("INVITE sip:dn@sipcluster.test SIP/2.0", hdrs),
                                        P1, EVIL, transport=transport))
        # 60 KB: 513, over UDP and over TCP (whose read buffer carries the
        # cluster channel's 61 KB batches); above the buffer (TCP_RD_BUF,
        # 64 KB) the connection is closed
        self.assertEqual(reply_code(invite("x" * 60000, "udp")), 513)
        self.assertEqual(reply_code(invite("x" * 60000, "tcp")), 513)
        self.assertIsNone(invite("x" * 70000, "tcp"))
        # a Call-ID longer than the limit: 400
        self.assertEqual(reply_code(invite("y" * 300, "udp")), 400)
        # and a normal call still works
        call = Call(EVIL)
        self.assertEqual(reply_code(call.invite(P1)), 200)
        call.ack(P1)
        self.assertEqual(reply_code(call.bye(P1)), 200)
        call.close()

    def test_18_tcp_connections_per_source_bounded(self):
        # one address opens 40 connections that each speak SIP: the first 32
        # are served, the rest closed; once they are gone, the address may
        # connect again
        def options(s):
            s.sendall(sip_msg("OPTIONS sip:%s:5060 SIP/2.0" % P1[0], [
                "Via: SIP/2.0/TCP %s:%d;branch=z9hG4bK%s" % (s.getsockname() + (
                    uuid.uuid4().hex[:10],)),
                "Max-Forwards: 70", "From: <sip:tcp@x>;tag=1", "To: <sip:p1@y>",
                "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 OPTIONS"]).encode())
            s.settimeout(2)
            try:
                return s.recv(4096).decode(errors="replace")
            except OSError:
                return ""
        src = B + ".9.77"
        conns, answers = [], []
        for i in range(40):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((src, 0))
            s.connect(P1)
            conns.append(s)
            answers.append(options(s))
        ok = [a for a in answers if a.startswith("SIP/2.0 200")]
        refused = [a for a in answers if a.startswith("SIP/2.0 503")]
        self.assertEqual(len(ok), 32, [a[:40] for a in answers])
        self.assertEqual(len(refused), 8)
        for s in conns:
            s.close()
        time.sleep(1)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((src, 0))
        s.connect(P1)
        self.assertTrue(options(s).startswith("SIP/2.0 200"))
        s.close()

    def test_19_idle_tcp_connection_cannot_hold_a_slot(self):
        # connections that never speak, or stop half-way through a request,
        # are closed by the proxy: after TCP_IDLE_LIFETIME (3 s on p3), the
        # half-open ones once the reader gives up on them too
        import select
        conns = {}
        for i in range(20):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((B + ".9.79", 0))
            s.connect(P3)
            if i % 2:
                s.send(b"INVITE sip:x@y SIP/2.0\r\nVia: SIP/2.0/TCP 127.25.99.4")
            conns[s.fileno()] = (i, s)
        t0 = time.monotonic()
        closed = {}
        while conns and time.monotonic() - t0 < 25:
            r, _, _ = select.select([s for _, s in conns.values()], [], [], 1)
            for s in r:
                i, _ = conns.pop(s.fileno())
                try:
                    data = s.recv(100)
                except OSError:
                    data = b""
                closed[i] = (time.monotonic() - t0, data)
                s.close()
        for _, s in conns.values():
            s.close()
        self.assertEqual(sorted(closed), list(range(20)), "connections left open")
        silent = [closed[i][0] for i in range(0, 20, 2)]
        self.assertTrue(all(2.5 <= t < 8 for t in silent), silent)
        self.assertTrue(all(d == b"" for _, d in closed.values()))

    def test_17_register_with_many_contacts(self):
        for n in ("a1", "a2"):
            self.c.set_shv(n, "reg_noauth", 1)
        log0 = len(self.c.log("p1").splitlines())

        def register(n, src):
            contacts = ", ".join("<sip:many@10.1.%d.%d:5060>" % (i // 250, i % 250)
                                 for i in range(n))
            hdrs = ["Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s;rport" % uuid.uuid4().hex[:10],
                    "Max-Forwards: 70", "From: <sip:many@sipcluster.test>;tag=1",
                    "To: <sip:many@sipcluster.test>", "Call-ID: %s" % uuid.uuid4().hex,
                    "CSeq: 1 REGISTER", "Contact: %s" % contacts, "Expires: 600"]
            return final_reply(send_raw(sip_msg("REGISTER sip:sipcluster.test SIP/2.0", hdrs),
                                        P1, src))
        # 1000 contacts do not even fit the size limit; 20 fit but are more
        # than max_contacts; every try from one source: at most one log line
        self.assertEqual(reply_code(register(1000, EVIL)), 513)
        for i in range(5):
            r = register(20, EVIL)
            self.assertEqual(reply_code(r), 403, r)
            self.assertIn("Too many contacts", r)
        time.sleep(0.3)
        self.assertNotIn("many", ul_dump(self.c.rundir("p1")))
        new = self.c.log("p1").splitlines()[log0:]
        self.assertLessEqual(len([l for l in new if EVIL in l]), 1, new)


if __name__ == "__main__":
    unittest.main()
