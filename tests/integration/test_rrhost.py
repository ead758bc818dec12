"""A Record-Route host per data center (issue 13, item 4): every proxy of a
geo-location Record-Routes with the document's rr-host (a DNS name that
resolves to that data center's proxies) and its own server-id (;sch=), so a
standard endpoint's in-dialog request reaches whichever of them DNS gives,
including after the proxy that recorded the route died; a request from the
cluster that lands on a proxy not holding the endpoint's TCP connection is
handed to the one that does. DNS is what an endpoint does with the name:
the tests send each request to the proxy the name would resolve to.

3 proxies (dc1-a, dc1-b with rr-host dc1.sipcluster.test, dc2-a with
dc2.sipcluster.test), pairs n1 (dc1) and n2 (dc2), a secret (MAC'd pins)."""

import re
import socket
import time
import unittest
import uuid

from harness import (Call, Cluster, Endpoint, Sink, kamcmd, reply_code,
                     send_raw, sip_request, ul_dump, wait_until, cluster_xml,
                     pair_xml)

B = "127.35"
PROXIES = {"dc1-a": (B + ".1.1", "dc1"), "dc1-b": (B + ".1.2", "dc1"),
           "dc2-a": (B + ".2.1", "dc2")}
RRH = {"dc1": "dc1.sipcluster.test", "dc2": "dc2.sipcluster.test"}
SERVERS = {"s11": (B + ".1.11", "n1"), "s21": (B + ".2.11", "n2")}
SECRET = "rr-host-test-secret-0123456789"
EVIL = B + ".9.66"
SINK = "127.66.35.1"
ARGS = ["-A", "NO_PIKE", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1",
        "-A", "SERVER_TIMEOUT=1000", "-A", "UL_TIMER=1"]


def doc():
    body = ""
    for n, (a, g) in PROXIES.items():
        body += ('  <proxy name="%s" address="%s" geo-location="%s" rr-host="%s"/>\n'
                 % (n, a, g, RRH[g]))
    body += pair_xml("n1", "dc1", [("s11", SERVERS["s11"][0], "primary")])
    body += pair_xml("n2", "dc2", [("s21", SERVERS["s21"][0], "primary")])
    return cluster_xml("rrhost", body).replace(
        '<sip-cluster name="rrhost">', '<sip-cluster name="rrhost" secret="%s">' % SECRET)


def px(name):
    return (PROXIES[name][0], 5060)


def server_request(method, ruri, server, via_proxy, routes):
    """a request the SIP Server `server` sends (from its own socket) to
    via_proxy with the Route set `routes`"""
    hdrs = ["X-Standin-Forward: sip:%s:5060" % PROXIES[via_proxy][0]]
    hdrs += ["Route: %s" % r for r in routes]
    sip_request(method, ruri, B + ".9.50", dst=(SERVERS[server][0], 5060),
                headers=hdrs, want_reply=False)


def rr_entries(msg):
    out = []
    for h in re.findall(r"(?im)^Record-Route:\s*(.*)$", msg):
        out += [x.strip() for x in h.split(",")]
    return out


