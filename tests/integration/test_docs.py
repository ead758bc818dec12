"""The module's documentation covers what it exports: every modparam,
cfg function, RPC command and statistic the C code registers is described
in the docbook (modules/sipcluster/doc), and the README is what the
docbook renders to (make docs)."""

import glob
import os
import re
import shutil
import subprocess
import unittest

from harness import TOP

MOD = os.path.join(TOP, "modules", "sipcluster")
ADMIN = os.path.join(MOD, "doc", "sipcluster_admin.xml")


def src(*names):
    return "".join(open(os.path.join(MOD, n)).read() for n in names)


def exports():
    c = src("sipcluster_mod.c")
    params = re.findall(r'^\s*\{"([a-z_]+)",\s*PARAM_', c, re.M)
    cmds = re.findall(r'^\s*\{"(sipcluster_[a-z_]+)",\s*\(cmd_function\)', c, re.M)
    stats = re.findall(r'^\s*\{"([a-z_]+)",\s*(?:0|STAT_IS_FUNC),', c, re.M)
    rpcs = re.findall(r'\{"(sipcluster\.[a-z_]+)",', src("sc_rpc.c", "sc_syncd.c"))
    kemi = re.findall(r'str_init\("sipcluster"\),\s*str_init\("([a-z_]+)"\)', c)
    return params, cmds, stats, rpcs, kemi


class TestDocs(unittest.TestCase):

    def test_everything_exported_is_documented(self):
        doc = open(ADMIN).read()
        params, cmds, stats, rpcs, kemi = exports()
        # the extraction itself works (a test that cannot pass vacuously)
        self.assertGreater(len(params), 20)
        self.assertGreater(len(cmds), 15)
        self.assertGreater(len(stats), 20)
        self.assertGreaterEqual(len(rpcs), 7)
        self.assertGreater(len(kemi), 15)
        missing = [p for p in params if 'id="sipcluster.p.%s"' % p not in doc]
        self.assertEqual(missing, [], "parameters without a section")
        missing = [f for f in cmds if f + "(" not in doc]
        self.assertEqual(missing, [], "functions not documented")
        missing = [r for r in rpcs if r not in doc]
        self.assertEqual(missing, [], "RPC commands not documented")
        missing = [s for s in stats if not re.search(r"\b%s\b" % s, doc)]
        self.assertEqual(missing, [], "statistics not documented")
        kdoc = doc[doc.index("<title>KEMI</title>"):]
        missing = [k for k in kemi if k + "(" not in kdoc]
        self.assertEqual(missing, [], "KEMI functions not listed")

    def test_readme_is_rendered_from_the_docbook(self):
        if not (shutil.which("xsltproc") and shutil.which("lynx")):
            self.fail("xsltproc and lynx are needed (make deps installs them)")
        out = os.path.join(TOP, "build", "docs-check")
        shutil.rmtree(out, ignore_errors=True)
        shutil.copytree(os.path.join(MOD, "doc"), os.path.join(out, "doc"))
        xsl = glob.glob(os.path.join(TOP, "build", "kamailio-*", "doc", "docbook", "readme.xsl"))
        self.assertTrue(xsl, "Kamailio's docbook stylesheets (make deps)")
        p = subprocess.run(["make", "-s", "-C", os.path.join(out, "doc"),
                            "KTREE=" + os.path.dirname(xsl[0])],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        fresh = open(os.path.join(out, "README")).read()
        self.assertIn("sync_interval (int)", fresh)
        self.assertEqual(fresh, open(os.path.join(MOD, "README")).read(),
                         "modules/sipcluster/README is stale: run make docs")
