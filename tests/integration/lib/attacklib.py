# SPDX-License-Identifier: Apache-2.0
"""Shared by the adversarial tests (tests/integration/test_attack_*.py): the
health of one node's weftd while an attack runs, measured from outside it.

NodeWatch takes a baseline (open fds, live connections, CPU time, log size),
and after an attack checks that weftd came back to it within 2 s and that
its log grew by less than 1 MB. probe() is an app connection through weft
from a pod that is not part of the attack; it must keep working."""
import os
import time

from clusterlib import echo_probe, weftd_pid

LOG_GROWTH_MAX = 1 << 20


def proc_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return -1


def proc_cpu_s(pid):
    """utime + stime of pid in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class NodeWatch:
    def __init__(self, cluster, k, res):
        self.c, self.k, self.res = cluster, k, res
        self.pid = weftd_pid(cluster, k)
        self.mark()

    def log_size(self):
        try:
            return os.path.getsize(os.path.join(self.c.dir, "n%d" % self.k, "weftd.log"))
        except OSError:
            return 0

    def sample(self):
        """(fds, live connections) from one /stats read: weftd's open fds
        less the delivery sockets it keeps made ahead in pod netns (a
        reserve that grows after a burst and shrinks when quiet: not a
        leak)."""
        n = proc_fds(self.pid)
        st = self.c.admin(self.k, "/stats")
        return n - st.get("pod_sockets_ready", 0), st["live_connections"]

    def mark(self):
        """The baseline that settle() compares against."""
        self.fds0, self.live0 = self.sample()
        self.log0 = self.log_size()
        self.cpu0 = proc_cpu_s(self.pid)

    def alive(self):
        return os.path.exists("/proc/%d" % self.pid)

    def settle(self, what, timeout=2.0, fd_slack=2):
        """After an attack: weftd alive, fds and live connections back to the
        baseline within timeout, log grown by under 1 MB. Returns the figures
        (fds, live, log bytes, CPU-s) for the report."""
        deadline = time.time() + timeout
        fds = live = None
        while self.alive():
            fds, live = self.sample()
            if (fds <= self.fds0 + fd_slack and live <= self.live0) or time.time() > deadline:
                break
            time.sleep(0.1)
        grown = self.log_size() - self.log0
        cpu = proc_cpu_s(self.pid) - self.cpu0 if self.alive() else -1
        ok = self.res.check(self.alive(), "%s: node %d's weftd is still running" %
                            (what, self.k))
        if ok:
            self.res.check(fds <= self.fds0 + fd_slack and live <= self.live0,
                           "%s: node %d back to baseline within %.0f s (fds %d -> %d, live "
                           "%d -> %d)" % (what, self.k, timeout, self.fds0, fds, self.live0,
                                          live))
        self.res.check(grown < LOG_GROWTH_MAX, "%s: node %d's log grew %d bytes (< 1 MB)" %
                       (what, self.k, grown))
        print("  figures %s: fds %s->%s live %s->%s log +%d B cpu %.2f s" %
              (what, self.fds0, fds, self.live0, live, grown, cpu), flush=True)
        return fds, live, grown, cpu


def probe(c, res, src, dst, what, port=8080):
    """An ordinary app connection src -> dst:port (echo) through weft must work."""
    err = echo_probe(c.netns(src), c.ip(dst), port)
    return res.check(err is None, "%s: probe %s -> %s still served (%s)" %
                     (what, src, dst, err or "echo ok"))
