# SPDX-License-Identifier: Apache-2.0
"""Faults (issue 3 item 14, first two parts): weftd killed, agent stopped.

3 nodes x 2 pods; every pod runs a plain python3 TCP echo server on 8080.
Clients are plain python3 sockets in the pods (separate processes for the
long-lived connections; sockets created in the pod's netns by this process for
the timed probes) -- none knows anything about weft.

(a) weftd on node2 killed with SIGKILL while idle connections n1-p1 -> n2-p1
    (two) and n1-p2 -> n2-p1 are open: each client's blocked recv() must end
    (reset or EOF) within RESET_BOUND_S of the kill (timed and printed; the
    tunnel's PING timeout is 20 s, the dead node's kernel should end it at
    once). A connection n1-p1 -> n3-p1 (same source pool, other node) must
    live on. weftd on node2 is restarted; from its first /healthz/ready 200
    (polled on 172.30.0.2:15021 from node2's netns while it starts) new
    connections n1-p1 -> n2-p1 (node1's pool must drop the dead tunnel and
    dial again; node2 must have re-enrolled n2-p1 from its state dir) and
    n2-p1 -> n1-p1 (outbound from the restarted node: its capture listener
    and workload certificate are back) must work within NEW_CONN_BOUND_S.
(b) weft-agent stopped: the live connection and its tunnel keep working; new
    connections on that tunnel, from a source identity that has a certificate
    but no tunnel yet (n1-p2 -> n2-p2, new tunnel), a new tunnel to another
    node (n1-p2 -> n3-p2), a new tunnel from another node (n3-p2 -> n2-p2)
    and VIP connections all work on the current certificates; every weftd
    stays ready, also after some seconds without the agent; no certificate
    is reported expired.
"""
import os
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_SERVER, Lines  # noqa: E402
from clusterlib import (CLUSTER, Cluster, Results, echo_probe, netns_socket,  # noqa: E402
                        require_root)

NAME = "dpd"
NODES, PODS = 3, 2
PORT = 8080
TD = "spiffe://cluster.local"
RESET_BOUND_S = 25.0     # the tunnel PING timeout (20 s) plus slack
NEW_CONN_BOUND_S = 2.0   # issue 3 item 14
AGENT_DOWN_WAIT_S = 6.0

# Long-lived client: connects, prints UP, sends each stdin line (stripped)
# and prints what comes back as RECV lines; prints END <wall time> <how> when
# its recv() returns EOF or fails.
HOLD = r"""
import socket, sys, threading, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
c.settimeout(None)
print("UP %s:%d" % c.getsockname()[:2], flush=True)
def reader():
    try:
        while True:
            b = c.recv(65536)
            if not b:
                print("END %.6f EOF" % time.time(), flush=True)
                return
            print("RECV " + b.decode(errors="replace"), flush=True)
    except OSError as e:
        print("END %.6f %s(%s)" % (time.time(), type(e).__name__, e.errno), flush=True)
threading.Thread(target=reader, daemon=True).start()
for line in sys.stdin:
    try:
        c.sendall(line.strip().encode())
    except OSError as e:
        print("SENDERR %s" % e, flush=True)
"""


