"""Integration-test harness: real Kamailio proxies (the shipped cfg with the
sipcluster module), real stand-in SIP Servers (scripts/lab/sipserver.cfg) and
real SIP over loopback sockets. Every simulated host has its own 127.x.y.z.

Each test class gets its own address block (127.<block>.<dc>.<n>) and its own
run directory under build/test-runs/, and stops everything it started.
"""

import atexit
import os
import re
import shutil
import socket
import subprocess
import time
import uuid

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
RUNS = os.path.join(TOP, "build", "test-runs")
LAB = os.path.join(TOP, "scripts", "lab")
PROXY = os.path.join(TOP, "scripts", "sipcluster-proxy")
# the routing under test: "native" (kamailio-cfg/kamailio.cfg, the product)
# or "lua" (SC_ROUTING=lua: every proxy runs the KEMI Lua example instead,
# examples/kemi-lua; test_kemi always does)
LUA_SCRIPT = os.path.join(TOP, "examples", "kemi-lua", "sipcluster.lua")
LUA_DEFS = ["-A", "WITH_KEMI_LUA", "-A", 'KEMI_LUA_SCRIPT="%s"' % LUA_SCRIPT]
ROUTING = os.environ.get("SC_ROUTING", "native")
MODULE = os.path.join(TOP, "modules", "sipcluster", "sipcluster.so")
CFG = os.path.join(TOP, "kamailio-cfg", "kamailio.cfg")

_started = []  # run dirs of processes we started (for atexit clean-up)


def _kill_dir(d):
    pidf = os.path.join(d, "kamailio.pid")
    try:
        with open(pidf) as f:
            pid = int(f.read().strip())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, 15)
    except OSError:
        return
    for _ in range(50):
        try:
            os.kill(pid, 0)
        except OSError:
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, 9)
        except OSError:
            pass
    try:
        os.unlink(pidf)
    except OSError:
        pass


