"""Authenticity (issue 18): nothing is believed because of where a packet
claims to come from. An attacker tries, as in the issue's lab:

  - to answer for the SIP Server: an outsider's REGISTER plus a burst of
    forged 200s carrying the branch the proxy used (learnt here by sniffing
    loopback, which is what computing it from the REGISTER gives), while the
    stand-in takes 2 s to challenge; over UDP and TCP, for a new binding and
    for "Contact: *" against a registered user;
  - to speak for another proxy: spoofed UDP packets (raw socket, the other
    proxy's address and port) carrying sync "rec" records with a far-future
    version, a far-future tombstone, a digest that claims zero bindings,
    and a stock dmq_usrloc KDMQ;
  - to speak for a SIP Server: a spoofed INVITE from the silent backup
    member's address (the pair must stay on the primary), and a spoofed
    INVITE from the active member with an X-Genesys-Route to a host the
    document does not list (the host must get nothing).
Each of these worked against the main of 2026-12-05.

2 proxies (p1, p2, dc1), pair n1 (a1 primary, b1 backup: silent)."""

import json
import os
import re
import socket
import struct
import threading
import time
import unittest
import uuid

from harness import (Call, Cluster, Endpoint, Sink, kamcmd, reply_code, sip_msg,
                     ul_dump, wait_until, cluster_xml, pair_xml, proxy_xml)

B = "127.31"
P1, P2 = (B + ".0.1", 5060), (B + ".0.2", 5060)
A1, B1 = B + ".1.11", B + ".1.12"
PX = (B + ".0.9", 5060)  # a proxy of the document that the test plays
EVIL = B + ".9.66"      # the attacker's own address (not in the document)
PHONE = B + ".9.1"      # a legitimate endpoint
ARGS = ["-A", "OOS_CHECK=2", "-A", "OOS_FORCE=2", "-A", "SERVER_TIMEOUT=4000",
        "-A", "UL_TIMER=1", "-A", "DMQ_PING=2"]


def doc():
    body = (proxy_xml("p1", P1[0], "dc1") + proxy_xml("p2", P2[0], "dc1")
            + proxy_xml("px", PX[0], "dc1"))
    body += pair_xml("n1", "dc1", [("a1", A1, "primary"), ("b1", B1, "backup")])
    return cluster_xml("authentic", body)


class Sniffer:
    """the UDP datagrams that cross loopback to (ip, port) (AF_PACKET)"""

    def __init__(self, ip, port=5060):
        self.want = (socket.inet_aton(ip), port)
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        self.s.bind(("lo", 0))
        self.s.settimeout(0.2)
        self.got = []
        self.stop = threading.Event()
        self.t = threading.Thread(target=self.loop, daemon=True)
        self.t.start()

    def loop(self):
        while not self.stop.is_set():
            try:
                frame = self.s.recv(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            ip = frame[14:]
            if len(ip) < 28 or ip[9] != 17:
                continue
            ihl = (ip[0] & 15) * 4
            dport = struct.unpack("!H", ip[ihl + 2:ihl + 4])[0]
            if ip[16:20] == self.want[0] and dport == self.want[1]:
                self.got.append(ip[ihl + 8:].decode(errors="replace"))

    def first(self, pattern, timeout=3):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for m in list(self.got):
                if re.search(pattern, m):
                    return m
            time.sleep(0.02)
        return None

    def close(self):
        self.stop.set()
        self.t.join(1)
        self.s.close()


def spoof_udp(src, dst, payload):
    """one UDP datagram with a forged source address and port (raw socket)"""
    if isinstance(payload, str):
        payload = payload.encode()
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                      socket.inet_aton(src[0]), socket.inet_aton(dst[0]))
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        s.sendto(iph + udp, (dst[0], 0))
    finally:
        s.close()


def forged_200(relayed, contact=None, expires=3600):
    """a 200 OK for the REGISTER the proxy relayed (its Vias: the branch)"""
    head = relayed.split("\r\n\r\n")[0].split("\r\n")
    keep = [l for l in head[1:] if re.match(r"(?i)^(via|v|from|f|call-id|i|cseq):", l)]
    to = next(l for l in head if re.match(r"(?i)^(to|t):", l))
    hdrs = keep + [to + ";tag=forged%s" % uuid.uuid4().hex[:6]]
    if contact:
        hdrs.append("Contact: <%s>;expires=%d" % (contact, expires))
    return sip_msg("SIP/2.0 200 OK", hdrs)


