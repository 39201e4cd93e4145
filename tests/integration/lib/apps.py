# SPDX-License-Identifier: Apache-2.0
"""Plain apps the data-path tests run inside pods, and the test-side code that
drives them.

The apps are python3 programs passed to `python3 -c` (Cluster.py / Cluster.run);
they know nothing about weft. Each string is a whole program; the ones that
read sockets start with SOCK_LIB so the receive loops are written once.
"""
import json
import queue
import select
import subprocess
import threading
import time

SOCK_LIB = r"""
import socket
def recv_until(c, buf, k=None, size=65536):
    # Appends what c sends to the bytearray buf until it holds k bytes (k None:
    # until EOF). True at EOF. What arrived stays in buf when recv() raises, so
    # a caller can still tell "reset after some data" from "reset before any".
    while k is None or len(buf) < k:
        x = c.recv(size if k is None else min(size, k - len(buf)))
        if not x:
            return True
        buf += x
    return False
def recv_exact(c, k):
    b = bytearray()
    recv_until(c, b, k)
    if len(b) < k:
        raise EOFError("EOF after %d of %d bytes" % (len(b), k))
    return bytes(b)
def recv_all(c):
    b = bytearray()
    recv_until(c, b)
    return bytes(b)
"""
"""Receive helpers prepended to the apps below."""

ECHO_SERVER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(1024)
tag = sys.argv[2].encode() if len(sys.argv) > 2 else None
def serve(c, a):
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        if tag is not None:
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
"""Echo server: echoes every byte as it comes, serves many connections. With
a tag, once the client half-closes it appends '|<tag>|<client ip>' and closes;
without one it just closes. Args: port [tag]."""

TCP_FORWARDER = r"""
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for x in (a, b):
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
while True:
    c, _ = s.accept()
    try:
        u = socket.create_connection((sys.argv[3], int(sys.argv[4])), timeout=5)
    except OSError:
        c.close()
        continue
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
"""
"""A plain TCP forwarder (what a misconfigured gateway amounts to): every
connection to ip:port goes on to to_ip:to_port, bytes as they are. Args: ip
port to_ip to_port."""

ECHO_CLIENT = SOCK_LIB + r"""
import sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.sendall(sys.argv[3].encode()); c.shutdown(socket.SHUT_WR)
print(recv_all(c).decode())
"""
"""Echo client: sends argv[3], half-closes, prints everything received.
Args: ip port msg."""

CHAT_CLIENT = SOCK_LIB + r"""
import sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
msg = sys.argv[3].encode()
c.sendall(msg)
got = bytearray()
recv_until(c, got, len(msg))
c.shutdown(socket.SHUT_WR)
recv_until(c, got)
print(got.decode())
"""
"""Interactive client for ECHO_SERVER: sends argv[3], waits for its echo, then
half-closes and prints everything received ('<msg>|<tag>|<client ip>').
Args: ip port msg."""

