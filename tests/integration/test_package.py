"""Packaging (issue 11): `make deb` builds kamailio-sipcluster-modules with
dpkg-buildpackage, lintian-clean; the package pins the exact Kamailio it was
built against; unpacked into a throw-away root (dpkg-deb -x), its module
loads in the installed kamailio (kamailio -c, then a real start), its
sipcluster-proxy sets up a stock-unit layout and its man pages render."""

import glob
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from harness import TOP, RUNS, kamcmd, parse_kamcmd, as_list, wait_until, \
    cluster_xml, pair_xml, proxy_xml

B = "127.30"
MULTIARCH = subprocess.run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"], capture_output=True,
                           text=True).stdout.strip() or "x86_64-linux-gnu"
CODENAME = subprocess.run(["sh", "-c", ". /etc/os-release && echo $VERSION_CODENAME"],
                          capture_output=True, text=True).stdout.strip()
ROOTS = os.path.join(TOP, "build", "roots")


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

    def test_2_depends_on_the_upstream_kamailio(self):
        kver = run(["dpkg-query", "-W", "-f", "${Version}", "kamailio"]).stdout
        up = re.sub(r"-[^-]*$", "", re.sub(r"^\d+:", "", kver))
        dep = run(["dpkg-deb", "-f", self.deb, "Depends"]).stdout
        self.assertIn("kamailio (>= %s), kamailio (<< %s.~)" % (kver, up), dep)
        # a Debian revision or security update of the same upstream version
        # is admitted, the next upstream version is not
        for v, ok in (("%s-99+deb99u9" % up, True), (up + ".1-1", False),
                      (re.sub(r"(\d+)$", lambda m: str(int(m.group(1)) + 1), up) + "-1", False)):
            r = run(["dpkg", "--compare-versions", v, "lt", up + ".~"])
            self.assertEqual(r.returncode == 0, ok, v)
        # one package per Debian release
        major = read("/etc/os-release").split('VERSION_ID="')[1].split(".")[0].split('"')[0]
        self.assertTrue(run(["dpkg-deb", "-f", self.deb, "Version"]).stdout.strip()
                        .endswith("+deb" + major))
        self.assertEqual(run(["dpkg-deb", "-f", self.deb, "Package"]).stdout.strip(),
                         "kamailio-sipcluster-modules")
        # apt accepts it here (dependencies satisfied), without installing
        sim = run(["apt-get", "install", "--simulate", "--no-install-recommends", self.deb])
        self.assertEqual(sim.returncode, 0, sim.stdout + sim.stderr)
        self.assertIn("Inst kamailio-sipcluster-modules", sim.stdout)

    def test_3_layout(self):
        for p in ("usr/lib/%s/kamailio/modules/sipcluster.so" % MULTIARCH,
                  "usr/sbin/sipcluster-proxy", "usr/sbin/sipcluster-check",
                  "usr/share/sipcluster/kamailio.cfg",
                  "usr/share/doc/kamailio-sipcluster-modules/examples/kemi-lua/sipcluster.lua",
                  "usr/share/doc/kamailio-sipcluster-modules/examples/kemi-lua/README.md",
                  "usr/share/sipcluster/cluster-example.xml",
                  "usr/share/sipcluster/sipcluster-local.cfg",
                  "usr/share/sipcluster/sipcluster-local-defs.cfg",
                  "usr/share/doc/kamailio-sipcluster-modules/operations-under-failure.md.gz",
                  "usr/share/doc/kamailio-sipcluster-modules/performance.md.gz",
                  "usr/share/doc/kamailio-sipcluster-modules/benchmarks.md.gz",
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

    def doc(self=None):
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
        # kamailio -c checks the document too (it runs no mod_init: the
        # module checks it when the cfg sets cluster_file)
        doc = os.path.join(etc, "sipcluster.xml")
        good = read(doc)
        with open(doc, "w") as f:
            f.write(good.replace('role="backup"', 'role="primary"'))
        c = run(["kamailio", "-c", "-f", os.path.join(etc, "kamailio.cfg"),
                 "-A", 'SIPCLUSTER_SO="%s"' % so])
        with open(doc, "w") as f:
            f.write(good)
        self.assertNotEqual(c.returncode, 0)
        self.assertRegex(c.stdout + c.stderr,
                         r"sipcluster\.xml:\d+: ha-pair 'n1' has two servers with role 'primary'")
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


def mirror():
    """this machine's Debian mirror (deb822 or one-line sources)"""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for line in read(path).splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for path in ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*.list")):
        if os.path.exists(path):
            for line in read(path).splitlines():
                p = line.split()
                if len(p) > 2 and p[0] == "deb" and "security" not in p[1]:
                    return p[1]
    return "http://deb.debian.org/debian"


class ThrowAwayRoot:
    """A fresh Debian root of this release with the stock kamailio, from a
    tarball cached in build/roots (made once with debootstrap), unpacked
    anew for each test and deleted after it."""

    # the stock kamailio and what the package needs besides (apt would
    # fetch them; dpkg -i does not)
    BASE = ["kamailio", "kamailio-sqlite-modules", "sqlite3", "libxml2"]

    def __init__(self):
        self.tar = os.path.join(ROOTS, "pkgbase-%s-%s.tar" % (
            CODENAME, hashlib.md5(" ".join(self.BASE).encode()).hexdigest()[:8]))
        os.makedirs(ROOTS, exist_ok=True)
        if not os.path.exists(self.tar):
            self._make_base()
        self.dir = tempfile.mkdtemp(prefix="pkgroot-", dir=ROOTS)
        r = run(["tar", "-xf", self.tar, "-C", self.dir])
        assert r.returncode == 0, r.stderr
        self.bound = []
        for d in ("proc", "dev"):
            r = run(["mount", "--bind", "/" + d, os.path.join(self.dir, d)])
            assert r.returncode == 0, r.stderr
            self.bound.append(os.path.join(self.dir, d))

    def _make_base(self):
        tmp = self.tar + ".d"
        shutil.rmtree(tmp, ignore_errors=True)
        r = subprocess.run(["debootstrap", "--variant=minbase", CODENAME, tmp, mirror()],
                           capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        with open(os.path.join(tmp, "usr/sbin/policy-rc.d"), "w") as f:
            f.write("#!/bin/sh\nexit 101\n")
        os.chmod(os.path.join(tmp, "usr/sbin/policy-rc.d"), 0o755)
        shutil.copy("/etc/resolv.conf", os.path.join(tmp, "etc/resolv.conf"))
        run(["mount", "--bind", "/proc", os.path.join(tmp, "proc")])
        try:
            r = subprocess.run(["chroot", tmp, "sh", "-c",
                                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
                                "apt-get install -y -qq --no-install-recommends %s "
                                "&& apt-get clean" % " ".join(self.BASE)],
                               capture_output=True, text=True, timeout=900)
        finally:
            run(["umount", "-l", os.path.join(tmp, "proc")])
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        r = run(["tar", "-cf", self.tar + ".tmp", "-C", tmp, "."])
        assert r.returncode == 0, r.stderr
        os.rename(self.tar + ".tmp", self.tar)
        shutil.rmtree(tmp, ignore_errors=True)

    def sh(self, cmd, timeout=120):
        return subprocess.run(["chroot", self.dir, "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                               "LANG=C.UTF-8", "sh", "-c", cmd],
                              capture_output=True, text=True, timeout=timeout)

    def p(self, path):
        return os.path.join(self.dir, path.lstrip("/"))

    def close(self):
        for b in reversed(self.bound):
            run(["umount", "-l", b])
        shutil.rmtree(self.dir, ignore_errors=True)


class TestPackageLifecycle(unittest.TestCase):
    """What an operator does with the package, in a fresh root of this
    release: install, setup, edit, upgrade, remove, start kamailio, purge;
    and a removal refused when nothing could replace our kamailio.cfg."""

    @classmethod
    def setUpClass(cls):
        debs = glob.glob(os.path.join(TOP, "build", "deb", "kamailio-sipcluster-modules_*.deb"))
        if len(debs) != 1:
            b = run(["make", "-s", "deb"], cwd=TOP)
            assert b.returncode == 0, b.stdout + b.stderr
            debs = glob.glob(os.path.join(TOP, "build", "deb", "kamailio-sipcluster-modules_*.deb"))
        cls.deb = debs[0]

    def setUp(self):
        self.root = ThrowAwayRoot()

    def tearDown(self):
        # only the kamailio this test started (the pid namespace is shared)
        self.root.sh("[ -f /tmp/k.pid ] && kill $(cat /tmp/k.pid) 2>/dev/null; true")
        self.root.close()

    def ok(self, cmd, timeout=120):
        r = self.root.sh(cmd, timeout)
        self.assertEqual(r.returncode, 0, "%s\n%s%s" % (cmd, r.stdout, r.stderr))
        return r.stdout + r.stderr

    def upgrade_deb(self):
        """the same package, one version later, its shipped cfg changed"""
        d = tempfile.mkdtemp(dir=self.root.p("/tmp"))
        self.assertEqual(run(["dpkg-deb", "-R", self.deb, d + "/x"]).returncode, 0)
        ctl = os.path.join(d, "x/DEBIAN/control")
        txt = read(ctl)
        ver = re.search(r"^Version: (.*)$", txt, re.M).group(1)
        with open(ctl, "w") as f:
            f.write(txt.replace("Version: " + ver, "Version: " + ver + ".1"))
        with open(os.path.join(d, "x/usr/share/sipcluster/kamailio.cfg"), "a") as f:
            f.write("# shipped in the upgrade\n")
        md5 = os.path.join(d, "x/DEBIAN/md5sums")
        if os.path.exists(md5):
            out = subprocess.run("cd %s/x && find usr -type f -exec md5sum {} + > DEBIAN/md5sums" % d,
                                 shell=True)
        r = run(["dpkg-deb", "-b", d + "/x", d + "/up.deb"])
        self.assertEqual(r.returncode, 0, r.stderr)
        return "/tmp/%s/up.deb" % os.path.basename(d)

    def test_1_install_setup_upgrade_remove_purge(self):
        R = self.root
        stock = read(R.p("/etc/kamailio/kamailio.cfg"))
        shutil.copy(self.deb, R.p("/tmp/pkg.deb"))
        out = self.ok("dpkg -i /tmp/pkg.deb")
        self.assertNotIn("does not load", out)
        # the trigger's check by hand: this kamailio loads the module
        self.assertIn("loads sipcluster.so", self.ok("sipcluster-proxy check-module"))
        with open(R.p("/etc/kamailio/sipcluster.xml"), "w") as f:
            f.write(TestDebianPackage.doc(None))
        out = self.ok("sipcluster-proxy setup --cluster /etc/kamailio/sipcluster.xml --name pk1")
        self.assertIn("kamailio.cfg.before-sipcluster", out)
        self.assertEqual(read(R.p("/etc/kamailio/kamailio.cfg.before-sipcluster")), stock)
        for f in ("sipcluster-local.cfg", "sipcluster-local-defs.cfg", "sipcluster-node.cfg"):
            self.assertTrue(os.path.exists(R.p("/etc/kamailio/" + f)), f)
        self.ok("kamailio -c -f /etc/kamailio/kamailio.cfg")

        # the operator's site policy (a hook) and an edit of the shipped cfg
        with open(R.p("/etc/kamailio/sipcluster-local.cfg"), "a") as f:
            f.write('#!define WITH_LOCAL_REQUEST\nroute[LOCAL_REQUEST] {\n'
                    '\tif($fU == "barred") {\n\t\tsl_send_reply("403", "Site policy");\n'
                    '\t\texit;\n\t}\n}\n')
        local = read(R.p("/etc/kamailio/sipcluster-local.cfg"))
        with open(R.p("/etc/kamailio/kamailio.cfg"), "a") as f:
            f.write("# an operator's edit\n")
        self.ok("kamailio -c -f /etc/kamailio/kamailio.cfg")

        # the upgrade says the shipped script changed; setup (no arguments:
        # the last ones) shows the diff, keeps the edited one, leaves the
        # local files alone
        up = self.upgrade_deb()
        out = self.ok("dpkg -i " + up)
        self.assertIn("shipped routing script differs", out)
        out = self.ok("sipcluster-proxy setup")
        self.assertIn("refreshing the setup of proxy pk1", out)
        self.assertIn("-# an operator's edit", out)
        self.assertIn("+# shipped in the upgrade", out)
        backups = glob.glob(R.p("/etc/kamailio/kamailio.cfg.2*"))
        self.assertEqual(len(backups), 1, backups)
        self.assertIn("# an operator's edit", read(backups[0]))
        self.assertEqual(read(R.p("/etc/kamailio/kamailio.cfg")),
                         read(R.p("/usr/share/sipcluster/kamailio.cfg")))
        self.assertEqual(read(R.p("/etc/kamailio/sipcluster-local.cfg")), local)
        self.assertIn("unchanged", self.ok("sipcluster-proxy setup"))
        self.ok("kamailio -c -f /etc/kamailio/kamailio.cfg")

        # removal: the stock cfg is back and the stock kamailio starts
        out = self.ok("dpkg -r kamailio-sipcluster-modules")
        self.assertEqual(read(R.p("/etc/kamailio/kamailio.cfg")), stock)
        self.assertFalse(os.path.exists(R.p("/etc/kamailio/sipcluster-node.cfg")))
        self.assertTrue(os.path.exists(R.p("/var/lib/sipcluster/location.sqlite")))
        self.ok("kamailio -c -f /etc/kamailio/kamailio.cfg")
        self.ok("kamailio -f /etc/kamailio/kamailio.cfg -l udp:%s.9.1:5090 -P /tmp/k.pid "
                "-m 64 -M 8 && sleep 1.5 && kill -0 $(cat /tmp/k.pid) && kill $(cat /tmp/k.pid)" % B)

        # purge: what setup made is gone, the document and the stock cfg stay
        self.ok("dpkg -P kamailio-sipcluster-modules")
        left = sorted(os.listdir(R.p("/etc/kamailio")))
        self.assertFalse([f for f in left if f.startswith("sipcluster") and f != "sipcluster.xml"],
                         left)
        self.assertFalse([f for f in left if f.startswith("kamailio.cfg.")], left)
        self.assertIn("sipcluster.xml", left)
        self.assertFalse(os.path.exists(R.p("/var/lib/sipcluster")))
        self.assertFalse(os.path.exists(R.p("/etc/default/kamailio.d/sipcluster")))
        self.assertEqual(read(R.p("/etc/kamailio/kamailio.cfg")), stock)

    def test_2_removal_refused_when_nothing_replaces_our_cfg(self):
        R = self.root
        shutil.copy(self.deb, R.p("/tmp/pkg.deb"))
        self.ok("dpkg -i /tmp/pkg.deb")
        with open(R.p("/etc/kamailio/sipcluster.xml"), "w") as f:
            f.write(TestDebianPackage.doc(None))
        self.ok("sipcluster-proxy setup --cluster /etc/kamailio/sipcluster.xml --name pk1")
        os.unlink(R.p("/etc/kamailio/kamailio.cfg.before-sipcluster"))
        r = R.sh("dpkg -r kamailio-sipcluster-modules")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("no previous one was kept", r.stdout + r.stderr)
        # still installed, kamailio still loads its module
        self.assertIn("install ok installed", self.ok(
            "dpkg-query -W -f '${Status}' kamailio-sipcluster-modules"))
        self.ok("kamailio -c -f /etc/kamailio/kamailio.cfg")


if __name__ == "__main__":
    unittest.main()
