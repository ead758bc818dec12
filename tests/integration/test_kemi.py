"""KEMI: the shipped cfg with -A WITH_KEMI_LUA routes with the Lua example
(examples/kemi-lua/sipcluster.lua) instead of the native blocks. These tests
are the example's contract (examples/kemi-lua/README.md), driven like the
native script: registration with the SIP Server's challenge and replication,
delivery to the endpoint, calls with the BYE through the other proxy, the
trust rule (a foreign Route set refused), and the pair-state event reaching
the Lua event_callback."""

import time
import unittest
import uuid

from harness import (LUA_DEFS, Call, Cluster, Endpoint, Sink, final_reply, kamcmd,
                     reply_code, send_raw, sip_msg, ul_dump, wait_until,
                     cluster_xml, pair_xml, proxy_xml)

B = "127.29"
P1, P2 = (B + ".0.1", 5060), (B + ".0.2", 5060)
LUA = LUA_DEFS + [
       "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1", "-A", "NO_PIKE",
       "-A", "WITH_PROMETHEUS", "-A", "MAX_CALLID_LEN=64"]


def doc():
    body = proxy_xml("k1", P1[0], "dc1") + proxy_xml("k2", P2[0], "dc1")
    body += pair_xml("n1", "dc1", [("a1", B + ".1.11", "primary"), ("b1", B + ".1.12", "backup")])
    return cluster_xml("kemi", body).replace(
        '<sip-cluster name="kemi">', '<sip-cluster name="kemi" secret="kemi-secret-0123456789">')


class TestKemiLua(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("kemi", doc())
        c.start_standin("a1", B + ".1.11")
        c.start_standin("b1", B + ".1.12", backup=True)
        for p in ("k1", "k2"):
            c.start_proxy(p, LUA)
        assert wait_until(lambda: c.pairs("k1")["n1"]["state"] == "in-service", 10)
        assert c.wait_dmq(["k1", "k2"])

    @classmethod
    def tearDownClass(cls):
        cls.c.stop_all()

    def test_1_lua_is_the_engine(self):
        # app_lua holds the shipped script; no native route block is loaded
        r = kamcmd(self.c.rundir("k1"), "app_lua.list")
        self.assertIn("sipcluster.lua", r.stdout, r.stdout + r.stderr)
        self.assertNotIn("index 1 is out of range", self.c.log("k1"))

    def test_2_register_and_deliver(self):
        ep = Endpoint(B + ".9.1", P1, "luauser")
        r = ep.register(600)
        self.assertEqual(reply_code(r), 200, r)
        self.assertTrue(getattr(ep, "challenged", False))
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("k2")).get("luauser"), 2))
        send_raw(sip_msg("MESSAGE sip:luauser@sipcluster.test SIP/2.0", [
            "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
            "Max-Forwards: 70", "From: <sip:srv@x>;tag=1", "To: <sip:luauser@sipcluster.test>",
            "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 MESSAGE",
            "X-Standin-Forward: sip:%s:5060" % P2[0]]), (B + ".1.11", 5060), B + ".9.2",
            want=0, timeout=0.1)
        msg, src = ep.recv(5)
        self.assertIsNotNone(msg)
        self.assertEqual(src[0], P1[0])  # through the proxy holding the flow
        ep.answer(msg)
        ep.register(0)
        ep.close()

    def test_3_call_bye_through_the_other_proxy(self):
        call = Call(B + ".9.3")
        r = call.invite(P1)
        self.assertEqual(reply_code(r), 200, r)
        self.assertTrue(any(";scp=n1~" in x for x in call.routes), call.routes)
        call.ack(P1)
        r = call.bye(P2)
        self.assertEqual(reply_code(r), 200, r)
        self.assertEqual(call.served_by(r), "a1")
        call.close()

    def test_4_foreign_route_refused(self):
        sink = Sink("127.66.29.1")
        try:
            hdrs = ["Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s;rport" % uuid.uuid4().hex[:10],
                    "Max-Forwards: 70",
                    "Route: <sip:%s:5060;lr>, <sip:%s:5060;lr>" % (P1[0], sink.ip),
                    "From: <sip:x@y>;tag=1", "To: <sip:v@z>;tag=2",
                    "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 2 BYE"]
            r = final_reply(send_raw(sip_msg("BYE sip:v@%s:5060 SIP/2.0" % sink.ip, hdrs),
                                     P1, B + ".9.4"))
            self.assertEqual(reply_code(r), 403, r)
            time.sleep(0.3)
            self.assertEqual(sink.got, [])
        finally:
            sink.close()

    def test_5_pair_state_event_reaches_lua(self):
        # a switchover: b1 takes over, a1 goes silent
        self.c.set_shv("b1", "active", 1)
        self.c.set_shv("a1", "active", 0)
        try:
            self.assertTrue(wait_until(
                lambda: "pair-state (KEMI sipcluster:pair-state): pair=n1" in self.c.log("k1")
                and "active=b1" in self.c.log("k1"), 6))
        finally:
            self.c.set_shv("a1", "active", 1)
            self.c.set_shv("b1", "active", 0)
        self.assertTrue(wait_until(lambda: self.c.pairs("k1")["n1"]["active"] == "a1", 6))


    def test_6_cfg_defines_reach_the_script(self):
        # MAX_CALLID_LEN=64 from the command line, read by Lua via $defn()
        def options(callid):
            return sip_msg("OPTIONS sip:x@%s:5060 SIP/2.0" % P1[0], [
                "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
                "Max-Forwards: 70", "From: <sip:a@b>;tag=1", "To: <sip:x@y>",
                "Call-ID: %s" % callid, "CSeq: 1 OPTIONS"])
        r = final_reply(send_raw(options("c" * 65), P1, B + ".9.6"))
        self.assertEqual(reply_code(r), 400, r)
        self.assertIn("Call-ID too long", r)
        r = final_reply(send_raw(options("c" * 60), P1, B + ".9.6"))
        self.assertEqual(reply_code(r), 200, r)  # relayed to the pair, answered

    def test_7_http_metrics_and_rpc_in_lua(self):
        import json
        import urllib.request
        with urllib.request.urlopen("http://%s:9090/metrics" % P1[0], timeout=5) as r:
            text = r.read().decode()
        self.assertRegex(text, r'kamailio_sipcluster_pair_in_service\{pair="n1", ?geo="dc1"\} 1[. ]')
        req = urllib.request.Request(
            "http://%s:9090/RPC" % P1[0], method="POST",
            data=json.dumps({"jsonrpc": "2.0", "method": "sipcluster.which",
                             "params": ["new"], "id": 1}).encode())
        with urllib.request.urlopen(req, timeout=5) as r:
            self.assertEqual(json.loads(r.read().decode())["result"]["pair"], "n1")
        # the SIP port does not serve HTTP
        import urllib.error
        with self.assertRaises((urllib.error.URLError, ConnectionError, OSError)) as cm:
            urllib.request.urlopen("http://%s:5060/metrics" % P1[0], timeout=3).read()
        if isinstance(cm.exception, urllib.error.HTTPError):
            self.assertEqual(cm.exception.code, 403)


if __name__ == "__main__":
    unittest.main()