HOLD_APP = SOCK_LIB + r"""
import json, sys, threading
cf = json.loads(sys.argv[1])
nonce, port, n, ips = cf["nonce"], cf["port"], cf["n"], cf["ips"]
barrier = threading.Barrier(n + 1)
go = threading.Event()
res = [None] * n
opened = [False] * n

def worker(i):
    ip = ips[i % len(ips)]
    a = ("first-%d-%s;" % (i, nonce)).encode()
    b = ("second-%d-%s" % (i, nonce)).encode() * cf["repeat"]
    r = {"i": i, "ip": ip, "opened": False, "ok": False, "err": None, "out": ""}
    c = None
    try:
        c = socket.create_connection((ip, port), timeout=cf["connect_timeout"])
        c.sendall(a)
        got = recv_exact(c, len(a))
        if got != a:
            raise ValueError("first echo differs: %r" % got[:60])
        r["opened"] = True
        opened[i] = True
    except Exception as e:
        r["err"] = "open: %r" % e
    try:
        barrier.wait(cf["barrier_timeout"])
    except threading.BrokenBarrierError:
        pass
    go.wait(120)
    if r["opened"]:
        try:
            c.sendall(b)
            c.shutdown(socket.SHUT_WR)
            out = recv_all(c)
            r["out"] = out[len(b):].decode(errors="replace")
            r["ok"] = out.startswith(b) and out[len(b):].startswith(b"|")
            if not r["ok"]:
                k = next((j for j in range(min(len(out), len(b))) if out[j] != b[j]), None)
                r["err"] = ("reply differs: %d bytes (want %d + trailer), first "
                            "difference at %s: %r" % (len(out), len(b), k,
                                                       out[max(0, (k or 0) - 20):(k or 0) + 40]))
        except Exception as e:
            r["err"] = "finish: %r" % e
    if c is not None:
        c.close()
    res[i] = r

ts = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
for t in ts:
    t.start()
try:
    barrier.wait(cf["barrier_timeout"])
except threading.BrokenBarrierError:
    pass
print("READY %d" % sum(opened), flush=True)
sys.stdin.readline()
go.set()
for t in ts:
    t.join(cf["join_timeout"])
print(json.dumps(res), flush=True)
"""
"""A plain app that holds n connections to ECHO_SERVERs open: each thread
connects, proves the connection with a first round trip, then all wait at a
barrier ("READY k", k = how many opened) until a line on stdin; then each
sends a second chunk, half-closes and reads the echo and the server's trailer
to EOF. Prints one JSON list of per-connection results. Args: one JSON object
(see Hold)."""


def readline(p, timeout):
    """One line from p.stdout (a bytes pipe) within timeout, or None."""
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        return None
    return p.stdout.readline().decode(errors="replace")


class Hold:
    """A HOLD_APP process in pod `pod` of cluster c with n connections to ips
    (round robin) on port. The timeouts are the app's: connect, barrier (how
    long the threads wait for each other) and join (how long the finish may
    take)."""

    def __init__(self, c, pod, n, ips, nonce, port, repeat=40, connect_timeout=15,
                 barrier_timeout=40, join_timeout=60):
        self.n = n
        self.pod = pod
        cf = {"nonce": nonce, "port": port, "n": n, "ips": list(ips), "repeat": repeat,
              "connect_timeout": connect_timeout, "barrier_timeout": barrier_timeout,
              "join_timeout": join_timeout}
        self.p = c.py(pod, HOLD_APP, [json.dumps(cf)], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE)
        self.ready = None
        self.res = None

    def wait_ready(self, timeout=45):
        """The READY line (stripped), or None when it did not come in time."""
        line = readline(self.p, timeout)
        self.ready = line.strip() if line else None
        return self.ready

    def finish(self, timeout=60):
        """Lets every connection finish; returns the app's result list (None
        when it did not report in time or reported garbage)."""
        try:
            self.p.stdin.write(b"go\n")
            self.p.stdin.flush()
        except OSError:
            pass
        line = readline(self.p, timeout)
        try:
            self.res = json.loads(line) if line else None
        except ValueError:
            self.res = None
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        return self.res

    def summary(self):
        """(connections reported, how many finished ok, the ones that did not)."""
        res = [x for x in (self.res or []) if x]
        ok = [x for x in res if x["ok"]]
        bad = [x for x in res if not x["ok"]]
        return len(res), len(ok), bad


class Lines:
    """A process's stdout lines (text mode), in a queue filled by a thread."""

    def __init__(self, p):
        self.p = p
        self.q = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            self.q.put(line.rstrip("\n"))
        self.q.put(None)

    def get(self, timeout):
        """The next line; "" when none came within timeout, None (once) at EOF."""
        try:
            return self.q.get(timeout=max(timeout, 0.001))
        except queue.Empty:
            return ""

    def expect(self, prefix, timeout):
        """The next line that starts with prefix, or None (timeout or EOF)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.get(deadline - time.time())
            if line is None:
                return None
            if line.startswith(prefix):
                return line
        return None