class Held:
    """A HOLD client process in a pod, its output lines read by Lines."""

    def __init__(self, c, pod, ip, port=PORT):
        self.pod = pod
        self.p = c.py(pod, HOLD, [ip, str(port)], stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines = Lines(self.p)
        self.got = ""
        self.end = None         # (wall time, how)
        self.eof = False
        self.local = None

    def _take(self, timeout):
        """Handle one output line; False when none came within timeout."""
        line = self.lines.get(max(timeout, 0.01))
        if line == "":
            return False
        if line is None:
            self.eof = True
            if self.end is None:
                self.end = (time.time(), "process exited: %s" % self.p.stderr.read()[-300:])
        elif line.startswith("RECV "):
            self.got += line[5:]
        elif line.startswith("END "):
            _, t, how = line.split(" ", 2)
            self.end = (float(t), how)
        elif line.startswith("UP "):
            self.local = line[3:]
        return True

    def wait(self, cond, timeout):
        deadline = time.time() + timeout
        while not cond():
            left = deadline - time.time()
            if left <= 0:
                return False
            if not self._take(min(left, 0.2)) and self.eof:
                return cond()
        return True

    def up(self, timeout=10):
        return self.wait(lambda: self.local is not None, timeout)

    def roundtrip(self, timeout=5):
        """Send a fresh token, wait for its echo."""
        tok = "tok-" + secrets.token_hex(6)
        try:
            self.p.stdin.write(tok + "\n")
            self.p.stdin.flush()
        except OSError:
            return False
        return self.wait(lambda: tok in self.got, timeout)

    def wait_end(self, timeout):
        return self.wait(lambda: self.end is not None, timeout)


def probe(netns, ip, port=PORT, timeout=1.0):
    """One app connection from a socket in netns to an echo server: None on
    success, else the error in words."""
    return echo_probe(netns, ip, port, timeout)


def ready(netns, ip="172.30.0.2", port=15021):
    """True when GET /healthz/ready from netns answers 200."""
    try:
        s = netns_socket(netns)
    except OSError:
        return False
    try:
        s.settimeout(0.5)
        s.connect((ip, port))
        s.sendall(b"GET /healthz/ready HTTP/1.0\r\nHost: weftd\r\n\r\n")
        head = s.recv(64)
        return head.split(b" ")[1:2] == [b"200"]
    except (OSError, IndexError):
        return False
    finally:
        s.close()


def tunnels(c, k):
    return {(t["source"], t["node"]): t for t in c.admin(k, "/tunnels")}


def wid(pod):
    return TD + "/ns/default/sa/sa-" + pod


def part_a(c, r, ip):
    print("== (a) kill -9 of weftd on node2, then restart")
    old = [Held(c, "n1-p1", ip["n2-p1"]), Held(c, "n1-p1", ip["n2-p1"]),
           Held(c, "n1-p2", ip["n2-p1"])]
    other = Held(c, "n1-p1", ip["n3-p1"])
    for h in old + [other]:
        r.check(h.up() and h.roundtrip(), "connection %s -> %s up, echo works (%s)" % (
            h.pod, "n3-p1" if h is other else "n2-p1", h.local))
    t1 = tunnels(c, 1)
    r.check((wid("n1-p1"), "node2") in t1 and (wid("n1-p2"), "node2") in t1,
            "node1 has tunnels sa-n1-p1 -> node2 and sa-n1-p2 -> node2")
    time.sleep(1.0)   # idle

    t_kill = time.time()
    c.sh("stop", "--name", NAME, "weftd", "--node", "2", "--signal", "KILL")
    t_stopped = time.time()
    print("  kill issued at +0, cluster.sh stop returned after %.3f s" % (t_stopped - t_kill))
    for h in old:
        ended = h.wait_end(RESET_BOUND_S + 5)
        if not ended:
            r.check(False, "%s -> n2-p1 (%s) ended after the kill (still open after %.0f s: "
                    "hung)" % (h.pod, h.local, RESET_BOUND_S + 5))
            continue
        dt = h.end[0] - t_kill
        print("  %s -> n2-p1 (%s): recv() returned %s after %.3f s" % (
            h.pod, h.local, h.end[1], dt))
        r.check(dt <= RESET_BOUND_S, "%s -> n2-p1 (%s) ended %.3f s after the kill "
                "(bound %.0f s): %s" % (h.pod, h.local, dt, RESET_BOUND_S, h.end[1]))
    r.check(other.end is None and other.roundtrip(),
            "n1-p1 -> n3-p1 (other node, same source pool) still works after node2's weftd "
            "died (%s)" % (other.end,))
    t1 = tunnels(c, 1)
    r.check((wid("n1-p1"), "node2") not in t1 and (wid("n1-p2"), "node2") not in t1,
            "node1 dropped its tunnels to node2 (%s)" % sorted(k[1] + "<-" + k[0].rsplit("/", 1)[1]
                                                          for k in t1))

    # Restart; poll readiness from node2's netns while it starts.
    t_start = time.time()
    starter = subprocess.Popen([CLUSTER, "start", "--name", NAME, "weftd", "--node", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t_ready = None
    while time.time() - t_start < 30:
        if ready("%s-n2" % NAME):
            t_ready = time.time()
            break
        time.sleep(0.01)
    out, _ = starter.communicate(timeout=30)
    r.check(starter.returncode == 0, "cluster.sh start weftd --node 2 (rc %s) %s" % (
        starter.returncode, out.strip()[-300:]))
    if not r.check(t_ready is not None, "weftd on node2 ready again (%.3f s after start)" % (
            (t_ready or time.time()) - t_start)):
        return
    print("  node2 ready %.3f s after cluster.sh start" % (t_ready - t_start))

    for src, dst, what in (("n1-p1", "n2-p1", "into the restarted node"),
                           ("n2-p1", "n1-p1", "out of the restarted node")):
        tries, err = 0, None
        while True:
            tries += 1
            err = probe("%s-%s" % (NAME, src), ip[dst], timeout=1.0)
            now = time.time()
            if err is None or now - t_ready > NEW_CONN_BOUND_S + 8:
                break
            time.sleep(0.02)
        dt = now - t_ready
        print("  first good %s -> %s connection %.3f s after ready (%d tries, last error: %s)"
              % (src, dst, dt, tries, err))
        r.check(err is None and dt <= NEW_CONN_BOUND_S,
                "new connection %s -> %s (%s) works %.3f s after node2 is ready "
                "(bound %.1f s; %d tries; %s)" % (src, dst, what, dt, NEW_CONN_BOUND_S, tries,
                                                 err or "ok"))
    bad = [e for e in (probe("%s-n1-p1" % NAME, ip["n2-p1"], timeout=3) for _ in range(10)) if e]
    r.check(not bad, "10 more connections n1-p1 -> n2-p1 after the restart all work %s" % bad)
    t1 = tunnels(c, 1)
    t = t1.get((wid("n1-p1"), "node2"))
    r.check(t is not None and t["age_ms"] / 1000.0 <= time.time() - t_kill,
            "node1's tunnel sa-n1-p1 -> node2 is a new one (age %s ms, kill %.1f s ago)" % (
                t and t["age_ms"], time.time() - t_kill))
    uids = sorted(w["uid"] for w in c.admin(2, "/workloads"))
    r.check(uids == ["default/n2-p1", "default/n2-p2"],
            "the restarted weftd on node2 re-enrolled its pods from its state dir %s" % uids)
    other.p.stdin.close()


def part_b(c, r, ip):
    print("== (b) agent stopped")
    live = Held(c, "n1-p1", ip["n2-p1"])
    r.check(live.up() and live.roundtrip(), "live connection n1-p1 -> n2-p1 (%s)" % live.local)
    before = tunnels(c, 1)
    t_before = before.get((wid("n1-p1"), "node2"))
    r.check(t_before is not None, "node1 has tunnel sa-n1-p1 -> node2")
    for k, (src, node) in ((1, ("n1-p2", "node2")), (1, ("n1-p2", "node3")),
                           (3, ("n3-p2", "node2"))):
        r.check((wid(src), node) not in tunnels(c, k),
                "precondition: node%d has no tunnel sa-%s -> %s yet" % (k, src, node))
    for k, pod in ((1, "n1-p2"), (3, "n3-p2")):
        st = {x["identity"]: x["state"] for x in c.admin(k, "/certs")}
        r.check(st.get(wid(pod)) == "ready", "node%d holds a ready certificate for sa-%s (%s)"
                % (k, pod, st.get(wid(pod))))

    t0 = time.time()
    c.sh("stop", "--name", NAME, "agent")
    t_stop = time.time()
    # The agent's listener can outlive its process for a moment (io_uring
    # releases its files asynchronously), so wait for the refusal.
    agent_gone = None
    while agent_gone is None or "refused" not in agent_gone and time.time() - t_stop < 5:
        s = netns_socket("%s-ctl" % NAME)
        try:
            s.settimeout(1.0)
            s.connect(("172.30.0.250", 15012))
            agent_gone = "connected from %s:%d" % s.getsockname()[:2]
            time.sleep(0.05)
        except OSError as e:
            agent_gone = "%s" % e
        finally:
            s.close()
    r.check("refused" in agent_gone,
            "weft-agent is down (cluster.sh stop took %.2f s; 172.30.0.250:15012 %.2f s "
            "later: %s)" % (t_stop - t0, time.time() - t_stop, agent_gone))
    ok = live.end is None and live.roundtrip()
    r.check(ok, "the live connection still works with the agent down (end %s, got %r)" % (
        live.end, live.got[-80:]))
    err = probe("%s-n1-p1" % NAME, ip["n2-p1"], timeout=5)
    r.check(err is None, "new connection n1-p1 -> n2-p1 on the existing tunnel: %s" % (
        err or "ok"))
    for src, dst in (("n1-p2", "n2-p2"), ("n1-p2", "n3-p2"), ("n3-p2", "n2-p2")):
        err = probe("%s-%s" % (NAME, src), ip[dst], timeout=5)
        r.check(err is None, "new connection %s -> %s (new tunnel, current certificates): %s"
                % (src, dst, err or "ok"))
    vip = [probe("%s-n1-p1" % NAME, "10.96.0.2", 80, timeout=5) for _ in range(6)]
    r.check(not any(vip), "6 connections n1-p1 -> svc-p2 VIP 10.96.0.2:80 work %s" % vip)
    after = tunnels(c, 1)
    t_after = after.get((wid("n1-p1"), "node2"))
    r.check(t_before is not None and t_after is not None and
            t_after["age_ms"] >= t_before["age_ms"] and
            t_after["streams_total"] > t_before["streams_total"],
            "the tunnel sa-n1-p1 -> node2 is the same one and carried the new connection "
            "(age %s -> %s ms, streams_total %s -> %s)" % (
                t_before and t_before["age_ms"], t_after and t_after["age_ms"],
                t_before and t_before["streams_total"], t_after and t_after["streams_total"]))
    for k, (src, node) in ((1, ("n1-p2", "node2")), (1, ("n1-p2", "node3")),
                           (3, ("n3-p2", "node2"))):
        t = tunnels(c, k).get((wid(src), node))
        r.check(t is not None and t["state"] == "ready",
                "node%d opened tunnel sa-%s -> %s without the agent (%s)" % (
                    k, src, node, t and t["state"]))

    time.sleep(max(0.0, AGENT_DOWN_WAIT_S - (time.time() - t_stop)))
    for k in range(1, NODES + 1):
        ok = ready("%s-n%d" % (NAME, k), "172.30.0.%d" % k)
        r.check(ok, "weftd on node%d still ready %.1f s after the agent stopped" % (
            k, time.time() - t_stop))
    r.check(live.end is None and live.roundtrip(),
            "the live connection still works %.1f s after the agent stopped (%s)" % (
                time.time() - t_stop, live.end))
    err = probe("%s-n2-p2" % NAME, ip["n3-p1"], timeout=5)
    r.check(err is None, "new connection n2-p2 -> n3-p1 (new tunnel from node2) %.1f s after "
            "the agent stopped: %s" % (time.time() - t_stop, err or "ok"))
    for k in range(1, NODES + 1):
        bad = [ln for ln in c.weftd_log(k).splitlines() if " expired" in ln and "certificate" in ln]
        r.check(not bad, "node%d logged no expired certificate %s" % (k, bad[:2]))
    live.p.stdin.close()


def main():
    require_root()
    r = Results("test_dp_faults")
    with Cluster(NAME, nodes=NODES, pods=PODS) as c:
        ip = {}
        for k in range(1, NODES + 1):
            for j in range(1, PODS + 1):
                pod = "n%d-p%d" % (k, j)
                ip[pod] = c.ip(pod)
                c.py(pod, ECHO_SERVER, [str(PORT)])
        for pod in ip:
            if not c.wait_port("n1-p1", ip[pod], PORT, timeout=10):
                r.check(False, "echo server in %s answers" % pod)
        part_a(c, r, ip)
        part_b(c, r, ip)
        if r.failed:
            for k in range(1, NODES + 1):
                sys.stderr.write("---- weftd node%d log (tail) ----\n%s\n" % (
                    k, c.weftd_log(k)[-3000:]))
            keep = os.environ.get("WEFT_TEST_LOG_DIR")
            if keep:    # whole logs, for whoever debugs the failure
                os.makedirs(keep, exist_ok=True)
                for k in range(1, NODES + 1):
                    with open(os.path.join(keep, "%s-n%d-weftd.log" % (NAME, k)), "w") as f:
                        f.write(c.weftd_log(k))
                with open(os.path.join(keep, "%s-agent.log" % NAME), "w") as f:
                    f.write(c.agent_log())
    r.done()


if __name__ == "__main__":
    main()
