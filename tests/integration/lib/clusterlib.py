# SPDX-License-Identifier: Apache-2.0
"""Drive the simulated cluster (tests/cluster/cluster.sh) from Python tests.

A Cluster is brought up in __enter__ and always torn down in __exit__ (and
at exit), also when the test fails. Apps run inside pod namespaces with
`ip netns exec`; they are plain programs (python3, socat, curl) that know
nothing about weft.
"""
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from results import Results  # noqa: F401

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLUSTER = os.path.join(ROOT, "tests", "cluster", "cluster.sh")
RUN = os.environ.get("WEFT_TEST_RUN", "/run/weft-test")


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def require_root():
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if not os.path.exists(os.path.join(ROOT, "build", "weftd")):
        skip("build/weftd not built")


class Cluster:
    def __init__(self, name, nodes=2, pods=2, conf=(), ttl=None, extra=()):
        self.name = name
        self.nodes = nodes
        self.pods = pods
        self.conf = list(conf)
        self.ttl = ttl
        self.extra = list(extra)
        self.procs = []
        self.dir = os.path.join(RUN, name)

    # --- lifecycle ------------------------------------------------------------
    def sh(self, *args, check=True, timeout=120):
        p = subprocess.run([CLUSTER] + list(args), capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("cluster.sh %s failed (%d):\n%s%s" % (
                " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
        return p.stdout

    def up(self):
        subprocess.run([CLUSTER, "down", "--name", self.name], capture_output=True)
        atexit.register(self.down)
        args = ["up", "--name", self.name, "--nodes", str(self.nodes), "--pods",
                str(self.pods), "--weftd"]
        if self.ttl:
            args += ["--ttl", self.ttl]
        for c in self.conf:
            args += ["--weftd-conf", c]
        self.sh(*(args + self.extra), timeout=180)
        return self

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs = []
        subprocess.run([CLUSTER, "down", "--name", self.name], capture_output=True,
                       timeout=120)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        if exc[0] is not None:
            for k in range(1, self.nodes + 1):
                sys.stderr.write("---- weftd node%d log (tail) ----\n%s\n" % (
                    k, self.weftd_log(k)[-4000:]))
        self.down()

    # --- facts ------------------------------------------------------------------
    def netns(self, target):
        m = re.fullmatch(r"n(\d+)-p(\d+)", target)
        if m:
            return "%s-%s" % (self.name, target)
        m = re.fullmatch(r"(?:n|node)(\d+)", target)
        if m:
            return "%s-n%s" % (self.name, m.group(1))
        return "%s-%s" % (self.name, target)

    def ip(self, pod):
        return self.sh("ip", "--name", self.name, pod).strip()

    def weftd_log(self, k):
        try:
            return open(os.path.join(self.dir, "n%d" % k, "weftd.log"), errors="replace").read()
        except OSError:
            return ""

    def agent_log(self):
        try:
            return open(os.path.join(self.dir, "agent", "agent.log"), errors="replace").read()
        except OSError:
            return ""

    # --- running things -----------------------------------------------------------
    def run(self, target, cmd, timeout=60, check=True, input=None):
        p = subprocess.run(["ip", "netns", "exec", self.netns(target)] + cmd,
                           capture_output=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError("%s in %s failed (%d): %s" % (
                cmd, target, p.returncode, p.stderr.decode(errors="replace")[-2000:]))
        return p

    def spawn(self, target, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.netns(target)] + cmd, **kw)
        self.procs.append(p)
        return p

    def py(self, target, code, args=(), **kw):
        """Start /usr/bin/python3 -c code inside target."""
        return self.spawn(target, ["/usr/bin/python3", "-c", code] + list(args), **kw)

    def admin(self, k, path):
        """GET the admin API of node k (127.0.0.1:15000 in its netns)."""
        p = self.run("n%d" % k, ["curl", "-sS", "--max-time", "5",
                                 "http://127.0.0.1:15000" + path])
        return json.loads(p.stdout)

    def wait_port(self, target, ip, port, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.run(target, ["/usr/bin/python3", "-c",
                                  "import socket,sys; socket.create_connection((sys.argv[1], "
                                  "int(sys.argv[2])), timeout=1).close()", ip, str(port)],
                         check=False)
            if p.returncode == 0:
                return True
            time.sleep(0.1)
        return False


ECHO_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024)
tag = sys.argv[2].encode()
def serve(c, a):
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.sendall(b"|" + tag + b"|" + a[0].encode())
        c.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, a = s.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
"""
"""Echo server: echoes until the client half-closes, then appends
'|<tag>|<client ip>' and closes. Args: port tag."""

ECHO_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(sys.argv[3].encode()); c.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = c.recv(65536)
    if not b:
        break
    out += b
print(out.decode())
"""
"""Echo client: sends argv[3], half-closes, prints everything received."""


