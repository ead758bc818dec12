"""The cluster registrar: REGISTER authenticated by the SIP Server, bindings
stored on its 200 OK and replicated by dmq_usrloc to every proxy, endpoints
reached from any proxy (UDP, TCP, through an SBC), dialogs replicated.
4 proxies in 2 data centers."""

import os
import re
import socket
import subprocess
import time
import unittest

from harness import (LAB, RUNS, TOP, Call, Cluster, Endpoint, kamcmd,
                     reply_code, sip_request, sipp, ul_dump, wait_until,
                     cluster_xml, pair_xml, proxy_xml)

B = "127.24"
PROXIES = {"dc1-a": B + ".1.1", "dc1-b": B + ".1.2", "dc2-a": B + ".2.1", "dc2-b": B + ".2.2"}
SERVERS = {"s11": (B + ".1.11", "primary", "n1"), "s12": (B + ".1.12", "backup", "n1"),
           "s21": (B + ".1.21", "primary", "n2"), "s31": (B + ".2.31", "primary", "n3")}
SBC = B + ".8.1"
# bulk REGISTERs from one address: no per-source rate limit (pike) here;
# probes and relayed REGISTERs get 3 s: 10,000 REGISTERs at 500/s on 2 slow
# cores made the stand-ins miss 1 s probes (pairs out of service mid-run)
# and answer a challenge later than 1 s, so the REGISTER failed over, the
# client got the partner's nonce and its answer, sent by the AoR's hash to
# the first server, got 403 (each stand-in has its own nonce secret).
# test_99 sends its 10,000 at 250/s for the same reason (500/s lost 3-10 %
# that way on a machine 2.5x slower than usual)
ARGS = ["-A", "NO_PIKE", "-A", "WITH_DIALOG_DMQ", "-A", "OOS_CHECK=3", "-A", "OOS_FORCE=3", "-A", "SERVER_TIMEOUT=3000",
        "-A", "UL_TIMER=1", "-A", "UL_KA_MODE=1"]
REG_XML = os.path.join(TOP, "tests", "sipp", "reg_auth.xml")


def doc():
    body = "".join(proxy_xml(n, a, n[:3]) for n, a in PROXIES.items())
    body += pair_xml("n1", "dc1", [("s11", SERVERS["s11"][0], "primary"),
                                   ("s12", SERVERS["s12"][0], "backup")])
    body += pair_xml("n2", "dc1", [("s21", SERVERS["s21"][0], "primary")])
    body += pair_xml("n3", "dc2", [("s31", SERVERS["s31"][0], "primary")])
    body += '  <sbc name="sbc" address="%s" port="5060"/>\n' % SBC
    return cluster_xml("registrar", body)


def dirs(c):
    return {n: c.rundir(n) for n in PROXIES}


