"""WITH_SHARED_DB: every proxy reads and writes one PostgreSQL database
(usrloc db_mode 3) instead of replicating in memory - a real PostgreSQL
server (scripts/lab/pg) on a loopback address. A binding stored through one
proxy is used by another; a restart of every proxy loses nothing; an
unregister removes the row."""

import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import (LAB, Cluster, Endpoint, kamcmd, reply_code, sip_request,
                     wait_until, cluster_xml, pair_xml, proxy_xml)

B = "127.34"
PROXIES = {"p1": B + ".1.1", "p2": B + ".1.2"}
S11 = B + ".1.11"
PG = B + ".0.10"
PG_BIN = "/usr/lib/postgresql"


def doc():
    body = "".join(proxy_xml(n, a, "dc1") for n, a in PROXIES.items())
    body += pair_xml("n1", "dc1", [("s11", S11, "primary")])
    return cluster_xml("shareddb", body)


class TestSharedDatabase(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.c = c = Cluster("shareddb", doc())
        # PostgreSQL runs as the postgres user: its directory must be
        # reachable by it (a clone under /root is not)
        cls.pgdir = tempfile.mkdtemp(prefix="sipcluster-pg-", dir="/tmp")
        p = subprocess.run([os.path.join(LAB, "pg"), "start", "--dir", cls.pgdir,
                            "--addr", PG], capture_output=True, text=True, timeout=90)
        if p.returncode != 0:
            raise RuntimeError("PostgreSQL did not start: %s%s" % (p.stdout, p.stderr))
        cls.url = p.stdout.strip()
        cls.args = ["-A", "NO_PIKE", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1",
                    "-A", "WITH_SHARED_DB", "-A", 'DB_URL="%s"' % cls.url]
        c.start_standin("s11", S11)
        for n in PROXIES:
            c.start_proxy(n, cls.args)
        assert wait_until(lambda: all(p["state"] == "in-service"
                                      for p in c.pairs("p1").values()), 10)

    @classmethod
    def tearDownClass(cls):
        cls.c.stop_all()
        subprocess.run([os.path.join(LAB, "pg"), "stop", "--dir", cls.pgdir],
                       capture_output=True, timeout=60)
        shutil.rmtree(cls.pgdir, ignore_errors=True)

    def rows(self, user):
        bins = sorted(os.listdir(PG_BIN))[-1]
        p = subprocess.run(["runuser", "-u", "postgres", "--",
                            os.path.join(PG_BIN, bins, "bin", "psql"), "-h", PG, "-U",
                            "kamailio", "-d", "kamailio", "-tAc",
                            "select contact, path from location where username='%s'" % user],
                           capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        return [l for l in p.stdout.splitlines() if l.strip()]

    def deliver(self, ep, via):
        sip_request("INVITE", "sip:%s@sipcluster.test" % ep.user, B + ".9.9",
                    dst=(S11, 5060), want_reply=False,
                    headers=["X-Standin-Forward: sip:%s:5060" % PROXIES[via]])
        msg, _ = ep.recv(5)
        self.assertIsNotNone(msg, "INVITE for %s not delivered via %s" % (ep.user, via))
        self.assertTrue(msg.startswith("INVITE "), msg)
        ep.answer(msg, 486, "Busy Here")

    def test_1_one_database_for_every_proxy_and_restart(self):
        c = self.c
        # the sync is off: the database is the one copy
        out = kamcmd(c.rundir("p1"), "sipcluster.sync_status", check=False).stdout
        self.assertIn("sync is off", out)
        ep = Endpoint(B + ".5.1", (PROXIES["p1"], 5060), "dora")
        try:
            self.assertEqual(reply_code(ep.register(600)), 200)
            rows = self.rows("dora")
            self.assertEqual(len(rows), 1, rows)
            self.assertIn("sip:dora@%s" % ep.ip, rows[0])
            # the flow is held by p1 (Path); p2 reads the binding from the DB
            self.assertIn("sip:%s" % PROXIES["p1"], rows[0])
            self.deliver(ep, "p2")
            # every proxy killed and started again: nothing to reload, nothing lost
            for n in PROXIES:
                with open(os.path.join(c.rundir(n), "kamailio.pid")) as f:
                    pid = int(f.read())
                os.killpg(pid, signal.SIGKILL)
                wait_until(lambda: not os.path.exists("/proc/%d" % pid), 5)
                os.unlink(os.path.join(c.rundir(n), "kamailio.pid"))
            for n in PROXIES:
                c.start_proxy(n, self.args)
            self.assertTrue(wait_until(lambda: all(
                p["state"] == "in-service" for p in c.pairs("p2").values()), 10))
            self.assertEqual(len(self.rows("dora")), 1)
            # UDP: the restarted p1 still sends from the same address and port
            self.deliver(ep, "p2")
            # unregistered through the other proxy: the row goes
            ep.proxy = (PROXIES["p2"], 5060)
            self.assertEqual(reply_code(ep.register(0)), 200)
            self.assertEqual(self.rows("dora"), [])
        finally:
            ep.close()


if __name__ == "__main__":
    unittest.main()