class TestRecordRouteHost(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("rrhost", doc())
        for name, (addr, _) in SERVERS.items():
            c.start_standin(name, addr)
        for n in PROXIES:
            c.start_proxy(n, ARGS)
        assert wait_until(lambda: all(
            p["state"] == "in-service" for p in c.pairs("dc1-a").values()), 10)
        cls.sink = Sink(SINK)

    @classmethod
    def tearDownClass(cls):
        cls.sink.close()
        cls.c.stop_all()

    def handed(self, proxy):
        return self.c.stats(proxy).get("handed_over", 0)

    def test_01_record_route_names_the_data_center(self):
        call = Call(B + ".9.1")
        r = call.invite(px("dc1-a"))
        self.assertEqual(reply_code(r), 200, r)
        rr = rr_entries(r)
        self.assertEqual(len(rr), 1, rr)
        self.assertRegex(rr[0], r"^<sip:dc1\.sipcluster\.test;")
        self.assertIn(";scp=n1~", rr[0])       # the pin, MAC'd
        self.assertIn(";sch=1", rr[0])         # dc1-a wrote it
        self.assertIn(";scf=", rr[0])          # the caller's flow
        self.assertNotIn(PROXIES["dc1-a"][0], rr[0].split(";scf=")[0])
        call.ack(px("dc1-a"))
        # the name is shown per geo-location
        geos = {g["geo_location"]: g for g in
                __import__("harness").as_list(self.c.topo("dc1-b").get("GEO_LOCATIONS"))}
        self.assertEqual(geos["dc1"].get("rr_host"), RRH["dc1"])
        self.assertEqual(geos["dc2"].get("rr_host"), RRH["dc2"])
        r = call.bye(px("dc1-b"))
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), "s11")
        call.close()

    def test_02_server_bye_over_udp_sent_from_the_proxy_it_reached(self):
        """UDP: the proxy the name resolved to sends to the endpoint's
        address itself (rr_handover 1), counting no hand-over"""
        call = Call(B + ".9.2")
        r = call.invite(px("dc1-a"))
        self.assertEqual(reply_code(r), 200, r)
        call.ack(px("dc1-a"))
        before = self.handed("dc1-b")
        server_request("BYE", "sip:ep@%s:%d" % (call.ip, call.port), "s11", "dc1-b",
                       list(reversed(call.routes)))
        call.sock.settimeout(5)
        data, src = call.sock.recvfrom(65535)
        msg = data.decode()
        self.assertTrue(msg.startswith("BYE "), msg)
        self.assertEqual(src[0], PROXIES["dc1-b"][0])
        self.assertNotIn("Route:", msg)  # our entry was consumed
        self.assertEqual(self.handed("dc1-b"), before)
        call.close()

    def test_03_server_request_over_tcp_handed_to_the_flow_holder(self):
        """TCP: an endpoint registered over TCP through dc1-a; a SIP Server
        calls it through dc1-b (Path leads to dc1-a, which holds the
        connection). The server's BYE, sent to either dc1 proxy, reaches
        the endpoint on that connection."""
        ep = Endpoint(B + ".9.3", px("dc1-a"), "tina", transport="tcp")
        self.assertEqual(reply_code(ep.register(600)), 200)
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("dc1-b")).get("tina"), 3))
        sip_request("INVITE", "sip:tina@sipcluster.test", B + ".9.51",
                    dst=(SERVERS["s11"][0], 5060),
                    headers=["X-Standin-Forward: sip:%s:5060" % PROXIES["dc1-b"][0]],
                    want_reply=False)
        inv, _ = ep.recv(5)
        self.assertIsNotNone(inv, "INVITE not delivered")
        self.assertTrue(inv.startswith("INVITE "), inv)
        rr = rr_entries(inv)
        # dc1-a (the holder, with the TCP flow; two entries as the transport
        # changes: UDP from dc1-b, TCP to the endpoint) on top, then dc1-b
        self.assertEqual(len(rr), 3, rr)
        for e in rr[:2]:
            self.assertIn(";sch=1", e)
            self.assertIn(";scf=", e)
        self.assertIn(";transport=tcp", rr[0])
        self.assertIn(";sch=2", rr[2])
        self.assertIn(";scp=n1~", rr[2])
        for e in rr:
            self.assertRegex(e, r"^<sip:dc1\.sipcluster\.test[;>]")
        ep.answer(inv, 200, "OK")
        # the server's route set is the Record-Route reversed
        routes = list(reversed(rr))
        for via in ("dc1-b", "dc1-a"):
            before = self.handed("dc1-b")
            server_request("BYE", ep.contact, "s11", via, routes)
            bye, src = ep.recv(5)
            self.assertIsNotNone(bye, "BYE sent to %s not delivered" % via)
            self.assertTrue(bye.startswith("BYE "), bye)
            self.assertEqual(src[0], PROXIES["dc1-a"][0])  # the same connection
            self.assertEqual(self.handed("dc1-b"), before + (via == "dc1-b"))
            ep.answer(bye, 200, "OK")
        self.assertEqual(self.sink.got, [])
        ep.register(0)
        ep.close()

    def test_04_outsiders_gain_nothing_from_the_name(self):
        """an rr-host entry from outside is consumed like any of ours: the
        request goes to the pinned pair's server, never where sch= or scf=
        point, and a foreign entry after it is refused"""
        call = Call(B + ".9.4")
        r = call.invite(px("dc1-a"))
        self.assertEqual(reply_code(r), 200, r)
        call.ack(px("dc1-a"))
        # the caller's entry, with a flow to the sink and another holder
        entry = call.routes[0]
        forged = re.sub(r";sch=\d+", ";sch=2", entry)
        forged = re.sub(r";scf=[^;>]+", ";scf=sip%%3A%s%%3A5060%%3Btransport%%3Dtcp" % SINK,
                        forged)
        cases = [([forged], 200), ([forged, "<sip:%s;lr>" % SINK], 403),
                 (["<sip:dc2.sipcluster.test;lr;sch=3>", "<sip:%s;lr>" % SINK], 403)]
        for routes, want in cases:
            msg = "\r\n".join([
                "INFO sip:victim@%s:5060 SIP/2.0" % SINK,
                "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s;rport" % uuid.uuid4().hex[:12],
                "Max-Forwards: 70"] + ["Route: %s" % x for x in routes] + [
                "From: <sip:evil@%s>;tag=%s" % (EVIL, uuid.uuid4().hex[:6]),
                "To: <sip:victim@example.net>;tag=%s" % uuid.uuid4().hex[:6],
                "Call-ID: %s" % call.callid,
                "CSeq: 7 INFO", "Content-Length: 0", "", ""])
            got = send_raw(msg, px("dc1-b"), EVIL)
            codes = [reply_code(m) for m in got if m.startswith("SIP/2.0")]
            self.assertIn(want, codes, (routes, got))
        time.sleep(0.5)
        self.assertEqual(self.sink.got, [])
        r = call.bye(px("dc1-a"))
        self.assertEqual(reply_code(r), 200, r)
        call.close()

    def test_09_calls_outlive_the_proxy_that_recorded_them(self):
        """dc1-a dies; the endpoints' BYEs go where the name now resolves:
        dc1-b, or (a stale answer) the other data center's dc2-a"""
        calls = []
        for i in range(2):
            call = Call(B + ".9.%d" % (10 + i))
            r = call.invite(px("dc1-a"))
            self.assertEqual(reply_code(r), 200, r)
            call.ack(px("dc1-a"))
            calls.append(call)
        self.c.stop("dc1-a")
        for call, via in zip(calls, ("dc1-b", "dc2-a")):
            t0 = time.monotonic()
            r = call.bye(px(via), timeout=4)
            self.assertEqual(reply_code(r), 200, (via, r))
            self.assertEqual(call.served_by(r), "s11")
            print("\n    BYE via %s after the recording proxy died: %.0f ms"
                  % (via, (time.monotonic() - t0) * 1000), end=" ", flush=True)
            call.close()
        self.assertEqual(self.sink.got, [])


if __name__ == "__main__":
    unittest.main()