class TestRegistrar(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("registrar", doc())
        for name, (addr, role, _) in SERVERS.items():
            c.start_standin(name, addr, backup=(role == "backup"))
        for n in PROXIES:
            c.start_proxy(n, ARGS)
        # the SBC stand-in, in front of dc1-a
        d = c.rundir("sbc")
        os.makedirs(d, exist_ok=True)
        p = subprocess.Popen(
            ["kamailio", "-f", os.path.join(LAB, "sbc.cfg"), "-DD", "-E", "-w", d,
             "-m", "16", "-M", "4", "-A", "LISTEN_ADDR=%s" % SBC,
             "-A", 'PROXY_URI="sip:%s:5060"' % PROXIES["dc1-a"],
             "-A", 'CTL_SOCKET="unix:%s/ctl"' % d],
            stdout=open(os.path.join(d, "kamailio.log"), "w"), stderr=subprocess.STDOUT,
            start_new_session=True)
        with open(os.path.join(d, "kamailio.pid"), "w") as f:
            f.write(str(p.pid))
        c.procs.append(d)
        import harness
        harness._started.append(d)
        # DMQ: every proxy knows every other one
        assert c.wait_dmq(list(PROXIES)), kamcmd(c.rundir("dc1-a"), "dmq.list_nodes").stdout
        assert wait_until(lambda: all(
            p["state"] == "in-service" for p in c.pairs("dc1-a").values()), 10)

    @classmethod
    def tearDownClass(cls):
        cls.c.stop_all()

    def everywhere(self, aor):
        return {n: ul_dump(d).get(aor, []) for n, d in dirs(self.c).items()}

    def test_01_register_with_challenge_replicated_to_all(self):
        ep = Endpoint(B + ".9.1", (PROXIES["dc1-a"], 5060), "alice")
        r = ep.register(600)
        t200 = time.monotonic()
        self.assertEqual(reply_code(r), 200, r)
        self.assertTrue(getattr(ep, "challenged", False))
        self.assertIn("expires=600", r)

        def seen():
            return all(self.everywhere("alice").values())
        self.assertTrue(wait_until(seen, 1.0, 0.005))
        lag = (time.monotonic() - t200) * 1000
        print("\n    binding on all 4 proxies %.0f ms after the 200 OK" % lag, end=" ", flush=True)
        b = self.everywhere("alice")
        for n, cs in b.items():
            self.assertEqual(len(cs), 1, (n, cs))
            c = cs[0]
            self.assertEqual(c["Address"], ep.contact)
            self.assertEqual(c["Received"], "sip:%s:%d" % (ep.ip, ep.port))
            self.assertEqual(c["Path"], "<sip:%s:5060;lr;received=sip:%s:%d>"
                             % (PROXIES["dc1-a"], ep.ip, ep.port))
            self.assertEqual(c["User-Agent"], "sipcluster-test-ua/1.0")
            self.assertEqual(c["Server-Id"], "1")
            self.assertEqual(c["Call-ID"], ep.callid)
            self.assertLessEqual(int(c["Expires"]), 600)
            self.assertGreater(int(c["Expires"]), 590)
        self.assertEqual(b["dc1-a"][0]["Socket"], "udp:%s:5060" % PROXIES["dc1-a"])
        # un-register: gone everywhere
        r = ep.register(0)
        self.assertEqual(reply_code(r), 200)
        self.assertTrue(wait_until(lambda: not any(self.everywhere("alice").values()), 2))
        ep.close()

    def test_02_wrong_password_403_nothing_stored(self):
        st0 = self.c.stats("dc1-a")
        ep = Endpoint(B + ".9.2", (PROXIES["dc1-a"], 5060), "mallory")
        r = ep.register(600, password="guess")
        self.assertEqual(reply_code(r), 403, r)
        time.sleep(0.5)
        self.assertFalse(any(self.everywhere("mallory").values()))
        st1 = self.c.stats("dc1-a")
        self.assertEqual(st1["bindings_stored"], st0["bindings_stored"])
        self.assertEqual(st1["registers_refused"], st0["registers_refused"] + 1)
        ep.close()

    def test_03_star_unregister_and_retransmitted_200(self):
        ep = Endpoint(B + ".9.3", (PROXIES["dc1-b"], 5060), "carol")
        self.assertEqual(reply_code(ep.register(600)), 200)
        ep2 = Endpoint(B + ".9.3", (PROXIES["dc1-b"], 5060), "carol")
        self.assertEqual(reply_code(ep2.register(600)), 200)
        self.assertTrue(wait_until(lambda: all(
            len(v) == 2 for v in self.everywhere("carol").values()), 2))
        # refreshing twice does not duplicate
        self.assertEqual(reply_code(ep.register(600)), 200)
        time.sleep(0.3)
        self.assertTrue(all(len(v) == 2 for v in self.everywhere("carol").values()))
        r = ep.register(0, contact="*")
        self.assertEqual(reply_code(r), 200)
        self.assertTrue(wait_until(lambda: not any(self.everywhere("carol").values()), 2))
        ep.close()
        ep2.close()

    def deliver(self, transport, user):
        ep = Endpoint(B + ".9.4", (PROXIES["dc1-a"], 5060), user, transport=transport)
        self.assertEqual(reply_code(ep.register(600)), 200)
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("dc2-a")).get(user), 2))
        # a SIP Server in dc2 calls the endpoint through proxy dc2-a
        sip_request("INVITE", "sip:%s@sipcluster.test" % user, B + ".9.5",
                    dst=(SERVERS["s31"][0], 5060),
                    headers=["X-Standin-Forward: sip:%s:5060" % PROXIES["dc2-a"]],
                    want_reply=False)
        msg, src = ep.recv(5)
        self.assertIsNotNone(msg, "%s INVITE not delivered" % transport)
        self.assertTrue(msg.startswith("INVITE sip:%s@" % user), msg)
        self.assertEqual(src[0], PROXIES["dc1-a"])
        ep.answer(msg, 486, "Busy Here")
        return ep, msg

    def test_03b_max_contacts(self):
        ep = Endpoint(B + ".9.13", (PROXIES["dc1-a"], 5060), "ivan")
        for i in range(10):
            r = ep.register(600, contact="sip:ivan@%s:%d;dev=%d" % (ep.ip, ep.port, i))
            self.assertEqual(reply_code(r), 200, r)
        r = ep.register(600, contact="sip:ivan@%s:%d;dev=10" % (ep.ip, ep.port))
        self.assertEqual(reply_code(r), 503, r)
        self.assertIn("Too many registered contacts", r)
        # refreshing a known contact is still fine
        r = ep.register(600, contact="sip:ivan@%s:%d;dev=3" % (ep.ip, ep.port))
        self.assertEqual(reply_code(r), 200, r)
        self.assertTrue(wait_until(lambda: all(
            len(v) == 10 for v in self.everywhere("ivan").values()), 2))
        self.assertEqual(reply_code(ep.register(0, contact="*")), 200)
        ep.close()

    def test_04_any_proxy_reaches_endpoint_udp(self):
        ep, msg = self.deliver("udp", "dave")
        self.assertIn("scp=n3", msg)  # pinned to the calling server's pair
        ep.register(0)
        ep.close()

    def test_05_any_proxy_reaches_endpoint_tcp_same_connection(self):
        ep, msg = self.deliver("tcp", "erin")
        # it came in on the connection the endpoint registered on
        self.assertEqual(ep.sock.getpeername(), (PROXIES["dc1-a"], 5060))
        ep.register(0)
        ep.close()

    def test_06_register_through_sbc_keeps_its_path(self):
        ep = Endpoint(B + ".9.6", (SBC, 5060), "frank")
        self.assertEqual(reply_code(ep.register(600)), 200)
        self.assertTrue(wait_until(lambda: ul_dump(self.c.rundir("dc2-b")).get("frank"), 2))
        c = ul_dump(self.c.rundir("dc2-b"))["frank"][0]
        # our entry (with the SBC's flow), then the SBC's own
        self.assertRegex(c["Path"], r"^<sip:%s:5060;lr;received=sip:%s:5060>,\s*<sip:%s"
                         % (re.escape(PROXIES["dc1-a"]), re.escape(SBC), re.escape(SBC)))
        before = self.c.shv("sbc", "relayed")
        sip_request("INVITE", "sip:frank@sipcluster.test", B + ".9.7",
                    dst=(SERVERS["s31"][0], 5060),
                    headers=["X-Standin-Forward: sip:%s:5060" % PROXIES["dc2-b"]],
                    want_reply=False)
        msg, src = ep.recv(5)
        self.assertIsNotNone(msg)
        self.assertEqual(src[0], SBC)
        self.assertEqual(self.c.shv("sbc", "relayed"), before + 1)
        ep.answer(msg, 486, "Busy Here")
        ep.register(0)
        ep.close()

    def test_07_rendezvous_200_aors_move_only_their_own(self):
        d = self.c.rundir("dc1-a")
        eps = [Endpoint(B + ".9.8", (PROXIES["dc1-a"], 5060), "rv%03d" % i) for i in range(200)]

        def reg_all():
            out = {}
            for e in eps:
                r = e.register(600)
                self.assertEqual(reply_code(r), 200, r)
                out[e.user] = re.search(r"X-Served-By: (\S+)", r).group(1)
            return out
        first = reg_all()
        # sipcluster.which AOR says where each went
        from harness import parse_kamcmd
        for u in list(first)[:20]:
            w = parse_kamcmd(kamcmd(d, "sipcluster.which", u).stdout)
            self.assertEqual(w["member"], first[u], (u, w))
        n1 = [u for u, s in first.items() if s == "s11"]
        n2 = [u for u, s in first.items() if s == "s21"]
        self.assertEqual(len(n1) + len(n2), 200, first)
        self.assertGreater(len(n1), 60)
        self.assertGreater(len(n2), 60)
        # again: same pair for every AoR
        self.assertEqual(reg_all(), first)
        # n1 goes out of service: its AoRs move, the others stay
        kamcmd(d, "sipcluster.set_state", "n1", "out-of-service")
        try:
            third = reg_all()
        finally:
            kamcmd(d, "sipcluster.set_state", "n1", "auto")
        moved = [u for u in first if third[u] != first[u]]
        print("\n    n1 held %d AoRs, n2 %d; with n1 down %d moved" % (len(n1), len(n2), len(moved)),
              end=" ", flush=True)
        self.assertEqual(sorted(moved), sorted(n1))
        self.assertTrue(all(third[u] == "s21" for u in n1))
        for e in eps:
            e.register(0)
            e.close()

    def test_08_kdmq_from_unknown_address_refused(self):
        body = ('{"action":1,"aor":"evil","ruid":"x-1","c":"sip:evil@127.66.6.6",'
                '"received":"","path":"","callid":"e","user_agent":"","instance":"",'
                '"expires":%d,"cseq":1,"flags":0,"cflags":0,"q":-1,"last_modified":0,'
                '"methods":-1,"reg_id":0,"server_id":9}' % (int(time.time()) + 600))
        r = sip_request("KDMQ", "sip:usrloc@%s:5060" % PROXIES["dc1-a"], B + ".9.99",
                        headers=["Content-Type: application/json"], body=body)
        self.assertEqual(reply_code(r), 403, r)
        time.sleep(0.5)
        self.assertFalse(any(self.everywhere("evil").values()))
        self.assertRegex(self.c.log("dc1-a"), r"refused KDMQ from %s:\d+ \(udp\) with 403"
                         % re.escape(B + ".9.99"))

    def test_09_binding_expires_everywhere(self):
        ep = Endpoint(B + ".9.9", (PROXIES["dc2-b"], 5060), "grace")
        r = ep.register(5)
        self.assertEqual(reply_code(r), 200)
        self.assertIn("expires=5", r)
        self.assertTrue(wait_until(lambda: all(self.everywhere("grace").values()), 2))
        t0 = time.monotonic()
        self.assertTrue(wait_until(lambda: not any(self.everywhere("grace").values()), 10, 0.2))
        print("\n    5 s binding gone from all proxies after %.1f s" % (time.monotonic() - t0),
              end=" ", flush=True)
        self.assertGreaterEqual(time.monotonic() - t0, 3.0)
        ep.close()

    def test_09b_only_the_owning_proxy_pings(self):
        ep = Endpoint(B + ".9.12", (PROXIES["dc2-a"], 5060), "heidi")
        self.assertEqual(reply_code(ep.register(600)), 200)
        self.assertTrue(wait_until(lambda: all(self.everywhere("heidi").values()), 2))
        servers = {n: self.everywhere("heidi")[n][0]["Server-Id"] for n in PROXIES}
        self.assertEqual(set(servers.values()), {"3"})  # dc2-a is the third proxy
        msg, _ = ep.recv(3.5)  # only keepalives arrive meanwhile
        self.assertIsNone(msg)
        print("\n    keepalives received from %s" % ep.keepalives, end=" ", flush=True)
        self.assertEqual(set(ep.keepalives), {PROXIES["dc2-a"]})
        self.assertGreaterEqual(ep.keepalives[PROXIES["dc2-a"]], 2)
        ep.register(0)
        ep.close()

    def test_10_dialogs_replicated_and_in_dialog_via_other_proxy(self):
        # these proxies run WITH_DIALOG_DMQ: the call list is replicated
        # (routing itself needs no replicated state: the ;scp= pin)
        call = Call(B + ".9.10")
        r = call.invite((PROXIES["dc1-a"], 5060))
        self.assertEqual(reply_code(r), 200, r)
        call.ack((PROXIES["dc1-a"], 5060))
        self.assertTrue(wait_until(lambda: call.callid in kamcmd(
            self.c.rundir("dc1-b"), "dlg.list").stdout, 2))
        r = call.bye((PROXIES["dc1-b"], 5060))
        self.assertEqual(reply_code(r), 200)
        call.close()

    def test_98_registered_users_equal_ul_dump_after_churn(self):
        """the figure an operator reads (usrloc's registered_users and
        location_users statistics) is what ul.dump holds, on every proxy,
        after registrations, unregisters, re-registrations through another
        proxy, a second contact, and expiries"""
        def figures(n):
            out = kamcmd(self.c.rundir(n), "stats.get_statistics", "usrloc:").stdout
            st = {m.group(1): int(m.group(2))
                  for m in re.finditer(r"usrloc:([\w-]+) = (-?\d+)", out)}
            dump = ul_dump(self.c.rundir(n))
            churn = {a: c for a, c in dump.items() if a.startswith("churn")}
            # usrloc names the domain's statistic with the core's
            # stats_name_separator: location_users
            return (st.get("registered_users"), st.get("location_users"), len(dump),
                    len(churn), sum(len(c) for c in churn.values()))
        names = list(PROXIES)
        eps = {}
        for i in range(60):
            ep = Endpoint(B + ".10.%d" % (i + 1), (PROXIES[names[i % 4]], 5060), "churn%d" % i)
            self.assertEqual(reply_code(ep.register(600 if i < 50 else 2)), 200)
            eps[i] = ep
        # 20 unregister (at another proxy than they registered at)
        for i in range(20):
            ep = eps[i]
            ep.proxy = (PROXIES[names[(i + 1) % 4]], 5060)
            self.assertEqual(reply_code(ep.register(0)), 200)
        # 10 of them register again, 10 others add a second contact
        for i in range(10):
            self.assertEqual(reply_code(eps[i].register(600)), 200)
        second = []
        for i in range(20, 30):
            ep2 = Endpoint(B + ".11.%d" % (i + 1), (PROXIES[names[(i + 2) % 4]], 5060),
                           "churn%d" % i)
            self.assertEqual(reply_code(ep2.register(600)), 200)
            second.append(ep2)
        # the last 10 expire by themselves (2 s)
        want = (40, 50)   # AoRs churn0-9 and 20-49; contacts + 10 second ones

        def settled():
            return all(figures(n)[3:] == want for n in PROXIES)
        ok = wait_until(settled, 15, 0.5)
        got = {n: figures(n) for n in PROXIES}
        print("\n    (registered_users, location_users, ul.dump AoRs, churn AoRs, churn "
              "contacts): %s" % got, end=" ", flush=True)
        self.assertTrue(ok, got)
        # usrloc drops an expired or emptied record at its next timer run
        time.sleep(2.5)
        for n in PROXIES:
            reg, loc, dumped, _, _ = figures(n)
            self.assertEqual(reg, dumped, (n, figures(n)))
            self.assertEqual(loc, dumped, (n, figures(n)))
        for i, ep in eps.items():
            if i < 10 or 20 <= i < 50:
                ep.register(0)
            ep.close()
        for ep in second:
            ep.register(0)
            ep.close()

    def test_99_restart_proxy_gets_10000_bindings(self):
        rc, out = sipp(["-sf", REG_XML, "-s", "bulk", "-au", "bulk", "-ap", "secret",
                        "-i", B + ".9.11", "-p", "0", "-m", "10000", "-r", "250", "-l", "400",
                        "-timeout", "120", "%s:5060" % PROXIES["dc1-a"]], timeout=150)
        self.assertEqual(rc, 0, out[-2000:])

        def users(n):
            out = kamcmd(self.c.rundir(n), "stats.get_statistics", "registered_users").stdout
            m = re.search(r"= (\d+)", out)
            return int(m.group(1)) if m else -1
        self.assertTrue(wait_until(lambda: all(users(n) >= 10000 for n in PROXIES), 20, 0.5),
                        {n: users(n) for n in PROXIES})
        self.c.stop("dc1-b")
        t0 = time.monotonic()
        self.c.start_proxy("dc1-b", ARGS)
        ok = wait_until(lambda: users("dc1-b") >= 10000, 60, 0.2)
        took = time.monotonic() - t0
        print("\n    restarted dc1-b holds %d bindings %.1f s after start"
              % (users("dc1-b"), took), end=" ", flush=True)
        self.assertTrue(ok)
        for n in ("dc1-a", "dc2-a", "dc2-b"):
            log = self.c.log(n)
            self.assertNotRegex(log, r"(?i)(no more shm|could not allocate shared memory|"
                                     r"out of shm|SHM_MEM_ERROR)")


if __name__ == "__main__":
    unittest.main()