def kdmq(peer, dst, body, src):
    return sip_msg("KDMQ sip:%s@%s:%d SIP/2.0" % (peer, dst[0], dst[1]), [
        "Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s" % (src[0], src[1], uuid.uuid4().hex[:12]),
        "Max-Forwards: 1", "From: <sip:%s@%s:%d>;tag=%s" % (peer, src[0], src[1],
                                                            uuid.uuid4().hex[:6]),
        "To: <sip:%s@%s:%d>" % (peer, dst[0], dst[1]),
        "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 KDMQ",
        "Content-Type: application/json"], body)


class TestAuthenticity(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("authentic", doc())
        # a1 sleeps in a child for each REGISTER (and each retransmission
        # of it) while it is slow: enough children left for the probes
        c.start_standin("a1", A1, extra=["-A", "CHILDREN=12"])
        c.start_standin("b1", B1, backup=True)
        # px never answers the start-up sync: do not wait SYNC_WAIT for it
        c.start_proxy("p1", ARGS + ["-A", "SYNC_WAIT=2"])
        c.start_proxy("p2", ARGS + ["-A", "SYNC_WAIT=2"])
        cls.sink = Sink(B.replace("127.31", "127.66") + ".31.1")
        # px never answers: each proxy takes REGISTERs after SYNC_WAIT, and
        # DMQ replicates to the other once its node is active (a node
        # notified before it ran waits for DMQ's next ping)
        assert wait_until(lambda: all(c.sync_status(n)[0] for n in ("p1", "p2")), 15)

        def dmq_active(n, peer):
            out = kamcmd(c.rundir(n), "dmq.list_nodes").stdout
            return re.search(r"host: %s\s+port: 5060\s+proto: tcp\s+resolved_ip: \S+\s+"
                             r"status: active" % re.escape(peer), out) is not None
        assert wait_until(lambda: dmq_active("p1", P2[0]) and dmq_active("p2", P1[0]), 40)
        assert wait_until(lambda: c.pairs("p1")["n1"]["state"] == "in-service", 10)

    @classmethod
    def tearDownClass(cls):
        cls.sink.close()
        cls.c.stop_all()

    def setUp(self):
        self.sink.got.clear()
        self.c.set_shv("a1", "reg_delay_ms", 0)

    def bound(self, aor):
        """{proxy: [contact addresses]} for aor (what lookup() would use:
        usrloc's write-back keeps a removed binding as 'Expires: deleted'
        until its timer)"""
        return {n: [c["Address"] for c in ul_dump(self.c.rundir(n)).get(aor, [])
                    if c.get("Expires") != "deleted"]
                for n in ("p1", "p2")}

    # ---- 1. a reply counts only from where its branch went

    def forged_reply_race(self, user, transport, star=False):
        """the attacker registers `user` (or removes its bindings) and
        answers for the slow SIP Server; returns what it got back"""
        self.c.set_shv("a1", "reg_delay_ms", 2000)
        sn = Sniffer(A1)
        a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        a.bind((EVIL, 0))
        a.settimeout(0.2)
        port = a.getsockname()[1]
        callid = uuid.uuid4().hex
        hdrs = ["Via: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport" % (EVIL, port,
                                                                uuid.uuid4().hex[:12]),
                "Max-Forwards: 70", "From: <sip:%s@sipcluster.test>;tag=e1" % user,
                "To: <sip:%s@sipcluster.test>" % user, "Call-ID: %s" % callid,
                "CSeq: 1 REGISTER"]
        hdrs += (["Contact: *", "Expires: 0"] if star else
                 ["Contact: <sip:%s@%s:%d>" % (user, EVIL, port), "Expires: 3600"])
        try:
            a.sendto(sip_msg("REGISTER sip:sipcluster.test SIP/2.0", hdrs).encode(), P1)
            relayed = sn.first(r"(?s)^REGISTER .*Call-ID: %s" % callid, 3)
            if relayed is None:
                try:
                    back = a.recvfrom(65535)[0].decode(errors="replace")
                except socket.timeout:
                    back = "nothing"
                self.fail("the REGISTER was not relayed to a1; the proxy answered: %s"
                          % back[:300])
            forged = forged_200(relayed, None if star else "sip:%s@%s:%d" % (user, EVIL, port))
            for i in range(5):
                if transport == "udp":
                    f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    f.bind((EVIL, 0))
                    f.sendto(forged.encode(), P1)
                else:
                    f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    f.bind((EVIL, 0))
                    f.connect(P1)
                    f.sendall(forged.encode())
                    time.sleep(0.05)
                f.close()
            got = []
            end = time.monotonic() + 4
            while time.monotonic() < end:
                try:
                    got.append(a.recvfrom(65535)[0].decode(errors="replace"))
                except socket.timeout:
                    pass
                if any(reply_code(m) and reply_code(m) >= 200 for m in got):
                    break
            return [reply_code(m) for m in got]
        finally:
            a.close()
            sn.close()
            self.c.set_shv("a1", "reg_delay_ms", 0)

    def test_01_forged_200_stores_nothing(self):
        for transport in ("udp", "tcp"):
            user = "carol-%s" % transport
            d0 = self.c.stats("p1").get("replies_dropped", 0)
            codes = self.forged_reply_race(user, transport)
            # the endpoint gets the SIP Server's own 401, never the forged 200
            self.assertNotIn(200, codes, (transport, codes))
            self.assertIn(401, codes, (transport, codes))
            self.assertGreaterEqual(self.c.stats("p1")["replies_dropped"] - d0, 5, transport)
            time.sleep(1.5)
            self.assertEqual(self.bound(user), {"p1": [], "p2": []}, transport)
        self.assertRegex(self.c.log("p1"),
                         r"dropped a reply from %s:\d+ \((udp|tcp)\): 200 for REGISTER of "
                         r"branch 0 sent to %s:5060 \(udp\): not from there" % (EVIL, A1))

    def test_02_forged_200_to_contact_star_removes_nothing(self):
        ep = Endpoint(PHONE, P1, "alice")
        try:
            self.assertEqual(reply_code(ep.register(3600)), 200)
            self.assertTrue(wait_until(lambda: all(self.bound("alice").values()), 3))
            for transport in ("udp", "tcp"):
                codes = self.forged_reply_race("alice", transport, star=True)
                self.assertNotIn(200, codes, (transport, codes))
                time.sleep(1.5)
                b = self.bound("alice")
                self.assertTrue(all(len(v) == 1 and PHONE in v[0] for v in b.values()),
                                (transport, b))
        finally:
            ep.register(0)
            ep.close()

    # ---- 2. cluster traffic only over the authenticated channel

    def test_03_spoofed_cluster_packets_change_nothing(self):
        ep = Endpoint(PHONE, P1, "bob")
        try:
            self.assertEqual(reply_code(ep.register(3600)), 200)
            self.assertTrue(wait_until(lambda: all(self.bound("bob").values()), 3),
                            self.bound("bob"))
            before = {"bob": self.bound("bob"), "alice": self.bound("alice")}
            bob_contact = before["bob"]["p1"][0]
            now = int(time.time())
            sent0 = self.c.stats("p1").get("sync_records_sent", 0)
            rec = {"aor": "alice", "c": "sip:alice@%s:5060" % EVIL, "ruid": "evil-1",
                   "received": "", "path": "", "callid": "evil", "user_agent": "",
                   "instance": "", "last_modified": now + 10 ** 6, "cseq": 1,
                   "expires": now + 3600, "q": -1, "flags": 0, "cflags": 0,
                   "methods": 4294967295, "reg_id": 0, "server_id": 2}
            tomb = {"a": "bob", "c": bob_contact, "ci": "evil", "at": now + 10 ** 6,
                    "cs": 9, "un": now + 10 ** 6}
            msgs = [
                ("sipcluster", {"op": "rec", "from": "p2", "r": [rec]}),
                ("sipcluster", {"op": "rec", "from": "p2", "x": [tomb]}),
                ("sipcluster", {"op": "digest", "from": "p2", "id": 77, "cut": now,
                                "margin": 0, "n": 0, "d": "0" * (16 * 1024)}),
                ("usrloc", dict(action=1, aor="alice", ruid="evil-2",
                                c="sip:alice@%s:5060" % EVIL, received="", path="",
                                callid="evil", user_agent="", instance="",
                                expires=now + 3600, cseq=1, flags=0, cflags=0, q=-1,
                                last_modified=now, methods=4294967295, reg_id=0)),
            ]
            for peer, body in msgs:
                for dst in (P1, P2):
                    other = P2 if dst == P1 else P1
                    spoof_udp(other, dst, kdmq(peer, dst, json.dumps(body), other))
            time.sleep(2)
            self.assertEqual(self.bound("alice"), before["alice"])
            self.assertEqual(self.bound("bob"), before["bob"])
            # the zero digest got no push
            self.assertEqual(self.c.stats("p1").get("sync_records_sent", 0), sent0)
            self.assertRegex(self.c.log("p1"),
                             r"refused KDMQ from %s:5060 \(udp\) with 403" % re.escape(P2[0]))
        finally:
            ep.register(0)
            ep.close()

    def test_04_real_channel_takes_records_but_not_far_future_ones(self):
        """over the real channel (TCP from a listed proxy's address and
        listen port: px, which the test plays) a record is applied; one
        whose version lies beyond the clock plus sync_max_skew is refused"""
        now = int(time.time())

        def rec(user, lm):
            return {"aor": user, "c": "sip:%s@%s:5060" % (user, PHONE), "ruid": "px-" + user,
                    "received": "", "path": "", "callid": "px-" + user, "user_agent": "",
                    "instance": "", "last_modified": lm, "cseq": 1, "expires": now + 600,
                    "q": -1, "flags": 0, "cflags": 0, "methods": 4294967295, "reg_id": 0,
                    "server_id": 9}
        r0 = self.c.stats("p1").get("sync_rejected", 0)
        body = json.dumps({"op": "rec", "from": "px",
                           "r": [rec("dave", now), rec("erin", now + 10 ** 6)]})
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(PX)
        s.connect(P1)
        s.settimeout(3)
        try:
            s.sendall(kdmq("sipcluster", P1, body, PX).replace(
                "SIP/2.0/UDP", "SIP/2.0/TCP").encode())
            reply = s.recv(65535).decode(errors="replace")
        finally:
            s.close()
        self.assertEqual(reply_code(reply), 200, reply)
        self.assertTrue(wait_until(lambda: self.bound("dave")["p1"], 3))
        self.assertEqual(self.bound("erin")["p1"], [])
        self.assertEqual(self.c.stats("p1")["sync_rejected"] - r0, 1)
        self.assertRegex(self.c.log("p1"), r"sync binding of erin refused: beyond the clock")

    # ---- 3. a SIP Server's privileges need more than a source address

    def test_05_spoofed_backup_invite_moves_nothing(self):
        self.assertEqual(self.c.pairs("p1")["n1"]["active"], "a1")
        for i in range(3):
            spoof_udp((B1, 5060), P1, sip_msg("INVITE sip:nobody@sipcluster.test SIP/2.0", [
                "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%s" % (B1, uuid.uuid4().hex[:10]),
                "Max-Forwards: 70", "From: <sip:b1@x>;tag=1",
                "To: <sip:nobody@sipcluster.test>", "Call-ID: %s" % uuid.uuid4().hex,
                "CSeq: 1 INVITE"]))
            time.sleep(0.1)
        # the claim is probed (oos_force 2 s): the silent backup never answers
        time.sleep(3)
        n1 = self.c.pairs("p1")["n1"]
        self.assertEqual(n1["active"], "a1", n1)
        self.assertEqual(n1["switchovers"], "0", n1)
        self.assertEqual(n1["state"], "in-service", n1)
        # new calls reach the primary, first time
        inv0 = self.c.shv("a1", "invites")
        for i in range(5):
            call = Call(PHONE)
            try:
                r = call.invite(P1)
                self.assertEqual(reply_code(r), 200, r)
                self.assertEqual(call.served_by(r), "a1")
                call.ack(P1)
                call.bye(P1)
            finally:
                call.close()
        self.assertEqual(self.c.shv("a1", "invites") - inv0, 5)
        self.assertEqual(self.c.shv("b1", "invites"), 0)

    def test_06_spoofed_server_x_genesys_route_to_unlisted_host(self):
        for i in range(3):
            spoof_udp((A1, 5060), P1, sip_msg("INVITE sip:x@%s SIP/2.0" % self.sink.ip, [
                "Via: SIP/2.0/UDP %s:5060;branch=z9hG4bK%s" % (A1, uuid.uuid4().hex[:10]),
                "Max-Forwards: 70", "From: <sip:a1@x>;tag=1", "To: <sip:x@y>",
                "Call-ID: %s" % uuid.uuid4().hex, "CSeq: 1 INVITE",
                "X-Genesys-Route: <%s>" % self.sink.uri]))
        time.sleep(1.5)
        self.assertEqual(self.sink.got, [], "the unlisted host received traffic")
        self.assertRegex(self.c.log("p1"), r"X-Genesys-Route %s is not a hop the cluster "
                         r"document lists" % re.escape(self.sink.uri))


if __name__ == "__main__":
    unittest.main()
