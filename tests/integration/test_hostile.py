"""Hostile traffic (issue 9): while a steady call flow runs through a proxy,
tens of thousands of malformed or hostile messages hit it from outside the
cluster: truncated, wrong Content-Length, oversized, 1000 Vias, bad URIs,
garbage Route/Record-Route/Path/Contact, REGISTERs with absurd Expires or
many Contacts or a smuggled Path, KDMQ and SIP-Server spoofing, foreign
Route sets, X-Genesys-Route, stray replies, random bytes, a flood from one
address, idle and half-open TCP connections.

Afterwards: nothing crashed, every good call completed, a TCP endpoint could
still register and be reached, no host outside the cluster received a byte,
usrloc holds nothing it should not, shm and pkg are back at their baseline,
and the log did not grow with the attack."""

import os
import random
import re
import socket
import subprocess
import threading
import time
import unittest
import uuid

from harness import (RUNS, SIPP_UAC, Cluster, Endpoint, Sink, kamcmd,
                     reply_code, send_raw, shm_used, sip_msg, ul_dump,
                     wait_until, cluster_xml, pair_xml)

B = "127.26"
P1, P2 = (B + ".0.1", 5060), (B + ".0.2", 5060)
SERVERS = {"a1": (B + ".1.11", "primary"), "b1": (B + ".1.12", "backup"),
           "a2": (B + ".2.11", "primary")}
