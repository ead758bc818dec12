"""Real softphones for the integration tests: Debian's baresip, headless,
one config directory per phone, driven through its ctrl_tcp module
(netstrings of JSON), audio from the ausine tone generator, RTP statistics
from rtp_stats, a SIP trace (-s) in its log. Every phone binds to its own
127.x.y.z address."""

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import uuid

_started = []


def _cleanup():
    for p in list(_started):
        p.stop()


import atexit
atexit.register(_cleanup)


class Phone:
    def __init__(self, rundir, name, ip, user, proxy, transport="udp",
                 password="secret", domain="sipcluster.test", rtp_base=20000,
                 cafile=None, regint=600, port=5060, dns=None):
        self.dir = os.path.join(rundir, "phone-" + name)
        self.name, self.ip, self.user = name, ip, user
        self.proxy, self.transport = proxy, transport
        self.password, self.domain = password, domain
        self.rtp_base, self.cafile, self.regint = rtp_base, cafile, regint
        self.port = port
        self.dns = dns  # "ip:port" of the DNS server it asks (RFC 3263)
        self.ctrl_port = 4444
        self.proc = None
        self.sock = None
        self.events = []
        self.responses = {}
        self.lock = threading.Condition()
        self.reader = None
        self.aor = "sip:%s@%s" % (user, domain)

    def _config(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        tp_listen = self.ip + ":%d" % self.port
        lines = [
            "poll_method epoll",
            "sip_listen %s" % tp_listen,
            "call_local_timeout 30",
            "call_max_calls 4",
            "audio_buffer 20",
            "audio_player aubridge,nil",
            "audio_source ausine,440",
            "audio_alert aubridge,nil",
            "ausrc_srate 48000",
            "auplay_srate 48000",
            "ausrc_channels 2",
            "auplay_channels 2",
            "rtp_ports %d-%d" % (self.rtp_base, self.rtp_base + 20),
            "rtp_stats yes",
            "net_interface %s" % self.ip,
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module ausine.so",
            "module aubridge.so",
            "module_tmp account.so",
            "module_app contact.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            "ctrl_tcp_listen %s:%d" % (self.ip, self.ctrl_port),
        ]
        if self.cafile:
            lines.append("sip_cafile %s" % self.cafile)
        if self.dns:
            lines.append("dns_server %s" % self.dns)
        with open(os.path.join(self.dir, "config"), "w") as f:
            f.write("\n".join(lines) + "\n")
        if self.proxy:
            ob = "sip:%s:%d" % self.proxy
            if self.transport != "udp":
                ob += ";transport=%s" % self.transport
            ob = ';outbound="%s"' % ob
        else:
            # no outbound proxy: the registrar, the call and every in-dialog
            # request go where DNS says (RFC 3263)
            ob = ""
        acc = ('<%s>;auth_pass=%s%s;regint=%d;answermode=auto;'
               'audio_codecs=PCMU' % (self.aor, self.password, ob, self.regint))
        with open(os.path.join(self.dir, "accounts"), "w") as f:
            f.write(acc + "\n")
        open(os.path.join(self.dir, "contacts"), "w").close()

    def start(self, timeout=10):
        self._config()
        self.log = open(os.path.join(self.dir, "baresip.log"), "w")
        self.proc = subprocess.Popen(["baresip", "-f", self.dir, "-s"],
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        _started.append(self)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self.sock = socket.create_connection((self.ip, self.ctrl_port), 1)
                self.sock.settimeout(None)
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("baresip %s: no ctrl_tcp" % self.name)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        return self

    def _read(self):
        buf = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while True:
                m = re.match(rb"(\d+):", buf)
                if not m:
                    break
                n = int(m.group(1))
                start = m.end()
                if len(buf) < start + n + 1:
                    break
                data = json.loads(buf[start:start + n].decode(errors="replace"))
                buf = buf[start + n + 1:]
                with self.lock:
                    if data.get("response"):
                        self.responses[data.get("token")] = data
                    else:
                        self.events.append(data)
                    self.lock.notify_all()

    def cmd(self, command, params=None, timeout=5):
        token = uuid.uuid4().hex[:8]
        d = {"command": command, "token": token}
        if params is not None:
            d["params"] = params
        s = json.dumps(d)
        self.sock.sendall(("%d:%s," % (len(s), s)).encode())
        end = time.monotonic() + timeout
        with self.lock:
            while token not in self.responses:
                left = end - time.monotonic()
                if left <= 0:
                    raise RuntimeError("%s: no answer to %s" % (self.name, command))
                self.lock.wait(left)
            return self.responses.pop(token)

    def wait_event(self, etype, timeout=10, after=0):
        """the first event of type etype (index >= after); returns (index, event)"""
        end = time.monotonic() + timeout
        with self.lock:
            while True:
                for i in range(after, len(self.events)):
                    if self.events[i].get("type") == etype:
                        return i, self.events[i]
                left = end - time.monotonic()
                if left <= 0:
                    return None, None
                self.lock.wait(left)

    def n_events(self):
        with self.lock:
            return len(self.events)

    def registered(self, timeout=10):
        """wait until the account is registered (reginfo says OK)"""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            r = self.cmd("reginfo")
            data = re.sub(r"\x1b\[[0-9;]*m", " ", r.get("data", ""))
            if re.search(r"\bOK\b", data):
                return True
            time.sleep(0.2)
        return False

    def dial(self, target):
        return self.cmd("dial", target)

    def hangup(self):
        return self.cmd("hangup")

    def hold(self):
        return self.cmd("hold")

    def resume(self):
        return self.cmd("resume")

    def log_text(self):
        try:
            self.log.flush()
        except (ValueError, AttributeError):
            pass
        with open(os.path.join(self.dir, "baresip.log"), errors="replace") as f:
            return f.read()

    def rtp_packets(self):
        """[(packets sent, packets received)] of the audio stream of every
        call that ended (baresip's rtp_stats)"""
        return [(int(a), int(b)) for a, b in
                re.findall(r"\npackets:\s+(\d+)\s+(\d+)", self.log_text())]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            try:
                self.cmd("quit", timeout=2)
            except Exception:
                pass
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(3)
        if self.sock:
            self.sock.close()
            self.sock = None
        if self in _started:
            _started.remove(self)
