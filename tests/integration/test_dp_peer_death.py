# SPDX-License-Identifier: Apache-2.0
"""A peer weftd dies mid-transfer (issue 8 item 5). 2 nodes x 1 pod; n2-p1
runs an echo server, n1-p1 eight clients that send and read 16 KiB chunks
as fast as they can, so every stream moves data both ways when the tunnel
dies.
  (a) weftd on node 1 (the tunnel's client) is killed with SIGKILL, three
      times: node 2's HBONE connection closes under live, busy streams —
      the path of the use-after-free this test was written for (an inbound
      stream outliving its connection). Node 2's weftd must live, and its
      live connections and fds return to the baseline within 2 s; node 1 is
      restarted and traffic flows again.
  (b) weftd on node 2 (the server) is killed the same way: node 1 must live,
      its clients' connections end (reset or EOF) within 5 s, node 1 returns
      to its baseline, and after node 2's restart traffic flows again.
A test_dp_* test, so it runs in the ASan+UBSan pass of make test too: a
use-after-free there is a sanitizer report and fails it."""
import os
import select
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from attacklib import NodeWatch  # noqa: E402
from clusterlib import (CLUSTER, ECHO_SERVER, Cluster, Results, echo_probe,  # noqa: E402
                        require_root)

NAME = "dppd"
res = Results("dp peer death")

BULK = r"""
import os, socket, sys, threading, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def say(line):  # one write(2) per line: print() from threads can interleave
    os.write(1, (line + "\n").encode())
chunk = b"x" * 16384
def run(i):
    moved = 0
    try:
        c = socket.create_connection((ip, port), timeout=10)
        c.settimeout(30)
        say("UP %d" % i)
        while True:
            c.sendall(chunk)
            got = c.recv(65536)
            if not got:
                say("END %d eof %d %.3f" % (i, moved, time.time()))
                return
            moved += len(got)
    except OSError as e:
        say("END %d %s %d %.3f" % (i, type(e).__name__, moved, time.time()))
ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
for t in ts: t.start()
for t in ts: t.join()
"""
CLIENTS = 8


class Lines:
    """The lines a child writes to its stdout pipe, read with a deadline.
    (select() on a buffered file object misses lines already in its
    buffer: read the fd ourselves.)"""

    def __init__(self, p):
        self.fd, self.buf = p.stdout.fileno(), b""

    def next(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            b = os.read(self.fd, 4096)
            if not b:
                return None
            self.buf += b
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


def start_bulk(c):
    p = c.py("n1-p1", BULK, [c.ip("n2-p1"), "8080", str(CLIENTS)], stdout=subprocess.PIPE)
    lines, up = Lines(p), 0
    lines.early = []
    deadline = time.time() + 15
    while up < CLIENTS:
        line = lines.next(deadline)
        if line is None:
            break
        up += line.startswith("UP ")
        if line.startswith("END "):
            lines.early.append(line)
    return p, lines, up


def wait_served(c, timeout=20):
    """Traffic n1-p1 -> n2-p1 flows again (after a restart): seconds, or None."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 8080, timeout=2) is None:
            return time.time() - t0
        time.sleep(0.2)
    return None


def kill_weftd(k):
    """SIGKILL node k's weftd; the time of the kill."""
    subprocess.run([CLUSTER, "stop", "--name", NAME, "weftd", "--node", str(k), "--signal",
                    "KILL"], capture_output=True, timeout=30)
    return time.time()


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=1) as c:
        c.py("n2-p1", ECHO_SERVER, ["8080"])
        c.wait_port("n2-p1", "127.0.0.1", 8080)
        res.check(wait_served(c) is not None, "warm-up: n1-p1 -> n2-p1 served")

        # (a) the tunnel's client dies under busy streams, three times.
        for rnd in range(3):
            what = "(a%d) node 1 killed mid-transfer" % (rnd + 1)
            w2 = NodeWatch(c, 2, res)
            p, lines, up = start_bulk(c)
            if not res.check(up == CLIENTS, "%s: %d/%d bulk connections up%s" % (
                    what, up, CLIENTS, "; ended early: %s" % lines.early if lines.early else "")):
                print(subprocess.run(["ip", "netns", "exec", c.netns("n1-p1"), "ss", "-tanp"],
                                     capture_output=True, text=True).stdout)
            time.sleep(1.0)
            kill_weftd(1)
            w2.settle(what)
            p.kill()
            p.wait(10)
            r = subprocess.run([CLUSTER, "start", "--name", NAME, "weftd", "--node", "1"],
                               capture_output=True, text=True, timeout=60)
            res.check(r.returncode == 0, "%s: node 1 restarted (%s)" %
                      (what, (r.stdout + r.stderr).strip()[-200:]))
            dt = wait_served(c)
            res.check(dt is not None, "%s: traffic flows again after the restart (%s)" %
                      (what, "%.1f s" % dt if dt is not None else "not within 20 s"))

        # (b) the tunnel's server dies under busy streams.
        what = "(b) node 2 killed mid-transfer"
        w1 = NodeWatch(c, 1, res)
        p, lines, up = start_bulk(c)
        res.check(up == CLIENTS, "%s: %d/%d bulk connections up" % (what, up, CLIENTS))
        time.sleep(1.0)
        t_kill = kill_weftd(2)
        ends = []
        deadline = time.time() + 10
        while len(ends) < CLIENTS:
            line = lines.next(deadline)
            if line is None:
                break
            if line.startswith("END "):
                ends.append(float(line.split()[-1]) - t_kill)
        res.check(len(ends) == CLIENTS and max(ends) < 5.0,
                  "%s: every client's connection ended (%d/%d, last %.2f s after the kill)" %
                  (what, len(ends), CLIENTS, max(ends) if ends else -1))
        w1.settle(what)
        p.kill()
        p.wait(10)
        r = subprocess.run([CLUSTER, "start", "--name", NAME, "weftd", "--node", "2"],
                           capture_output=True, text=True, timeout=60)
        res.check(r.returncode == 0, "%s: node 2 restarted" % what)
        dt = wait_served(c)
        res.check(dt is not None, "%s: traffic flows again after the restart (%s)" %
                  (what, "%.1f s" % dt if dt is not None else "not within 20 s"))


res.run(main)