def _running(d):
    """a live process started in run dir d (SIGSTOPped counts as live)"""
    try:
        with open(os.path.join(d, "kamailio.pid")) as f:
            os.kill(int(f.read().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def make_location_db(path):
    """a fresh SQLite file with Kamailio's usrloc schema (what
    sipcluster-proxy start creates for each proxy); the DB_URL define"""
    schema = "/usr/share/kamailio/db_sqlite"
    # with the WAL and shared-memory index a killed proxy leaves behind,
    # sqlite3 would not create a fresh database at the same path
    for f in (path, path + "-wal", path + "-shm"):
        if os.path.exists(f):
            os.unlink(f)
    sql = ""
    for f in ("standard-create.sql", "usrloc-create.sql"):
        with open(os.path.join(schema, f)) as fh:
            sql += fh.read()
    subprocess.run(["sqlite3", path], input="PRAGMA journal_mode=WAL;\n" + sql, text=True,
                   check=True, timeout=30, capture_output=True)
    return 'DB_URL="sqlite:///%s"' % os.path.abspath(path)


@atexit.register
def _cleanup():
    for d in list(_started):
        _kill_dir(d)


# ---------------------------------------------------------------- kamcmd


def parse_kamcmd(text):
    """Parse kamcmd's structured output into dicts and lists."""
    lines = [l.strip() for l in text.splitlines() if l.strip()]
    pos = 0

    def parse_block():
        # after a "{": read until the matching "}"
        nonlocal pos
        items = {}
        arr = []
        while pos < len(lines):
            line = lines[pos]
            pos += 1
            if line == "}":
                return arr if arr and not items else items
            if line == "{":
                arr.append(parse_block())
                continue
            m = re.match(r"^([^:]+):\s?(.*)$", line)
            if not m:
                arr.append(line)
                continue
            key, val = m.group(1), m.group(2)
            if val == "{":
                items[key] = parse_block()
            else:
                items[key] = val
        return arr if arr and not items else items

    if lines and lines[0] == "{":
        pos = 1
        return parse_block()
    # list of values / "key: value" lines at top level
    out = {}
    for line in lines:
        m = re.match(r"^([^:]+):\s?(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out if out else text.strip()


def as_list(v):
    """kamcmd renders an array of one struct like a struct: normalise."""
    if isinstance(v, list):
        return v
    if isinstance(v, dict) and v:
        return [v]
    return []


def kamcmd(rundir, *args, check=True, timeout=10):
    cmd = ["kamcmd", "-s", "unix:%s/ctl" % rundir] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    # kamcmd exits 0 on an RPC fault: read the answer
    if check and (p.returncode != 0 or p.stdout.startswith("error: ")
                  or p.stderr.startswith("error: ")):
        raise RuntimeError("%s failed: %s%s" % (" ".join(cmd), p.stdout, p.stderr))
    return p


def wait_until(fn, timeout=10.0, interval=0.05):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    return last


# ---------------------------------------------------------------- SIP


def sip_request(method, ruri, src_ip, src_port=0, dst=None, headers=None,
                body="", timeout=2.0, want_reply=True):
    """Send one SIP request over UDP from src_ip:src_port; return the first
    final (or any, if none final) reply as text, or None."""
    dst = dst or _uri_hostport(ruri)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src_ip, src_port))
    lip, lport = s.getsockname()
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    callid = uuid.uuid4().hex + "@" + lip
    hdrs = [
        "%s %s SIP/2.0" % (method, ruri),
        "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (lip, lport, branch),
        "Max-Forwards: 70",
        "From: <sip:test@%s>;tag=%s" % (lip, uuid.uuid4().hex[:8]),
        "To: <%s>" % ruri,
        "Call-ID: %s" % callid,
        "CSeq: 1 %s" % method,
        "Contact: <sip:test@%s:%d>" % (lip, lport),
    ]
    hdrs += list(headers or [])
    hdrs.append("Content-Length: %d" % len(body))
    msg = "\r\n".join(hdrs) + "\r\n\r\n" + body
    s.sendto(msg.encode(), dst)
    if not want_reply:
        s.close()
        return None
    s.settimeout(timeout)
    reply = None
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            data, _ = s.recvfrom(65535)
            reply = data.decode(errors="replace")
            code = int(reply.split(" ", 2)[1])
            if code >= 200:
                break
    except (socket.timeout, ValueError, IndexError):
        pass
    finally:
        s.close()
    return reply


def _uri_hostport(uri):
    m = re.match(r"sips?:(?:[^@]+@)?([^:;>]+)(?::(\d+))?", uri)
    return (m.group(1), int(m.group(2) or 5060))


def reply_code(reply):
    if not reply:
        return None
    try:
        return int(reply.split(" ", 2)[1])
    except (ValueError, IndexError):
        return None


# ---------------------------------------------------------------- cluster


class Cluster:
    """A cluster document plus the processes of one test class."""

    def __init__(self, name, xml):
        self.name = name
        self.dir = os.path.join(RUNS, name)
        if os.path.isdir(self.dir):
            for d in os.listdir(self.dir):
                _kill_dir(os.path.join(self.dir, d))
            shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        self.file = os.path.join(self.dir, "cluster.xml")
        self.write(xml)
        self.procs = []
        self.started_at = {}

    def write(self, xml):
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            f.write(xml)
        os.replace(tmp, self.file)

    def rundir(self, name):
        return os.path.join(self.dir, name)

    def start_standin(self, name, addr, port=5060, backup=False, extra=(), tls_cfg=None):
        d = self.rundir(name)
        cmd = [os.path.join(LAB, "standin"), "start", "--name", name,
               "--addr", addr, "--port", str(port), "--dir", d]
        if backup:
            cmd.append("--backup")
        if tls_cfg:
            cmd += ["--tls-cfg", tls_cfg]
        if extra:
            cmd += ["--"] + list(extra)
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("stand-in %s failed: %s%s" % (name, p.stdout, p.stderr))
        _started.append(d)
        self.procs.append(d)
        return d

    def stop(self, name):
        d = self.rundir(name)
        _kill_dir(d)

    def sync_status(self, name):
        """sipcluster.sync_status of proxy name: (ready, {peer: state})"""
        out = kamcmd(self.rundir(name), "sipcluster.sync_status", check=False,
                     timeout=3).stdout
        ready = re.search(r"ready:\s*yes", out) is not None
        peers = dict(re.findall(r"name:\s*(\S+)\n(?:.*\n)*?\s*state:\s*([a-z ]+?)\s*\n", out))
        return ready, peers, out

    def wait_synced(self, timeout=15):
        """every running proxy of this cluster has merged its running peers'
        bindings (sipcluster.sync_status ready: yes), as a proxy that
        just started answers REGISTER with 503 until then; a proxy whose
        pending peers are all not running is left (it goes on alone after
        they time out)"""
        def ok():
            for d in self.procs:
                if not _running(d):
                    continue
                try:
                    ready, peers, out = self.sync_status(os.path.basename(d))
                except (subprocess.TimeoutExpired, OSError):
                    continue  # stopped (SIGSTOP) or not a Kamailio
                if ready or "ready:" not in out:
                    continue  # synced, or no sync (a stand-in, one proxy)
                for peer, st in peers.items():
                    if st == "pending" and _running(self.rundir(peer)):
                        return False
            return True
        return wait_until(ok, timeout, 0.05)

    def wait_dmq(self, names, timeout=20):
        """every proxy of names lists every one of names as an active DMQ
        node, and stays so: a start notification to a proxy that was not
        running yet fails to connect (DMQ over TCP) and times out 4 s later
        (tm fr_timer); dmq then marks that node pending, even when it came
        up meanwhile, until the next DMQ ping (DMQ_PING, 5 s)"""
        last = max(self.started_at.get(n, 0) for n in names)
        time.sleep(max(0.0, last + 4.5 - time.monotonic()))

        def ok():
            return all(len(re.findall(r"status: active", kamcmd(
                self.rundir(n), "dmq.list_nodes").stdout)) >= len(names)
                for n in names)
        return wait_until(ok, timeout, 0.2)

    def start_proxy(self, name, extra=(), check=True, tls_cfg=None, wait_sync=True):
        self.started_at[name] = time.monotonic()
        d = self.rundir(name)
        cmd = [PROXY, "start", "--cluster", self.file, "--name", name, "--dir", d]
        if tls_cfg:
            cmd += ["--tls-cfg", tls_cfg]
        extra = list(extra)
        if ROUTING == "lua" and "WITH_KEMI_LUA" not in extra:
            # SC_ROUTING=lua: the same test against the KEMI Lua example
            extra += LUA_DEFS
        if extra:
            cmd += ["--"] + extra
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            log = ""
            try:
                log = open(os.path.join(d, "kamailio.log")).read()[-3000:]
            except OSError:
                pass
            raise RuntimeError("proxy %s failed: %s%s\n%s" % (name, p.stdout, p.stderr, log))
        if p.returncode == 0:
            _started.append(d)
            self.procs.append(d)
            if "WITH_KEMI_LUA" in extra:
                # the Lua pass tests the Lua routing, not the native one
                r = kamcmd(d, "app_lua.list")
                if os.path.basename(LUA_SCRIPT) not in r.stdout:
                    raise RuntimeError("proxy %s: the Lua script is not loaded: %s%s"
                                       % (name, r.stdout, r.stderr))
            if wait_sync:
                self.wait_synced()
        return p

    def stop_all(self):
        for d in self.procs:
            _kill_dir(d)
        self.procs = []

    def log(self, name):
        try:
            with open(os.path.join(self.rundir(name), "kamailio.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def shv(self, name, var):
        out = kamcmd(self.rundir(name), "pv.shvGet", var).stdout
        m = re.search(r"value:\s*(-?\d+)", out)
        return int(m.group(1)) if m else None

    def set_shv(self, name, var, value):
        kamcmd(self.rundir(name), "pv.shvSet", var, "int", value)

    def topo(self, proxy):
        return parse_kamcmd(kamcmd(self.rundir(proxy), "sipcluster.list").stdout)

    def pairs(self, proxy):
        """{pair name: pair dict with 'SERVERS' as {name: server dict}}"""
        out = {}
        for g in as_list(self.topo(proxy).get("GEO_LOCATIONS")):
            for p in as_list(g.get("PAIRS")):
                p = dict(p)
                p["geo"] = g.get("geo_location")
                p["SERVERS"] = {s["name"]: s for s in as_list(p.get("SERVERS"))}
                out[p["name"]] = p
        return out

    def stats(self, proxy):
        out = kamcmd(self.rundir(proxy), "stats.get_statistics", "sipcluster:").stdout
        res = {}
        for m in re.finditer(r"sipcluster:(\w+) = (-?\d+)", out):
            res[m.group(1)] = int(m.group(2))
        return res


def pair_xml(name, geo, servers, **attrs):
    """servers: (name, address, role) or (name, address, role, port, transport)"""
    extra = "".join(' %s="%s"' % (k.replace("_", "-"), v) for k, v in attrs.items())
    s = '  <ha-pair name="%s" geo-location="%s"%s>\n' % (name, geo, extra)
    for srv in servers:
        sname, addr, role = srv[:3]
        more = ""
        if len(srv) > 3:
            more = ' port="%d" transport="%s"' % (srv[3], srv[4])
        s += '    <server name="%s" address="%s"%s role="%s"/>\n' % (sname, addr, more, role)
    return s + "  </ha-pair>\n"


def proxy_xml(name, addr, geo, port=5060, transport="udp"):
    return '  <proxy name="%s" address="%s" port="%d" transport="%s" geo-location="%s"/>\n' % (
        name, addr, port, transport, geo)


def make_pki(d, hosts):
    """a lab CA and a certificate (+ tls module cfg) per name: ip in hosts"""
    subprocess.run([os.path.join(LAB, "pki"), d] + ["%s:%s" % kv for kv in hosts.items()],
                   check=True, capture_output=True, timeout=120)
    return {n: os.path.join(d, "%s-tls.cfg" % n) for n in hosts}


def cluster_xml(name, body):
    """the document; proxies without a server-id get 1, 2, ... in order"""
    n = [0]

    def sid(m):
        n[0] += 1
        return '<proxy server-id="%d" ' % n[0]
    body = re.sub(r"<proxy (?![^>]*server-id=)", sid, body)
    return '<?xml version="1.0"?>\n<sip-cluster name="%s">\n%s</sip-cluster>\n' % (name, body)


# ---------------------------------------------------------------- a tiny UA


class Call:
    """A UDP user agent placing one call: INVITE through a proxy, then ACK and
    BYE along the Record-Route set, through any proxy."""

    def __init__(self, src_ip, src_port=0, headers=(), ruri_user="agent"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((src_ip, src_port))
        self.ip, self.port = self.sock.getsockname()
        self.callid = uuid.uuid4().hex + "@" + self.ip
        self.ftag = uuid.uuid4().hex[:10]
        self.extra = list(headers)
        self.user = ruri_user
        self.routes = []
        self.contact = None
        self.totag = None
        self.invite_reply = None

    def close(self):
        self.sock.close()

    def _hdr(self, name, msg):
        m = re.search(r"^%s:\s*(.*)$" % re.escape(name), msg, re.M | re.I)
        return m.group(1).strip() if m else None

    def _send(self, text, dst):
        self.sock.sendto(text.encode(), dst)

    def _recv_final(self, timeout, cseq_method):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.sock.settimeout(max(0.05, end - time.monotonic()))
            try:
                data, _ = self.sock.recvfrom(65535)
            except socket.timeout:
                return None
            msg = data.decode(errors="replace")
            if not msg.startswith("SIP/2.0"):
                continue
            if cseq_method not in (self._hdr("CSeq", msg) or ""):
                continue
            if reply_code(msg) >= 200:
                return msg
        return None

    def invite(self, proxy, timeout=8.0):
        ruri = "sip:%s@%s:%d" % (self.user, proxy[0], proxy[1])
        self.ruri0 = ruri
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        lines = ["INVITE %s SIP/2.0" % ruri,
                 "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.ip, self.port, branch),
                 "Max-Forwards: 70",
                 "From: <sip:ep@%s>;tag=%s" % (self.ip, self.ftag),
                 "To: <%s>" % ruri,
                 "Call-ID: %s" % self.callid,
                 "CSeq: 1 INVITE",
                 "Contact: <sip:ep@%s:%d>" % (self.ip, self.port)] + self.extra + [
                 "Content-Length: 0", "", ""]
        self._send("\r\n".join(lines), proxy)
        r = self._recv_final(timeout, "INVITE")
        self.invite_reply = r
        if r and 200 <= reply_code(r) < 300:
            rr = re.findall(r"^Record-Route:\s*(.*)$", r, re.M | re.I)
            routes = []
            for h in rr:
                routes += [x.strip() for x in h.split(",")]
            self.routes = routes  # UAC: Record-Route order as received
            c = self._hdr("Contact", r)
            self.contact = re.sub(r"^.*<([^>]+)>.*$", r"\1", c) if c else None
            to = self._hdr("To", r)
            m = re.search(r"tag=([^;>\s]+)", to or "")
            self.totag = m.group(1) if m else None
        return r

    def served_by(self, reply):
        return self._hdr("X-Served-By", reply or "")

    def in_dialog(self, method, proxy, cseq, timeout=8.0, want_reply=True):
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        lines = ["%s %s SIP/2.0" % (method, self.contact),
                 "Via: SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.ip, self.port, branch),
                 "Max-Forwards: 70"]
        lines += ["Route: %s" % r for r in self.routes]
        lines += ["From: <sip:ep@%s>;tag=%s" % (self.ip, self.ftag),
                  "To: <%s>;tag=%s" % (self.ruri0, self.totag),
                  "Call-ID: %s" % self.callid,
                  "CSeq: %d %s" % (cseq, method),
                  "Contact: <sip:ep@%s:%d>" % (self.ip, self.port),
                  "Content-Length: 0", "", ""]
        self._send("\r\n".join(lines), proxy)
        if not want_reply:
            return None
        return self._recv_final(timeout, method)

    def ack(self, proxy):
        self.in_dialog("ACK", proxy, 1, want_reply=False)

    def bye(self, proxy, timeout=8.0):
        return self.in_dialog("BYE", proxy, 2, timeout)


def sipp(args, timeout=120):
    """Run SIPp (foreground, no stdin); returns (exit code, stdout+stderr)."""
    cmd = ["sipp", "-nostdin"] + [str(a) for a in args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


SIPP_UAC = os.path.join(TOP, "tests", "sipp", "uac_rr.xml")


# ---------------------------------------------------------------- endpoint


import hashlib


def _md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class Endpoint:
    """A UA that registers (digest auth) over UDP or TCP and then answers
    requests delivered to it on the same socket/connection."""

    def __init__(self, src_ip, proxy, user, password="secret", transport="udp",
                 domain="sipcluster.test", extra_headers=(), src_port=0):
        self.proxy = proxy
        self.user = user
        self.password = password
        self.transport = transport
        self.domain = domain
        self.extra = list(extra_headers)
        self.callid = uuid.uuid4().hex + "@" + src_ip
        self.cseq = 0
        self.tag = uuid.uuid4().hex[:8]
        fam = socket.AF_INET6 if ":" in src_ip else socket.AF_INET
        if transport == "udp":
            self.sock = socket.socket(fam, socket.SOCK_DGRAM)
            self.sock.bind((src_ip, src_port))
        else:
            self.sock = socket.socket(fam, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((src_ip, src_port))
            self.sock.connect(proxy)
        self.ip, self.port = self.sock.getsockname()[:2]
        self.host = "[%s]" % self.ip if ":" in self.ip else self.ip
        self.buf = b""
        self.keepalives = {}
        self.contact = "sip:%s@%s:%d%s" % (user, self.host, self.port,
                                            "" if transport == "udp" else ";transport=tcp")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, text):
        if self.transport == "udp":
            self.sock.sendto(text.encode(), self.proxy)
        else:
            self.sock.sendall(text.encode())

    def recv(self, timeout, skip_keepalives=True):
        """next SIP message and its source, or (None, None); usrloc's OPTIONS
        keepalives are answered and counted in self.keepalives[src ip]"""
        end = time.monotonic() + timeout
        while True:
            msg, src = self._recv1(end)
            if (skip_keepalives and msg and msg.startswith("OPTIONS ")
                    and "ksrulka-" in msg):
                self.keepalives[src[0]] = self.keepalives.get(src[0], 0) + 1
                self.answer(msg, 200, "OK")
                continue
            return msg, src

    def _recv1(self, end):
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None, None
            self.sock.settimeout(left)
            try:
                if self.transport == "udp":
                    data, src = self.sock.recvfrom(65535)
                    return data.decode(errors="replace"), src
                m = self._tcp_msg()
                if m:
                    return m, self.sock.getpeername()
                chunk = self.sock.recv(65535)
                if not chunk:
                    return None, None
                self.buf += chunk
            except (socket.timeout, OSError):
                return None, None

    def _tcp_msg(self):
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return None
        head = self.buf[:i].decode(errors="replace")
        m = re.search(r"(?im)^(?:Content-Length|l):\s*(\d+)", head)
        clen = int(m.group(1)) if m else 0
        if len(self.buf) < i + 4 + clen:
            return None
        msg = self.buf[:i + 4 + clen].decode(errors="replace")
        self.buf = self.buf[i + 4 + clen:]
        return msg

    def _register_once(self, expires, auth=None, contact=None, expires_hdr=True,
                       cparams=""):
        self.cseq += 1
        ruri = "sip:%s" % self.domain
        proto = "UDP" if self.transport == "udp" else "TCP"
        lines = ["REGISTER %s SIP/2.0" % ruri,
                 "Via: SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport" % (
                     proto, self.host, self.port, uuid.uuid4().hex[:16]),
                 "Max-Forwards: 70",
                 "From: <sip:%s@%s>;tag=%s" % (self.user, self.domain, self.tag),
                 "To: <sip:%s@%s>" % (self.user, self.domain),
                 "Call-ID: %s" % self.callid,
                 "CSeq: %d REGISTER" % self.cseq,
                 "User-Agent: sipcluster-test-ua/1.0"]
        if contact == "*":
            lines.append("Contact: *")
        else:
            lines.append("Contact: <%s>%s" % (contact or self.contact, cparams))
        if expires_hdr:
            lines.append("Expires: %d" % expires)
        if auth:
            lines.append(auth)
        lines += self.extra + ["Content-Length: 0", "", ""]
        self.send("\r\n".join(lines))
        while True:
            msg, _ = self.recv(6)
            if msg is None:
                return None
            if msg.startswith("SIP/2.0") and "REGISTER" in (
                    re.search(r"(?im)^CSeq:.*$", msg).group(0)) and reply_code(msg) >= 200:
                return msg

    def register(self, expires=3600, contact=None, password=None, on_challenge=None):
        """REGISTER, answering a digest challenge; on_challenge(reply) runs
        between the challenge and the answer"""
        r = self._register_once(expires, contact=contact)
        if reply_code(r) == 401 and on_challenge:
            on_challenge(r)
        if reply_code(r) == 401:
            ch = re.search(r"(?im)^WWW-Authenticate:\s*Digest\s+(.*)$", r).group(1)
            realm = re.search(r'realm="([^"]*)"', ch).group(1)
            nonce = re.search(r'nonce="([^"]*)"', ch).group(1)
            qop = re.search(r'qop="?([a-z,-]+)', ch)
            uri = "sip:%s" % self.domain
            ha1 = _md5("%s:%s:%s" % (self.user, realm, password or self.password))
            ha2 = _md5("REGISTER:%s" % uri)
            if qop:
                cnonce, nc = uuid.uuid4().hex[:8], "00000001"
                resp = _md5("%s:%s:%s:%s:auth:%s" % (ha1, nonce, nc, cnonce, ha2))
                auth = ('Authorization: Digest username="%s", realm="%s", nonce="%s", '
                        'uri="%s", response="%s", algorithm=MD5, qop=auth, nc=%s, '
                        'cnonce="%s"' % (self.user, realm, nonce, uri, resp, nc, cnonce))
            else:
                resp = _md5("%s:%s:%s" % (ha1, nonce, ha2))
                auth = ('Authorization: Digest username="%s", realm="%s", nonce="%s", '
                        'uri="%s", response="%s", algorithm=MD5'
                        % (self.user, realm, nonce, uri, resp))
            self.challenged = True
            r = self._register_once(expires, auth=auth, contact=contact)
        return r

    def answer(self, req, code=200, reason="OK"):
        """reply to a request we received"""
        hdrs = []
        for name in ("Via", "From", "To", "Call-ID", "CSeq", "Record-Route"):
            for m in re.finditer(r"(?im)^%s:\s*(.*)$" % name, req):
                v = m.group(1).strip()
                if name == "To" and "tag=" not in v:
                    v += ";tag=" + uuid.uuid4().hex[:8]
                hdrs.append("%s: %s" % (name, v))
        text = "SIP/2.0 %d %s\r\n%s\r\nContact: <%s>\r\nContent-Length: 0\r\n\r\n" % (
            code, reason, "\r\n".join(hdrs), self.contact)
        if self.transport == "udp":
            via = re.search(r"(?im)^Via:\s*SIP/2.0/UDP\s+(\[[^\]]+\]|[^;:\s]+):(\d+)([^\r\n]*)",
                            req)
            host, port = via.group(1).strip("[]"), int(via.group(2))
            rp = re.search(r"rport=(\d+)", via.group(3))
            rc = re.search(r"received=([\d.]+|[0-9a-fA-F:]*:[0-9a-fA-F:]*)", via.group(3))
            self.sock.sendto(text.encode(), (rc.group(1) if rc else host,
                                             int(rp.group(1)) if rp else port))
        else:
            self.sock.sendall(text.encode())


def jsonrpc(rundir, method, *params, timeout=30):
    """an RPC through the proxy's JSON-RPC FIFO (rundir/rpc.fifo, what
    sipcluster-proxy start sets up): no size limit on the answer, unlike
    kamcmd's 128 KB; returns the "result" (raises on an "error")"""
    import json
    name = "sc_rpc_%d_%s" % (os.getpid(), uuid.uuid4().hex[:8])  # no dot: refused
    path = os.path.join("/tmp", name)
    os.mkfifo(path, 0o600)
    try:
        req = json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                          "reply_name": name, "id": 1})
        # the reader first: Kamailio opens the reply FIFO without blocking
        rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        fd = os.open(os.path.join(rundir, "rpc.fifo"), os.O_WRONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "w") as f:
            f.write(req + "\n")
        end = time.monotonic() + timeout
        data = b""
        try:
            while time.monotonic() < end:
                try:
                    chunk = os.read(rfd, 1 << 16)
                except BlockingIOError:
                    chunk = None
                if chunk:
                    data += chunk
                    try:
                        ans = json.loads(data)
                        break
                    except ValueError:
                        continue
                time.sleep(0.01)
            else:
                raise RuntimeError("no JSON-RPC answer to %s within %s s" % (method, timeout))
        finally:
            os.close(rfd)
    finally:
        os.unlink(path)
    if "error" in ans:
        raise RuntimeError("%s: %s" % (method, ans["error"]))
    return ans.get("result")


def ul_dump(rundir):
    """{aor: [contact dicts]} from kamcmd ul.dump"""
    out = kamcmd(rundir, "ul.dump", timeout=30).stdout
    res = {}
    aor = None
    cur = None
    for line in out.splitlines():
        line = line.strip()
        m = re.match(r"^AoR:\s*(\S+)", line)
        if m:
            aor = m.group(1)
            res.setdefault(aor, [])
            continue
        m = re.match(r"^Address:\s*(\S+)", line)
        if m and aor:
            cur = {"Address": m.group(1)}
            res[aor].append(cur)
            continue
        m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
        if m and cur is not None and m.group(1) not in ("AoR", "Contacts", "Contact", "Info"):
            cur.setdefault(m.group(1), m.group(2))
    return res


# ---------------------------------------------------------------- hostile helpers


import threading


class Sink:
    """A host OUTSIDE the cluster (an address an attacker wants the proxy to
    relay to): listens on UDP and TCP and records everything it receives.
    Tests assert that it received nothing."""

    def __init__(self, ip, port=5060):
        self.ip, self.port = ip, port
        self.got = []  # (transport, source, first line)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((ip, port))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((ip, port))
        self.tcp.listen(64)
        self.stop_ev = threading.Event()
        self.threads = [threading.Thread(target=self._udp_loop, daemon=True),
                        threading.Thread(target=self._tcp_loop, daemon=True)]
        for t in self.threads:
            t.start()

    @property
    def uri(self):
        return "sip:%s:%d" % (self.ip, self.port)

    def _udp_loop(self):
        self.udp.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                data, src = self.udp.recvfrom(65535)
            except (socket.timeout, OSError):
                continue
            self.got.append(("udp", src, data.decode(errors="replace").split("\r\n", 1)[0]))

    def _tcp_loop(self):
        self.tcp.settimeout(0.2)
        while not self.stop_ev.is_set():
            try:
                c, src = self.tcp.accept()
            except (socket.timeout, OSError):
                continue
            c.settimeout(1)
            try:
                data = c.recv(65535)
            except OSError:
                data = b""
            self.got.append(("tcp", src, data.decode(errors="replace").split("\r\n", 1)[0]))
            c.close()

    def close(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(1)
        self.udp.close()
        self.tcp.close()


def send_raw(text, dst, src_ip, src_port=0, transport="udp", timeout=2.0, want=1):
    """Send one raw SIP message; return the list of messages received back
    (up to `want` final replies or until timeout). {LIP}/{LPORT} in text are
    replaced by the local address."""
    fam = socket.AF_INET6 if ":" in src_ip else socket.AF_INET
    if transport == "udp":
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.bind((src_ip, src_port))
    else:
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((src_ip, src_port))
        s.connect(dst)
    lip, lport = s.getsockname()[:2]
    if ":" in lip:
        lip = "[%s]" % lip
    data = text.replace("{LIP}", lip).replace("{LPORT}", str(lport))
    if isinstance(data, str):
        data = data.encode()
    if transport == "udp":
        s.sendto(data, dst)
    else:
        s.sendall(data)
    out = []
    finals = 0
    end = time.monotonic() + timeout
    buf = b""
    try:
        while time.monotonic() < end and finals < want:
            s.settimeout(max(0.05, end - time.monotonic()))
            try:
                chunk = s.recv(65535) if transport != "udp" else s.recvfrom(65535)[0]
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            while True:
                i = buf.find(b"\r\n\r\n")
                if i < 0:
                    break
                head = buf[:i].decode(errors="replace")
                m = re.search(r"(?im)^(?:Content-Length|l):\s*(\d+)", head)
                clen = int(m.group(1)) if m else 0
                if len(buf) < i + 4 + clen:
                    break
                msg = buf[:i + 4 + clen].decode(errors="replace")
                buf = buf[i + 4 + clen:]
                out.append(msg)
                c = reply_code(msg) if msg.startswith("SIP/2.0") else None
                if c and c >= 200:
                    finals += 1
    finally:
        s.close()
    return out


def final_reply(msgs):
    for m in msgs or []:
        c = reply_code(m) if m.startswith("SIP/2.0") else None
        if c and c >= 200:
            return m
    return None


def sip_msg(first, headers, body=""):
    """Build a SIP message (CRLF, Content-Length added)."""
    lines = [first] + list(headers) + ["Content-Length: %d" % len(body), "", ""]
    return "\r\n".join(lines) + body


def core_stat(rundir, name):
    out = kamcmd(rundir, "stats.get_statistics", name).stdout
    m = re.search(r"= (-?\d+)", out)
    return int(m.group(1)) if m else None


def shm_used(rundir):
    out = kamcmd(rundir, "core.shmmem").stdout
    m = re.search(r"used:\s*(\d+)", out)
    return int(m.group(1)) if m else None
