"""Foundation: the module loads into Debian's kamailio, discovers the cluster
from its document, refuses bad documents with file:line:reason, reloads
atomically, and the lab brings up 2 data centers on loopback."""

import os
import re
import socket
import subprocess
import time
import unittest

from harness import (CFG, LAB, MODULE, PROXY, RUNS, TOP, Cluster, as_list, kamcmd,
                     parse_kamcmd, reply_code, sip_request, wait_until,
                     cluster_xml, pair_xml, proxy_xml)

B = "127.21"  # this module's address block


def lab_doc(b=B):
    body = ""
    for dc in (1, 2):
        for i, x in ((1, "a"), (2, "b")):
            body += proxy_xml("proxy-dc%d-%s" % (dc, x), "%s.%d.%d" % (b, dc, i), "dc%d" % dc)
    for dc in (1, 2):
        for n in (1, 2):
            body += pair_xml("node-dc%d-%d" % (dc, n), "dc%d" % dc, [
                ("sips-dc%d-%da" % (dc, n), "%s.%d.%d1" % (b, dc, n), "primary"),
                ("sips-dc%d-%db" % (dc, n), "%s.%d.%d2" % (b, dc, n), "backup"),
            ])
    return cluster_xml("lab-test", body)


class TestLab(unittest.TestCase):
    """make lab's code: 8 stand-ins and 4 proxies from one document."""

    @classmethod
    def setUpClass(cls):
        cls.dir = os.path.join(RUNS, "lab")
        subprocess.run([os.path.join(LAB, "lab"), "stop", "--dir", cls.dir],
                       capture_output=True)
        os.makedirs(cls.dir, exist_ok=True)
        cls.doc = os.path.join(RUNS, "lab-cluster.xml")
        with open(cls.doc, "w") as f:
            f.write(lab_doc())
        p = subprocess.run([os.path.join(LAB, "lab"), "start", "--cluster", cls.doc,
                            "--dir", cls.dir, "--", "-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1"],
                           capture_output=True, text=True, timeout=120)
        cls.start_out = p.stdout + p.stderr
        cls.start_rc = p.returncode

    @classmethod
    def tearDownClass(cls):
        p = subprocess.run([os.path.join(LAB, "lab"), "stop", "--dir", cls.dir],
                           capture_output=True, text=True, timeout=60)
        cls.stop_out = p.stdout

    def test_all_up_and_topology_everywhere(self):
        self.assertEqual(self.start_rc, 0, self.start_out)
        self.assertEqual(len(re.findall(r" up$", self.start_out, re.M)), 12, self.start_out)
        for proxy in ("proxy-dc1-a", "proxy-dc1-b", "proxy-dc2-a", "proxy-dc2-b"):
            d = os.path.join(self.dir, proxy)
            t = parse_kamcmd(kamcmd(d, "sipcluster.list").stdout)
            self.assertEqual(t["proxy"], proxy)
            self.assertEqual(t["geo_location"], proxy[6:9])
            self.assertEqual((t["proxies"], t["pairs"], t["servers"]), ("4", "4", "8"))
            geos = as_list(t["GEO_LOCATIONS"])
            self.assertEqual([g["geo_location"] for g in geos], ["dc1", "dc2"])
            for g in geos:
                self.assertEqual(g["local"], "yes" if g["geo_location"] == proxy[6:9] else "no")
                proxies = as_list(g["PROXIES"])
                self.assertEqual(len(proxies), 2)
                for p in proxies:
                    self.assertEqual(p["self"], "yes" if p["name"] == proxy else "no")
                    self.assertEqual(p["port"], "5060")
                    self.assertEqual(p["transport"], "udp")
                pairs = as_list(g["PAIRS"])
                self.assertEqual(len(pairs), 2)
                for pr in pairs:
                    servers = as_list(pr["SERVERS"])
                    self.assertEqual([s["role"] for s in servers], ["primary", "backup"])
                    dc = g["geo_location"][2]
                    for s in servers:
                        self.assertTrue(s["name"].startswith("sips-dc" + dc))
                        self.assertTrue(s["address"].startswith("%s.%s." % (B, dc)))
                        self.assertEqual(s["port"], "5060")
                        self.assertEqual(s["transport"], "udp")
                        self.assertEqual(s["uri"], "sip:%s:5060" % s["address"])

    def test_pairs_come_in_service_with_primary_active(self):
        d = os.path.join(self.dir, "proxy-dc2-b")

        def all_ok():
            t = parse_kamcmd(kamcmd(d, "sipcluster.list").stdout)
            states = []
            for g in as_list(t["GEO_LOCATIONS"]):
                for pr in as_list(g["PAIRS"]):
                    srv = as_list(pr["SERVERS"])
                    states.append(pr["state"] == "in-service" and pr["active"] == srv[0]["name"]
                                  and srv[0]["last_code"] == "200")
            return len(states) == 4 and all(states)
        self.assertTrue(wait_until(all_ok, 10), kamcmd(d, "sipcluster.list").stdout)

    def test_proxy_answers_sip(self):
        r = sip_request("OPTIONS", "sip:%s.1.1:5060" % B, "%s.9.1" % B)
        self.assertEqual(reply_code(r), 200, r)

    def metrics(self, proxy_addr):
        import urllib.request
        with urllib.request.urlopen("http://%s:9090/metrics" % proxy_addr, timeout=5) as r:
            text = r.read().decode()
        out = {}
        for m in re.finditer(r'^kamailio_(sipcluster_\w+)(\{[^}]*\})? ([0-9.e+-]+)', text, re.M):
            out[m.group(1) + (m.group(2) or "").replace(" ", "")] = float(m.group(3))
        return out

    def test_prometheus_series_follow_the_state(self):
        px = "%s.1.1" % B
        key = 'sipcluster_pair_in_service{pair="node-dc1-2",geo="dc1"}'
        self.assertTrue(wait_until(lambda: self.metrics(px).get(key) == 1.0, 10))
        m0 = self.metrics(px)
        self.assertEqual(m0['sipcluster_server_active{pair="node-dc1-2",server="sips-dc1-2a",'
                            'address="%s.1.21:5060"}' % B], 1.0)
        self.assertIn("sipcluster_pings_sent", m0)        # the module's counters
        self.assertIn("sipcluster_reload_failures", m0)
        # a call: the pair's calls grow (to whichever pair SWRR picked)
        calls0 = sum(v for k, v in m0.items() if k.startswith("sipcluster_pair_calls_total"))
        r = sip_request("MESSAGE", "sip:x@%s:5060" % px, "%s.9.2" % B)
        self.assertEqual(reply_code(r), 200, r)
        m1 = self.metrics(px)
        self.assertEqual(sum(v for k, v in m1.items() if k.startswith("sipcluster_pair_calls_total")),
                         calls0 + 1)
        # scraped again without a call: the counter holds (each scrape adds
        # only what the module's counter grew by)
        m1b = self.metrics(px)
        self.assertEqual(sum(v for k, v in m1b.items() if k.startswith("sipcluster_pair_calls_total")),
                         calls0 + 1)
        # monotonic series are xhttp_prom counters, named *_total (xhttp_prom
        # writes no # TYPE lines), states are gauges
        series = {k.split("{")[0] for k in m1b}
        for name in ("pair_calls_total", "pair_registers_total", "pair_switchovers_total",
                     "pair_failovers_total", "server_pings_total", "server_requests_total",
                     "pair_in_service", "pair_drained", "server_active", "server_up",
                     "server_rtt_ms", "server_last_code"):
            self.assertIn("sipcluster_" + name, series)
        for name in ("pair_calls", "pair_registers", "server_pings", "server_requests"):
            self.assertNotIn("sipcluster_" + name, series)
        # pings only grow, scrape after scrape
        pings = lambda m: {k: v for k, v in m.items() if k.startswith("sipcluster_server_pings_total")}
        p0 = pings(m1b)
        time.sleep(1.5)
        p1 = pings(self.metrics(px))
        self.assertTrue(all(p1[k] >= v for k, v in p0.items()), (p0, p1))
        self.assertGreater(sum(p1.values()), sum(p0.values()))
        # the pair's members go silent: out of service in the series too
        sd = os.path.join(self.dir, "sips-dc1-2a")
        kamcmd(sd, "pv.shvSet", "active", "int", 0)
        try:
            self.assertTrue(wait_until(lambda: self.metrics(px).get(key) == 0.0, 8))
            m2 = self.metrics(px)
            self.assertEqual(m2['sipcluster_server_up{pair="node-dc1-2",server="sips-dc1-2a",'
                                'address="%s.1.21:5060"}' % B], 0.0)
            self.assertGreaterEqual(m2["sipcluster_pairs_out_of_service"], 1)
        finally:
            kamcmd(sd, "pv.shvSet", "active", "int", 1)
        self.assertTrue(wait_until(lambda: self.metrics(px).get(key) == 1.0, 8))

    def test_grafana_dashboard_names_only_exported_series(self):
        import json
        import urllib.request
        dash = json.load(open(os.path.join(TOP, "docs", "grafana", "sipcluster-dashboard.json")))
        exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
        names = set(re.findall(r"kamailio_[a-z_]+", " ".join(exprs)))
        with urllib.request.urlopen("http://%s.1.1:9090/metrics" % B, timeout=5) as r:
            text = r.read().decode()
        exported = set(re.findall(r"^(kamailio_[a-z_]+)", text, re.M))
        self.assertGreater(len(names), 10)
        self.assertEqual(names - exported, set())

    def test_json_rpc_over_http(self):
        """JSON-RPC over HTTP answers this host's own 127.0.0.1 only
        (HTTP_RPC_ALLOW); any other source gets 403 and runs nothing"""
        import http.client
        import json

        def post(src):
            conn = http.client.HTTPConnection("%s.1.1" % B, 9090, timeout=5,
                                              source_address=(src, 0))
            try:
                conn.request("POST", "/RPC", body=json.dumps(
                    {"jsonrpc": "2.0", "method": "sipcluster.which", "params": ["new"],
                     "id": 1}))
                r = conn.getresponse()
                return r.status, r.read().decode()
            finally:
                conn.close()
        status, body = post("127.0.0.1")
        self.assertEqual(status, 200, body)
        res = json.loads(body)["result"]
        self.assertIn(res["pair"], ("node-dc1-1", "node-dc1-2"))
        self.assertEqual(res["data_center"], "local")
        # from another address (an operator's management network is listed
        # with -A HTTP_RPC_ALLOW): refused
        for src in ("%s.9.77" % B, "%s.1.1" % B):
            status, body = post(src)
            self.assertEqual(status, 403, body)
            self.assertNotIn("result", body)


