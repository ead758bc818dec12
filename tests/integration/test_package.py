"""Packaging (issue 11): `make deb` builds kamailio-sipcluster-modules with
dpkg-buildpackage, lintian-clean; the package pins the exact Kamailio it was
built against; unpacked into a throw-away root (dpkg-deb -x), its module
loads in the installed kamailio (kamailio -c, then a real start), its
sipcluster-proxy sets up a stock-unit layout and its man pages render."""

import glob
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import TOP, RUNS, kamcmd, parse_kamcmd, as_list, wait_until, \
    cluster_xml, pair_xml, proxy_xml

B = "127.30"
MULTIARCH = subprocess.run(["gcc", "-print-multiarch"], capture_output=True,
                           text=True).stdout.strip() or "x86_64-linux-gnu"


def read(path):
    with open(path) as f:
        return f.read()


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)


class TestDebianPackage(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.build = run(["make", "-s", "deb"], cwd=TOP)
        debs = glob.glob(os.path.join(TOP, "build", "deb", "kamailio-sipcluster-modules_*.deb"))
        cls.deb = debs[0] if len(debs) == 1 else None
        cls.root = tempfile.mkdtemp(prefix="sipcluster-deb-", dir=RUNS if os.path.isdir(RUNS) else None)
        if cls.deb:
            run(["dpkg-deb", "-x", cls.deb, cls.root])
        cls.rundir = None

    @classmethod
    def tearDownClass(cls):
        if cls.rundir:
            run([os.path.join(cls.root, "usr", "sbin", "sipcluster-proxy"), "stop",
                 "--dir", cls.rundir])
        shutil.rmtree(cls.root, ignore_errors=True)

    def setUp(self):
        self.assertEqual(self.build.returncode, 0, self.build.stdout + self.build.stderr)
        self.assertIsNotNone(self.deb)

    def r(self, *p):
        return os.path.join(self.root, *p)

    def test_1_lintian_clean(self):
        log = read(os.path.join(TOP, "build", "pkg", "lintian.log"))
        bad = [l for l in log.splitlines() if l[:2] in ("E:", "W:")]
        self.assertEqual(bad, [])

    def test_2_depends_on_the_exact_kamailio(self):
        kver = run(["dpkg-query", "-W", "-f", "${Version}", "kamailio"]).stdout
        dep = run(["dpkg-deb", "-f", self.deb, "Depends"]).stdout
        self.assertIn("kamailio (= %s)" % kver, dep)
        self.assertEqual(run(["dpkg-deb", "-f", self.deb, "Package"]).stdout.strip(),
                         "kamailio-sipcluster-modules")
        # apt accepts it here (dependencies satisfied), without installing
        sim = run(["apt-get", "install", "--simulate", "--no-install-recommends", self.deb])
        self.assertEqual(sim.returncode, 0, sim.stdout + sim.stderr)
        self.assertIn("Inst kamailio-sipcluster-modules", sim.stdout)

    def test_3_layout(self):
        for p in ("usr/lib/%s/kamailio/modules/sipcluster.so" % MULTIARCH,
                  "usr/sbin/sipcluster-proxy", "usr/sbin/sipcluster-check",
                  "usr/share/sipcluster/kamailio.cfg", "usr/share/sipcluster/sipcluster.lua",
                  "usr/share/sipcluster/cluster-example.xml",
                  "usr/share/sipcluster/sipcluster.xsd",
                  "usr/share/sipcluster/grafana/sipcluster-dashboard.json",
                  "usr/share/doc/kamailio/modules/README.sipcluster.gz",
                  "usr/share/doc/kamailio-sipcluster-modules/copyright",
                  "usr/share/doc/kamailio-sipcluster-modules/README.Debian",
                  "usr/share/man/man8/sipcluster-proxy.8.gz",
                  "usr/share/man/man8/sipcluster-check.8.gz"):
            self.assertTrue(os.path.exists(self.r(p)), p)
        # nothing in /etc: the package never touches kamailio's own conffiles
        self.assertFalse(os.path.exists(self.r("etc")))
        for page in ("sipcluster-proxy", "sipcluster-check"):
            m = run(["man", "--warnings", "-l", self.r("usr/share/man/man8/%s.8.gz" % page)],
                    env=dict(os.environ, MANWIDTH="80"))
            self.assertEqual(m.returncode, 0, m.stderr)
            self.assertEqual(m.stderr.strip(), "")
            self.assertIn("SYNOPSIS", m.stdout)

    def doc(self):
        body = proxy_xml("pk1", B + ".0.1", "dc1") + proxy_xml("pk2", B + ".0.2", "dc1")
        body += pair_xml("n1", "dc1", [("a1", B + ".1.11", "primary"),
                                       ("b1", B + ".1.12", "backup")])
        return cluster_xml("pkg", body)

    def setup_etc(self):
        etc = self.r("etc", "kamailio")
        os.makedirs(etc, exist_ok=True)
        os.makedirs(self.r("etc", "default"), exist_ok=True)
        with open(os.path.join(etc, "kamailio.cfg"), "w") as f:
            f.write("#!KAMAILIO\n# the stock one\n")
        doc = os.path.join(etc, "sipcluster.xml")
        with open(doc, "w") as f:
            f.write(self.doc())
        p = run([self.r("usr/sbin/sipcluster-proxy"), "setup", "--cluster", doc,
                 "--name", "pk1", "--etc", etc])
        return etc, p

    def test_4_setup_then_kamailio_c_loads_the_installed_module(self):
        etc, p = self.setup_etc()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("# the stock one", read(os.path.join(etc, "kamailio.cfg.before-sipcluster")))
        node = read(os.path.join(etc, "sipcluster-node.cfg"))
        self.assertIn('#!trydef PROXY_NAME "pk1"', node)
        self.assertIn("#!trydef LISTEN_ADDR %s.0.1" % B, node)
        self.assertIn("SHM_MEMORY=", read(self.r("etc", "default", "kamailio.d", "sipcluster")))
        so = self.r("usr/lib/%s/kamailio/modules/sipcluster.so" % MULTIARCH)
        c = run(["kamailio", "-c", "-f", os.path.join(etc, "kamailio.cfg"),
                 "-A", 'SIPCLUSTER_SO="%s"' % so])
        out = c.stdout + c.stderr
        self.assertEqual(c.returncode, 0, out)
        self.assertIn("config file ok", out)
        # a broken document stops setup with file:line: reason
        bad = os.path.join(etc, "bad.xml")
        with open(bad, "w") as f:
            f.write(self.doc()[:-30])
        p = run([self.r("usr/sbin/sipcluster-proxy"), "setup", "--cluster", bad,
                 "--name", "pk1", "--etc", etc])
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr + p.stdout, r"bad\.xml:\d+: ")

    def test_5_installed_module_runs(self):
        etc, p = self.setup_etc()
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        so = self.r("usr/lib/%s/kamailio/modules/sipcluster.so" % MULTIARCH)
        type(self).rundir = d = os.path.join(self.root, "run")
        s = run([self.r("usr/sbin/sipcluster-proxy"), "start",
                 "--cluster", os.path.join(etc, "sipcluster.xml"), "--name", "pk1",
                 "--dir", d, "--module", so, "--", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1"])
        self.assertEqual(s.returncode, 0, s.stdout + s.stderr)
        # the installed launcher found the installed cfg
        self.assertEqual(os.path.realpath(os.path.join(d, "kamailio.cfg")),
                         self.r("usr/share/sipcluster/kamailio.cfg"))
        t = parse_kamcmd(kamcmd(d, "sipcluster.list").stdout)
        pairs = [pr["name"] for g in as_list(t["GEO_LOCATIONS"]) for pr in as_list(g["PAIRS"])]
        self.assertEqual(pairs, ["n1"])
        # nobody answers the probes: out of service after oos_check + 2 oos_force
        self.assertTrue(wait_until(lambda: "out-of-service" in kamcmd(d, "sipcluster.list").stdout, 8))


if __name__ == "__main__":
    unittest.main()