LOADGEN = B + ".8.1"  # the good traffic: an SBC of the document (pike-exempt)
ATTACKERS = ["%s.%d.%d" % (B, 100 + i // 200, 1 + i % 200) for i in range(400)]
FLOODER = B + ".99.1"
# probes answered within 3 s count (min(oos_check, oos_force)) and a relayed
# request waits 3 s for its server before it fails over: the attack and the
# flood share the 2 cores with the stand-ins, which can be a second late (in
# CI a BYE's 200 came after 1 s, the BYE went on to the backup, and its 481
# failed a good call); this test is about hostile traffic, not about
# detection or failover speed
ARGS = ["-A", "OOS_CHECK=3", "-A", "OOS_FORCE=3", "-A", "SERVER_TIMEOUT=3000",
        "-A", "UL_TIMER=1", "-A", "REFUSAL_LOG_INTERVAL=60"]
N_ATTACK = 40000


def doc():
    body = ('  <proxy name="p1" address="%s" port="5060" geo-location="dc1"/>\n'
            '  <proxy name="p2" address="%s" port="5060" geo-location="dc1"/>\n'
            '  <sbc name="loadgen" address="%s" port="5070"/>\n' % (P1[0], P2[0], LOADGEN))
    body += pair_xml("n1", "dc1", [("a1", SERVERS["a1"][0], "primary"),
                                   ("b1", SERVERS["b1"][0], "backup")])
    body += pair_xml("n2", "dc1", [("a2", SERVERS["a2"][0], "primary")])
    return cluster_xml("hostile", body).replace(
        '<sip-cluster name="hostile">', '<sip-cluster name="hostile" secret="hostile-secret-0123">')


def udp_rcvbuf_errors():
    """the kernel's count of UDP datagrams dropped for a full receive buffer"""
    with open("/proc/net/snmp") as f:
        rows = [l.split() for l in f if l.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def udp_socket_drops(ip, port):
    """datagrams the kernel dropped for the UDP socket bound to ip:port (a
    full receive buffer): /proc/net/udp's last column"""
    a = socket.inet_aton(ip)
    want = "%02X%02X%02X%02X:%04X" % (a[3], a[2], a[1], a[0], port)
    with open("/proc/net/udp") as f:
        for line in f:
            col = line.split()
            if len(col) > 12 and col[1] == want:
                return int(col[-1])
    return 0


def pkg_used(rundir):
    out = kamcmd(rundir, "pkg.stats").stdout
    return sum(int(x) for x in re.findall(r"used:\s*(\d+)", out))


class Attack:
    """Generates hostile messages; every one aimed at P1."""

    def __init__(self, sinks, seed=7):
        self.r = random.Random(seed)
        self.sinks = sinks
        self.kinds = [self.truncated, self.bad_clen, self.huge_header, self.many_vias,
                      self.bad_uri, self.garbage_routes, self.foreign_in_dialog,
                      self.foreign_initial, self.register_absurd, self.register_path,
                      self.register_contacts, self.kdmq, self.xgr, self.stray_reply,
                      self.random_bytes, self.cancel_ack, self.maxfwd_zero,
                      self.bad_pin]

    def sink(self):
        s = self.r.choice(self.sinks)
        return "%s:%d" % (s.ip, s.port)

    def valid(self, method="INVITE", ruri=None, extra=(), body=""):
        cid = uuid.uuid4().hex
        ruri = ruri or "sip:dn%d@sipcluster.test" % self.r.randint(1000, 9999)
        h = ["%s %s SIP/2.0" % (method, ruri),
             "Via: SIP/2.0/UDP {SRC};branch=z9hG4bK%s;rport" % cid[:12],
             "Max-Forwards: 70", "From: <sip:evil@x.test>;tag=%s" % cid[12:20],
             "To: <%s>" % ruri, "Call-ID: %s" % cid, "CSeq: 1 %s" % method,
             "Contact: <sip:evil@{SRC}>"] + list(extra)
        return "\r\n".join(h + ["Content-Length: %d" % len(body), "", ""]) + body

    def truncated(self):
        m = self.valid(body="v=0\r\no=- 1 1 IN IP4 127.26.9.99\r\n")
        return m[:self.r.randint(1, len(m) - 1)]

    def bad_clen(self):
        v = self.r.choice(["-1", "99999", "abc", "", "4294967296", "0x10"])
        return self.valid().replace("Content-Length: 0", "Content-Length: %s" % v) + "x" * 10

    def huge_header(self):
        n = self.r.choice([15000, 20000, 60000])
        return self.valid(extra=["X-Huge: %s" % ("h" * n)])

    def many_vias(self):
        vias = "v: " + ",".join("SIP/2.0/UDP 10.%d.%d.%d;branch=z9hG4bK%d" % (
            i % 200, i % 100, i % 50, i) for i in range(1000))
        return self.valid(extra=[vias])

    def bad_uri(self):
        u = self.r.choice(["sip:", "sip:@", "sip:[::1", "sip:a@b:99999", "sip:a@\x01\x02",
                           "sip:%s" % ("a" * 3000), "tel:", "sip:a@b;lr;lr;lr=;=",
                           "sips:[zz::1]:5061", "<sip:a@b>"])
        return self.valid(ruri=u)

    def garbage_routes(self):
        g = self.r.choice(["<", "<>", "<sip:>", "<sip:%s>" % ("r" * 2000), ",,,",
                           "<sip:%s;lr>, garbage" % self.sink(), "\x00\x01",
                           "<sip:127.26.0.1;lr>" * 200])
        hdr = self.r.choice(["Route", "Record-Route", "Path", "Contact"])
        return self.valid(method=self.r.choice(["INVITE", "MESSAGE", "REGISTER"]),
                          extra=["%s: %s" % (hdr, g)])

    def foreign_in_dialog(self):
        ours = "<sip:%s:5060;lr>" % P1[0]
        routes = self.r.choice([[ours + ", <sip:%s;lr>" % self.sink()],
                                [ours, "<sip:%s;lr>" % self.sink()],
                                ["<sip:%s;lr>" % self.sink()]])
        m = self.r.choice(["BYE", "INVITE", "MESSAGE", "NOTIFY", "ACK", "UPDATE"])
        msg = self.valid(method=m, ruri="sip:x@%s" % self.sink(),
                         extra=["Route: %s" % r for r in routes])
        return msg.replace("To: <sip:x@%s>" % self.sink(), "To: <sip:x@y>;tag=1")

    def foreign_initial(self):
        return self.valid(extra=["Route: <sip:%s:5060;lr>, <sip:%s;lr>" % (P1[0], self.sink())])

    def register_absurd(self):
        e = self.r.choice(["-1", "99999999999", "abc", "", "0x10", "1e9", "2147483648"])
        m = self.valid(method="REGISTER", ruri="sip:sipcluster.test",
                       extra=["Expires: %s" % e])
        return m.replace("To: <sip:sipcluster.test>",
                         "To: <sip:absurd%d@sipcluster.test>" % self.r.randint(0, 999))

    def register_path(self):
        m = self.valid(method="REGISTER", ruri="sip:sipcluster.test",
                       extra=["Path: <sip:%s;lr>" % self.sink(), "Supported: path",
                              "Expires: 600"])
        return m.replace("To: <sip:sipcluster.test>", "To: <sip:pathsmuggler@sipcluster.test>")

    def register_contacts(self):
        n = self.r.choice([17, 50, 400])
        c = ", ".join("<sip:c%d@10.0.%d.%d>" % (i, i // 250, i % 250) for i in range(n))
        m = self.valid(method="REGISTER", ruri="sip:sipcluster.test",
                       extra=["Contact: %s" % c, "Expires: 600"])
        return m.replace("To: <sip:sipcluster.test>", "To: <sip:manyc@sipcluster.test>")

    def kdmq(self):
        body = ('{"action":1,"aor":"kdmqevil","ruid":"x-%d","c":"sip:evil@%s",'
                '"received":"","path":"<sip:%s;lr>","callid":"e","user_agent":"",'
                '"instance":"","expires":%d,"cseq":1,"flags":0,"cflags":0,"q":-1,'
                '"last_modified":0,"methods":-1,"reg_id":0,"server_id":9}'
                % (self.r.randint(0, 1 << 30), self.sink(), self.sink(), int(time.time()) + 600))
        return self.valid(method="KDMQ", ruri="sip:usrloc@%s:5060" % P1[0],
                          extra=["Content-Type: application/json"], body=body)

    def xgr(self):
        return self.valid(method=self.r.choice(["INVITE", "MESSAGE"]),
                          extra=["X-Genesys-Route: <sip:%s>" % self.sink()])

    def stray_reply(self):
        return ("SIP/2.0 %d X\r\nVia: SIP/2.0/UDP %s:5060;branch=z9hG4bKnope%d\r\n"
                "Via: SIP/2.0/UDP %s;branch=z9hG4bKv\r\nFrom: <sip:a@b>;tag=1\r\n"
                "To: <sip:c@d>;tag=2\r\nCall-ID: stray%d\r\nCSeq: 1 INVITE\r\n"
                "Content-Length: 0\r\n\r\n" % (self.r.choice([100, 180, 200, 486]), P1[0],
                                              self.r.randint(0, 1 << 30), self.sink(),
                                              self.r.randint(0, 1 << 30)))

    def random_bytes(self):
        return bytes(self.r.getrandbits(8) for _ in range(self.r.randint(1, 1500)))

    def cancel_ack(self):
        return self.valid(method=self.r.choice(["CANCEL", "ACK", "PRACK"]))

    def maxfwd_zero(self):
        return self.valid().replace("Max-Forwards: 70", "Max-Forwards: 0")

    def bad_pin(self):
        pin = self.r.choice(["n2~0000000000000000", "n9", "n1~zz", "n1;lr", "%00"])
        msg = self.valid(method="BYE", ruri="sip:x@%s" % self.sink(),
                         extra=["Route: <sip:%s:5060;lr;scp=%s>" % (P1[0], pin)])
        return msg.replace("To: <sip:x@%s>" % self.sink(), "To: <sip:x@y>;tag=1")

    def next(self):
        return self.r.choice(self.kinds)()


class TestHostileTraffic(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("hostile", doc())
        for name, (addr, role) in SERVERS.items():
            c.start_standin(name, addr, backup=(role == "backup"))
        for p in ("p1", "p2"):
            c.start_proxy(p, ARGS)
        cls.sinks = [Sink("127.66.26.%d" % i) for i in (1, 2, 3)]
        assert wait_until(lambda: all(
            p["state"] == "in-service" for p in c.pairs("p1").values()), 10)
        # the SIP Servers authenticate every REGISTER (digest): attackers
        # do not know a password

    @classmethod
    def tearDownClass(cls):
        for s in cls.sinks:
            s.close()
        cls.c.stop_all()

    def listeners(self):
        """the UDP sockets of the proxies and the stand-ins"""
        out = {"p1": P1, "p2": P2}
        out.update({n: (a, 5060) for n, (a, _) in SERVERS.items()})
        return out

    def send_attack(self, n, stop):
        """n messages over UDP from 400 addresses (each below the per-source
        rate limit), about 1,000 per second: a 2-core machine shared with
        the stand-ins and SIPp lost 15 % of what reached the proxy at 2,000
        per second (a lost good reply is retransmitted, but three in a row
        failed a call)"""
        atk = Attack(self.sinks)
        socks = []
        for ip in ATTACKERS:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, 0))
            socks.append(s)
        sent = 0
        t0 = time.monotonic()
        try:
            while sent < n and not stop.is_set():
                s = socks[sent % len(socks)]
                m = atk.next()
                src = "%s:%d" % s.getsockname()
                if isinstance(m, str):
                    m = m.replace("{SRC}", src).encode(errors="replace")
                try:
                    s.sendto(m[:65000], P1)
                except OSError:
                    pass
                sent += 1
                if sent % 100 == 0:  # about 1,000 per second
                    lag = sent / 1000.0 - (time.monotonic() - t0)
                    if lag > 0:
                        time.sleep(lag)
        finally:
            for s in socks:
                s.close()
        self.sent = sent

    def flood(self, n, rate=1000):
        """one source far above the per-source limit (rate/s against pike's
        50/s): pike stops it. Paced: sent in one burst it overran the
        proxy's UDP receive buffer (the kernel dropped a stand-in's three
        200s to one good BYE, which then timed out), which no SIP proxy
        can prevent and is not what this test is about"""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((FLOODER, 0))
        atk = Attack(self.sinks, seed=11)
        t0 = time.monotonic()
        for i in range(n):
            m = atk.valid(method="OPTIONS", ruri="sip:flood@%s:5060" % P1[0]).replace(
                "{SRC}", "%s:%d" % s.getsockname())
            s.sendto(m.encode(), P1)
            if i % 100 == 99:
                lag = (i + 1) / float(rate) - (time.monotonic() - t0)
                if lag > 0:
                    time.sleep(lag)
        s.close()

    def tcp_abuse(self, n_idle, n_half):
        conns = []
        for i in range(n_idle + n_half):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((ATTACKERS[i % len(ATTACKERS)], 0))
            try:
                s.connect(P1)
            except OSError:
                s.close()
                continue
            if i >= n_idle:  # half a request, then nothing
                s.send(b"INVITE sip:x@sipcluster.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.26.9.99")
            conns.append(s)
        return conns

    def test_hostile_traffic_during_calls(self):
        p1 = self.c.rundir("p1")
        # warm up: transactions, usrloc, dialogs touched once
        rc, out = self.calls(40, 20, "warmup")
        self.assertEqual(rc, 0, out[-2000:])
        time.sleep(6)
        shm0, pkg0 = shm_used(p1), pkg_used(p1)
        log0 = len(self.c.log("p1").splitlines())
        self.assertGreater(pkg0, 0, "pkg.stats reports nothing (allocator?)")

        drops0 = udp_rcvbuf_errors()
        own0 = {n: udp_socket_drops(*a) for n, a in self.listeners().items()}
        # idle and half-open TCP connections held all along
        conns = self.tcp_abuse(300, 100)
        stop = threading.Event()
        attacker = threading.Thread(target=self.send_attack, args=(N_ATTACK, stop))
        t0 = time.monotonic()
        attacker.start()
        # the good calls, through the whole attack
        errfile = os.path.join(RUNS, "hostile", "good-errors.log")
        if os.path.exists(errfile):
            os.unlink(errfile)
        load = subprocess.Popen(
            ["sipp", "-nostdin", "-sf", SIPP_UAC, "-i", LOADGEN, "-p", "5070",
             "-m", "800", "-r", "20", "-d", "500", "-timeout", "120",
             "-trace_stat", "-stf", os.path.join(RUNS, "hostile", "good.csv"),
             "-trace_err", "-error_file", errfile,
             "%s:%d" % P1], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # a failed assertion below must not leave SIPp holding its port
        self.addCleanup(lambda: load.poll() is None and load.kill())
        time.sleep(3)
        self.flood(5000)
        # a TCP endpoint registers and is reached mid-attack
        ep = Endpoint(B + ".9.1", P1, "goodtcp", transport="tcp")
        r = ep.register(600)
        self.assertEqual(reply_code(r), 200, r)
        send_raw(sip_msg("MESSAGE sip:goodtcp@sipcluster.test SIP/2.0", [
            "Via: SIP/2.0/UDP {LIP}:{LPORT};branch=z9hG4bK%s" % uuid.uuid4().hex[:10],
            "Max-Forwards: 70", "From: <sip:srv@x>;tag=1",
            "To: <sip:goodtcp@sipcluster.test>", "Call-ID: %s" % uuid.uuid4().hex,
            "CSeq: 1 MESSAGE", "X-Standin-Forward: sip:%s:5060" % P1[0]]),
            (SERVERS["a1"][0], 5060), B + ".9.3", want=0, timeout=0.1)
        msg, _ = ep.recv(5)
        self.assertIsNotNone(msg, "the TCP endpoint was not reached during the attack")
        self.assertTrue(msg.startswith("MESSAGE "), msg)
        ep.answer(msg)

        out, _ = load.communicate(timeout=180)
        stop.set()
        attacker.join(60)
        took = time.monotonic() - t0
        for s in conns:
            s.close()
        ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
        failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
        # datagrams the kernel dropped: on the host (most of them replies
        # to the attackers, who never read), and at the proxies and the
        # stand-ins (a good message lost there is only retransmitted)
        own = {n: udp_socket_drops(*a) - own0[n] for n, a in self.listeners().items()}
        drops = "UDP receive-buffer drops: %d on the host; %s" % (
            udp_rcvbuf_errors() - drops0,
            ", ".join("%s %d" % kv for kv in sorted(own.items())))
        print("\n    %d hostile messages + 5,000 flood + 400 TCP connections in %.0f s; "
              "good calls: %s ok, %s failed; %s" % (
                  self.sent, took, ok and ok.group(1), failed and failed.group(1), drops),
              end=" ", flush=True)
        errors = drops + "\n"
        if os.path.exists(errfile):
            with open(errfile, errors="replace") as f:
                errors = f.read()[-3000:]
        self.assertEqual(load.returncode, 0, out[-3000:] + "\nSIPp's errors:\n" + errors)
        self.assertEqual(int(ok.group(1)), 800)

        # still alive and answering
        self.assertTrue(kamcmd(p1, "core.uptime").stdout)
        log = self.c.log("p1")
        # Kamailio 6.0 logs a slow TCP connection it closes (our slowloris
        # attackers) at CRITICAL: that is the defence, not a crash
        crit = [l for l in log.splitlines()
                if re.search(r"(?i)(segfault|signal 11|core dump|CRITICAL)", l)
                and "message processing timeout on connection" not in l]
        self.assertEqual(crit, [])
        # no foreign host received anything
        time.sleep(1)
        got = [g for s in self.sinks for g in s.got]
        self.assertEqual(got, [], "hosts outside the cluster received traffic")
        # usrloc: the TCP endpoint, nothing of the attack
        aors = set(ul_dump(p1).keys())
        self.assertEqual(aors, {"goodtcp"}, aors)
        self.assertEqual(set(ul_dump(self.c.rundir("p2")).keys()), {"goodtcp"})
        ep.register(0)
        ep.close()
        # the module logs a refusal once per source per interval, whatever
        # the attack (Kamailio's core logs each unparsable message itself)
        new = log.splitlines()[log0:]
        ours = [l for l in new if "sc_refuse_log" in l]
        print("%d log lines, %d of them the module's refusals;" % (len(new), len(ours)),
              end=" ", flush=True)
        sources = [re.search(r"from ([0-9.]+):", l).group(1) for l in ours]
        self.assertEqual(len(sources), len(set(sources)), "a source logged twice")
        # (+1: the flooder, whose drops are logged once too)
        self.assertLessEqual(len(ours), len(ATTACKERS) + 3)
        # the flood: dropped without an answer, but counted and logged
        flood = [l for l in ours if "over the per-source request limit" in l]
        self.assertEqual(len(flood), 1, flood)
        self.assertIn("from %s:" % FLOODER, flood[0])
        self.assertGreater(self.c.stats("p1").get("flood_dropped", 0), 2500)
        # memory back at its baseline once transactions are gone
        def settled():
            return (shm_used(p1) < shm0 + 256 * 1024
                    and pkg_used(p1) < pkg0 + 256 * 1024)
        back = wait_until(settled, 60, 1)
        print("shm %+.0f KB, pkg %+.0f KB after the attack"
              % ((shm_used(p1) - shm0) / 1024.0, (pkg_used(p1) - pkg0) / 1024.0),
              end=" ", flush=True)
        self.assertTrue(back)

    def calls(self, n, rate, tag):
        log = os.path.join(RUNS, "hostile", "%s.log" % tag)
        p = subprocess.run(["sipp", "-nostdin", "-sf", SIPP_UAC, "-i", LOADGEN, "-p", "5070",
                            "-m", str(n), "-r", str(rate), "-d", "200", "-timeout", "60",
                            "%s:%d" % P1], capture_output=True, text=True, timeout=90)
        return p.returncode, p.stdout + p.stderr


if __name__ == "__main__":
    unittest.main()