class TestStartAndReload(unittest.TestCase):
    """A single proxy: refuses bad documents, reloads atomically."""

    def setUp(self):
        self.body_ok = (proxy_xml("px", B + ".50.1", "dc1")
                        + proxy_xml("py", B + ".50.2", "dc2")
                        + pair_xml("n1", "dc1", [("s1a", B + ".50.11", "primary"),
                                                 ("s1b", B + ".50.12", "backup")])
                        + pair_xml("n2", "dc2", [("s2a", B + ".50.21", "primary")]))
        self.c = Cluster("reload", cluster_xml("rl", self.body_ok))

    def tearDown(self):
        self.c.stop_all()

    def start(self):
        self.c.start_standin("s1a", B + ".50.11")
        self.c.start_standin("s1b", B + ".50.12", backup=True)
        self.c.start_proxy("px", ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1"])

    def names(self):
        return {n: sorted(p["SERVERS"]) for n, p in self.c.pairs("px").items()}

    def test_prometheus_series_beyond_max_while_loops_are_named(self):
        # 2 pairs and 3 servers: 30 series, but the cfg loop may run 10 times
        import urllib.request
        self.c.start_standin("s1a", B + ".50.11")
        self.c.start_standin("s1b", B + ".50.12", backup=True)
        self.c.start_proxy("px", ["-A", "OOS_CHECK=1", "-A", "OOS_FORCE=1",
                                  "-A", "WITH_PROMETHEUS", "-A", "PROM_MAX_SERIES=10"])
        with urllib.request.urlopen("http://%s.50.1:9090/metrics" % B, timeout=10) as r:
            self.assertEqual(r.status, 200)
            text = r.read().decode()
        lines = [x for x in text.splitlines()
                 if x.startswith(("kamailio_sipcluster_pair_", "kamailio_sipcluster_server_"))]
        self.assertEqual(len(lines), 10, text)  # the scrape still answers, cut short
        self.assertTrue(wait_until(lambda: "30 Prometheus series (6 per HA pair and per "
                                   "server), but max_while_loops is 10" in self.c.log("px"), 3),
                        self.c.log("px")[-2000:])

    def test_bad_document_refuses_start_with_file_line_reason(self):
        bad = self.body_ok.replace('<server name="s1b" address="%s.50.12"' % B,
                                   '<server name="s1b" address="%s.50.12" port="99999"' % B)
        self.c.write(cluster_xml("rl", bad))
        p = self.c.start_proxy("px", check=False)
        self.assertNotEqual(p.returncode, 0)
        doc = cluster_xml("rl", bad).splitlines()
        line = doc.index([l for l in doc if "99999" in l][0]) + 1
        # the launcher checks the document first, with the module's loader
        self.assertIn("%s:%d:" % (self.c.file, line), p.stderr)
        self.assertIn("99999", p.stderr)

    def test_truncated_document_shows_its_parse_error(self):
        # not "proxy ... is not found": the parse error, with its line
        full = cluster_xml("rl", self.body_ok)
        cut = full[:full.index("<ha-pair") + 20]
        self.c.write(cut)
        p = self.c.start_proxy("px", check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertRegex(p.stderr, r"%s:\d+: " % re.escape(self.c.file))
        self.assertNotIn("is not found", p.stderr)
        # the module itself refuses the same document at start (kamailio
        # run directly, not through the launcher)
        d = self.c.rundir("direct")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "sipcluster-node.cfg"), "w") as f:
            f.write('#!trydef PROXY_NAME "px"\n#!trydef LISTEN_ADDR %s.50.1\n'
                    '#!trydef DMQ_SERVER "sip:%s.50.1:5060"\n' % (B, B))
        os.symlink(CFG, os.path.join(d, "kamailio.cfg"))
        r = subprocess.run(["kamailio", "-f", os.path.join(d, "kamailio.cfg"), "-DD", "-E",
                            "-w", d, "-m", "32", "-A", 'CLUSTER_FILE="%s"' % self.c.file,
                            "-A", 'SIPCLUSTER_SO="%s"' % MODULE, "-A", "NO_PERSIST",
                            "-A", 'CTL_SOCKET="unix:%s/ctl"' % d],
                           capture_output=True, text=True, timeout=20)
        self.assertNotEqual(r.returncode, 0)
        self.assertRegex(r.stderr, r"cluster document rejected, not starting: %s:\d+: "
                         % re.escape(self.c.file))

    def test_render_writes_the_node_include(self):
        out = os.path.join(self.c.dir, "node.cfg")
        p = subprocess.run([PROXY, "render", "--cluster", self.c.file, "--name", "px",
                            "--out", out], capture_output=True, text=True, timeout=20)
        self.assertEqual(p.returncode, 0, p.stderr)
        text = open(out).read()
        self.assertIn("#!trydef LISTEN_ADDR %s.50.1\n" % B, text)
        self.assertIn('#!trydef PROXY_NAME "px"\n', text)
        self.assertIn("#!trydef SERVER_ID 1\n", text)
        self.assertIn('#!trydef CLUSTER_FILE "%s"\n' % self.c.file, text)
        # an unknown proxy: event 40000, nothing written
        p = subprocess.run([PROXY, "render", "--cluster", self.c.file, "--name", "nope",
                            "--out", out + "2"], capture_output=True, text=True, timeout=20)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("[40000] proxy 'nope' is not found", p.stderr)
        self.assertFalse(os.path.exists(out + "2"))

    def test_transport_without_a_socket_refuses_start(self):
        # a TLS server in the document, and this proxy has no TLS socket
        # (started without --tls-cfg): refused, naming line and fix
        bad = self.body_ok.replace('<server name="s1b" address="%s.50.12"' % B,
                                   '<server name="s1b" address="%s.50.12" port="5061" '
                                   'transport="tls"' % B)
        self.c.write(cluster_xml("rl", bad))
        p = self.c.start_proxy("px", check=False)
        self.assertNotEqual(p.returncode, 0)
        log = self.c.log("px")
        doc = cluster_xml("rl", bad).splitlines()
        line = doc.index([l for l in doc if 'transport="tls"' in l][0]) + 1
        self.assertIn("%s:%d: server 's1b' is reached over tls, but this proxy has no tls "
                      "listen socket" % (self.c.file, line), log)
        self.assertIn("WITH_TLS", log)

    def test_proxy_not_in_document(self):
        # the module's own check: a PROXY_NAME that is not in the list
        d = self.c.rundir("ghost")
        os.makedirs(d, exist_ok=True)
        p = subprocess.run(
            ["kamailio", "-f", CFG, "-DD", "-E", "-w", d, "-m", "32",
             "-A", "LISTEN_ADDR=%s.50.1" % B, "-A", 'PROXY_NAME="ghost"',
             "-A", 'CLUSTER_FILE="%s"' % self.c.file, "-A", 'CTL_SOCKET="unix:%s/ctl"' % d,
             "-A", 'SIPCLUSTER_SO="%s"' % MODULE, "-A", "NO_PERSIST", "-A", 'DMQ_SERVER="sip:%s.50.1:5060"' % B],
            capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("[40000] proxy 'ghost' is not found in the list", p.stderr)
        # listed, but its address is not where this kamailio listens
        p = subprocess.run(
            ["kamailio", "-f", CFG, "-DD", "-E", "-w", d, "-m", "32",
             "-A", "LISTEN_ADDR=%s.50.9" % B, "-A", 'PROXY_NAME="px"',
             "-A", 'CLUSTER_FILE="%s"' % self.c.file, "-A", 'CTL_SOCKET="unix:%s/ctl"' % d,
             "-A", 'SIPCLUSTER_SO="%s"' % MODULE, "-A", "NO_PERSIST", "-A", 'DMQ_SERVER="sip:%s.50.9:5060"' % B],
            capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("[40000] proxy address (%s.50.1:5060) is not found in the list" % B,
                      p.stderr)

    def test_launcher_refuses_unknown_name(self):
        p = subprocess.run([os.path.join(TOP, "scripts", "sipcluster-proxy"), "start",
                            "--cluster", self.c.file, "--name", "nobody",
                            "--dir", self.c.rundir("nobody")],
                           capture_output=True, text=True, timeout=30)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("[40000] proxy 'nobody' is not found", p.stderr)

    def test_large_document_gets_its_shm_or_names_it(self):
        """10,000 pairs need more than 256 MB (28 KB a pair with its probes
        in flight): the launcher sizes shm for the document, and a Kamailio
        given less refuses at start naming the -m to give"""
        body = proxy_xml("px", B + ".50.1", "dc1") + proxy_xml("py", B + ".50.2", "dc2")
        for k in range(10000):
            ip = "%s.%d.%d" % (B, 100 + k // 250, 1 + k % 250)
            body += pair_xml("g%d" % k, "dc%d" % (1 + k % 2),
                             [("g%da" % k, ip, "primary")])
        self.c.write(cluster_xml("big", body))
        slow = ["-A", "OOS_CHECK=60", "-A", "OOS_FORCE=5"]
        p = self.c.start_proxy("px", slow, check=False, wait_sync=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("2 proxies, 10000 HA pairs, 10000 servers", self.c.log("px"))
        out = kamcmd(self.c.rundir("px"), "core.shmmem").stdout
        total = int(re.search(r"total:\s*(\d+)", out).group(1))
        self.assertGreater(total, 300 << 20)  # not the 256 MB default
        self.c.stop("px")
        d = self.c.rundir("px")
        p = subprocess.run([PROXY, "start", "--cluster", self.c.file, "--name", "px",
                            "--dir", d, "--shm", "128", "--"] + slow,
                           capture_output=True, text=True, timeout=60)
        self.assertNotEqual(p.returncode, 0)
        m = re.search(r"10000 HA pairs need about (\d+) MB of shared memory .* this "
                      r"Kamailio has 128 MB: start it with -m (\d+)", self.c.log("px"))
        self.assertTrue(m, self.c.log("px")[-2000:])
        self.assertGreater(int(m.group(2)), 256)

    def test_no_call_fails_while_a_large_document_reloads(self):
        """20 calls/s through a proxy whose document has 10,000 HA pairs,
        reloaded (the whole topology rebuilt and swapped) every second
        meanwhile: every call completes"""
        from harness import SIPP_UAC
        body = self.body_ok
        for k in range(10000):
            ip = "%s.%d.%d" % (B, 100 + k // 250, 1 + k % 250)
            body += pair_xml("g%d" % k, "dc2", [("g%da" % k, ip, "primary")])
        self.c.write(cluster_xml("big", body))
        self.c.start_standin("s1a", B + ".50.11")
        self.c.start_standin("s1b", B + ".50.12", backup=True)
        # one SIPp source at 20 calls/s sends 60 requests/s: above pike's
        # default for an unlisted source (a gateway is listed as an <sbc>)
        p = self.c.start_proxy("px", ["-A", "OOS_CHECK=60", "-A", "OOS_FORCE=5",
                                      "-A", "NO_PIKE"], check=False, wait_sync=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        px = self.c.rundir("px")
        # the whole list is more than kamcmd reads: one pair of it
        self.assertTrue(wait_until(
            lambda: "in-service" in kamcmd(px, "sipcluster.list", "n1").stdout, 15))
        one = parse_kamcmd(kamcmd(px, "sipcluster.list", "g77").stdout)
        self.assertEqual([p["name"] for g in as_list(one["GEO_LOCATIONS"])
                          for p in as_list(g["PAIRS"])], ["g77"])
        self.assertIn("404", kamcmd(px, "sipcluster.list", "nosuch", check=False).stdout
                      + kamcmd(px, "sipcluster.list", "nosuch", check=False).stderr)
        proc = subprocess.Popen(
            ["sipp", "-nostdin", "-sf", SIPP_UAC, "-i", B + ".9.20", "-p", "0",
             "-m", "300", "-r", "20", "-d", "200", "-timeout", "60", "%s.50.1:5060" % B],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        reloads, took = 0, []
        time.sleep(1.0)
        while proc.poll() is None and reloads < 40:
            t = time.monotonic()
            r = kamcmd(px, "sipcluster.reload", timeout=60)
            took.append(time.monotonic() - t)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            reloads += 1
            time.sleep(0.5)
        out, _ = proc.communicate(timeout=90)
        ok = re.search(r"Successful call\s*\|\s*\d+\s*\|\s*(\d+)", out)
        failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out)
        print("\n    300 calls at 20/s, %d reloads of 10,000 pairs (median %.2f s): "
              "%s ok, %s failed" % (reloads, sorted(took)[len(took) // 2] if took else -1,
                                    ok and ok.group(1), failed and failed.group(1)),
              end=" ", flush=True)
        self.assertEqual(proc.returncode, 0, out[-3000:])
        self.assertEqual(int(ok.group(1)), 300)
        self.assertEqual(int(failed.group(1)), 0)
        self.assertGreaterEqual(reloads, 8)

    def test_sync_status_shows_a_new_silent_proxy_as_pending(self):
        """a proxy added to the document after the start-up sync has
        answered nothing: sync_status says pending, not done"""
        self.start()
        # py (listed, not running) never answers: the start-up sync goes on
        # without it after SYNC_WAIT
        px = self.c.rundir("px")
        self.assertTrue(wait_until(lambda: self.c.sync_status("px")[0], 20))
        ready, peers, out = self.c.sync_status("px")
        self.assertNotEqual(peers.get("py"), "done", out)
        self.c.write(cluster_xml("rl", self.body_ok + proxy_xml("pz", B + ".50.3", "dc1")))
        self.assertEqual(kamcmd(px, "sipcluster.reload").returncode, 0)
        # the sync process takes the new peer list at its next tick
        self.assertTrue(wait_until(lambda: "pz" in self.c.sync_status("px")[1], 5))
        for _ in range(3):
            ready, peers, out = self.c.sync_status("px")
            self.assertIn(peers.get("pz"), ("pending", "no answer"), out)
            self.assertNotEqual(peers.get("py"), "done", out)
            time.sleep(1)

    def test_tombstone_journal_survives_bad_lines(self):
        """the journal read back at start-up: a line that is not JSON, one
        from a clock far ahead and one cut by a crash are skipped (the
        clock one logged), a good one kept; the proxy runs"""
        d = self.c.rundir("px")
        os.makedirs(d, exist_ok=True)
        now = int(time.time())
        good = ('{"a":"kept","c":"sip:kept@%s.9.1:5060","ci":"x","cs":2,"at":%d,"un":%d}'
                % (B, now - 5, now + 600))
        ahead = ('{"a":"ahead","c":"sip:ahead@%s.9.1:5060","ci":"y","cs":1,"at":%d,"un":%d}'
                 % (B, now + 10 ** 6, now + 10 ** 6 + 600))
        with open(os.path.join(d, "tombstones.jsonl"), "w") as f:
            f.write("not json at all\n" + ahead + "\n" + good + "\n" + good[:30])
        self.start()
        log = self.c.log("px")
        self.assertRegex(log, r"tombstone journal .*: 4 lines, 0 bindings loaded from the "
                              r"database removed again, 1 tombstones kept \(lines that were "
                              r"not whole skipped\)")
        self.assertIn("sync tombstone of ahead refused: beyond the clock", log)
        self.assertIn("has the clock gone back?", log)
        self.assertTrue(kamcmd(d, "core.uptime").stdout)
        # rewritten with what is live: the good one only
        with open(os.path.join(d, "tombstones.jsonl")) as f:
            lines = f.read().splitlines()
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('"a":"kept"', lines[0])

    def test_reload_success_keeps_state_of_existing_servers(self):
        self.start()
        self.assertTrue(wait_until(
            lambda: self.c.pairs("px")["n1"]["SERVERS"]["s1a"]["last_code"] == "200", 5))
        before = self.c.pairs("px")
        # change: drop n2, add n3, change n1's weight (members unchanged)
        body = (proxy_xml("px", B + ".50.1", "dc1") + proxy_xml("py", B + ".50.2", "dc2")
                + pair_xml("n1", "dc1", [("s1a", B + ".50.11", "primary"),
                                         ("s1b", B + ".50.12", "backup")], weight=5)
                + pair_xml("n3", "dc1", [("s3a", B + ".50.31", "primary")]))
        self.c.write(cluster_xml("rl2", body))
        p = kamcmd(self.c.rundir("px"), "sipcluster.reload")
        self.assertIn("reloaded", p.stdout)
        t = self.c.topo("px")
        self.assertEqual(t["cluster"], "rl2")
        self.assertEqual(t["reloads"], "1")
        after = self.c.pairs("px")
        self.assertEqual(sorted(after), ["n1", "n3"])
        self.assertEqual(after["n1"]["weight"], "5")
        a, b = before["n1"]["SERVERS"]["s1a"], after["n1"]["SERVERS"]["s1a"]
        self.assertEqual(a["uid"], b["uid"])
        self.assertGreaterEqual(int(b["pings"]), int(a["pings"]))
        self.assertEqual(b["last_code"], "200")
        self.assertIn("reloaded", self.c.log("px"))

    def test_reload_failure_keeps_running_topology(self):
        self.start()
        before = self.c.topo("px")
        names_before = self.names()
        self.assertEqual(names_before, {"n1": ["s1a", "s1b"], "n2": ["s2a"]})
        for bad, why in (
                (cluster_xml("rl", self.body_ok).replace("</sip-cluster>", ""),
                 "Premature end of data"),
                (cluster_xml("rl", self.body_ok.replace('role="backup"', 'role="primary"')),
                 "two servers with role 'primary'"),
                (cluster_xml("rl", self.body_ok.replace('name="px"', 'name="pz"')),
                 "[40000]"),
                ("", "empty file")):
            self.c.write(bad)
            p = kamcmd(self.c.rundir("px"), "sipcluster.reload", check=False)
            self.assertTrue(p.stdout.startswith("error: 500"), p.stdout)
            out = p.stdout + p.stderr
            self.assertIn("running topology kept", out)
            self.assertIn(why, out)
            if why not in ("[40000]",):
                self.assertRegex(out, re.escape(self.c.file) + r":\d+: ")
            after = self.c.topo("px")
            self.assertEqual(after["cluster"], before["cluster"])
            self.assertEqual(after["pairs"], before["pairs"])
            self.assertEqual(self.names(), names_before)
        t = self.c.topo("px")
        self.assertEqual(t["reload_failures"], "4")
        self.assertEqual(t["reloads"], "0")

    def test_malformed_sip_does_not_crash(self):
        self.start()
        pid = int(open(os.path.join(self.c.rundir("px"), "kamailio.pid")).read())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((B + ".9.2", 0))
        junk = [b"\x00" * 100, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n",
                b"INVITE sip:x SIP/2.0\r\nVia: garbage\r\nContent-Length: -5\r\n\r\n",
                b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: abc\r\nCall-ID:\r\n\r\n",
                bytes(range(256)) * 4, b"REGISTER sip:x SIP/2.0\r\n" + b"Contact: <" * 500]
        for j in junk * 5:
            s.sendto(j, (B + ".50.1", 5060))
        s.close()
        time.sleep(0.5)
        os.kill(pid, 0)  # still running
        r = sip_request("OPTIONS", "sip:%s.50.1:5060" % B, B + ".9.3")
        self.assertEqual(reply_code(r), 200)


class TestValidatorReportsEveryError(unittest.TestCase):
    """sipcluster-check (and sipcluster-proxy check) names every error of a
    document with its line, not only the first"""

    def test_every_error_with_its_line(self):
        d = os.path.join(RUNS, "validator")
        os.makedirs(d, exist_ok=True)
        doc = os.path.join(d, "three-errors.xml")
        with open(doc, "w") as f:
            f.write('<?xml version="1.0"?>\n<sip-cluster name="c">\n'
                    '  <proxy name="p1" server-id="1" address="127.0.0.1" geo-location="a"/>\n'
                    '  <proxy name="p2" server-id="1" address="127.0.0.2" geo-location="a"/>\n'
                    '  <ha-pair name="n1" geo-location="a">\n'
                    '    <server name="s1" address="127.0.0.1" role="primary"/>\n'
                    '    <server name="s2" address="127.0.0.3" role="primary"/>\n'
                    '  </ha-pair>\n</sip-cluster>\n')
        for cmd in ([os.path.join(TOP, "modules/sipcluster/tools/sipcluster-check"), doc],
                    [PROXY, "check", "--cluster", doc]):
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            lines = p.stderr.strip().splitlines()
            self.assertEqual(len(lines), 4, p.stderr)
            self.assertRegex(lines[0], r"three-errors\.xml:4: .*server-id 1 already used")
            self.assertRegex(lines[1], r"three-errors\.xml:6: .*already used by 'p1'")
            self.assertRegex(lines[2], r"three-errors\.xml:7: .*two servers with role")
            self.assertRegex(lines[3], r"three-errors\.xml: 3 errors$")


if __name__ == "__main__":
    unittest.main()
