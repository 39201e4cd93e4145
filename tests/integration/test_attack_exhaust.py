# SPDX-License-Identifier: Apache-2.0
"""Exhaustion is a state, not a spin (issue 8 item 3, DESIGN §5.1). Every
attack comes from plain sockets of the test process, created inside a
cluster netns; none of weft's code.

 (b) 5,000 idle TCP connects to node 2's HBONE listener (172.30.0.2:15008)
     from node 2's own netns (one source address), before node 1 has ever
     tunnelled to node 2: a real app connection n1-p1 -> n2-p1 (so a NEW
     tunnel from node 1) still works while they are held, and every idle
     one is closed by its handshake deadline (connect_timeout, 10 s) plus a
     margin.
 (c) on each small HTTP endpoint -- node 2's readiness 15021 and metrics
     15020, the agent's metrics 15014 -- a slow-byte client (one byte every
     0.5 s, never finishing its request) is cut at the absolute request
     deadline (5 s), while the endpoint keeps answering others; 200 idle
     connections from one address do not lock out a client from another;
     control bytes and an oversized request line get a 400 at once.
 (a) node 1's weftd starts with RLIMIT_NOFILE 96 (cluster.sh's
     WEFT_TEST_WEFTD_NOFILE), so its fd ceiling is 80 and a pod's share 20.
     (a1) a pod (n1-p2) opening 400 app connections gets its share, all
     carried, the rest reset with a log line, while a probe from another
     pod (n1-p1 -> n2-p1) works. (a2) three more pods, each a new identity
     that needs a new tunnel, take weftd to its fd ceiling: each one's
     accepted connections are carried (the reserve keeps fds for the
     tunnels; before the reserve a tunnel's socket() could fail with EMFILE
     and every connection waiting for it with it), a connection n1-p1
     opened before keeps working, and over 5 s at the ceiling weftd uses
     under 0.5 CPU-s; its log grows by under 1 MB. Once the pods let go, the
     probe works within 3 s.

And the admin API answers GET /quitquitquit and GET /logging?level= with 405
(changes need POST). After each attack weftd's fd count and live connections return to their
baseline within 2 s, and the weftds keep their pids throughout."""
import os
import resource
import select
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (ECHO_SERVER, Cluster, Results, echo_probe,  # noqa: E402
                        netns_socket, require_root, weftd_pid)

NAME = "atkx"
ECHO_PORT = 8080
IDLE_CONNECTS = 5000
HS_DEADLINE_S = 10.0          # weftd's connect_timeout default bounds the TLS handshake
REQ_DEADLINE_S = 5.0          # lib/httpsrv.c: absolute per-request deadline
WEFTD1_NOFILE = 96
ATTACK_CONNS = 400
TICK = os.sysconf("SC_CLK_TCK")

res = Results("attack exhaust")


def cpu_s(pid):
    """utime + stime of pid in seconds (/proc/<pid>/stat fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def nfds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def nofile(pid):
    """The soft RLIMIT_NOFILE of pid."""
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                return int(line.split()[3])
    raise RuntimeError("no open-file limit for %d" % pid)


def log_size(c, k):
    try:
        return os.path.getsize(os.path.join(c.dir, "n%d" % k, "weftd.log"))
    except OSError:
        return 0


def live(c, k):
    """Live app connections of node k's weftd, and the sockets it keeps by
    design: its tunnels (pooled outbound tunnels + inbound HBONE
    connections), which idle on, and the delivery sockets made ahead in pod
    netns, a reserve that grows after a burst and shrinks when quiet."""
    st = c.admin(k, "/stats")
    return st["live_connections"], (st["tunnels"] + st["hbone_connections"] +
                                     st.get("pod_sockets_ready", 0))


def back_to_baseline(c, k, pid, fds0, live0, tun0, what, timeout=2.0):
    """fd count and live connections of node k's weftd back to (at most) their
    baseline within timeout seconds; a tunnel opened meanwhile (a legitimate
    one: the probe's, or a second one for streams past the first one's
    limit) may keep its socket, and a grown socket reserve its sockets."""
    deadline = time.time() + timeout
    while True:
        fds, (lv, tun) = nfds(pid), live(c, k)
        allowed = fds0 + max(0, tun - tun0)
        if (fds <= allowed and lv <= live0) or time.time() >= deadline:
            break
        time.sleep(0.1)
    res.check(fds <= allowed and lv <= live0,
              "after %s: node %d weftd back to baseline within %.0f s (fds %d, baseline %d + %d "
              "new tunnel(s); live connections %d, baseline %d)" % (
                  what, k, timeout, fds, fds0, max(0, tun - tun0), lv, live0))


def probe(c, src, dst_ip, within, what):
    """An app connection from pod src to dst_ip:ECHO_PORT through weft; retried
    until it works or `within` seconds have passed."""
    t0 = time.time()
    err = "not tried"
    while time.time() - t0 < within:
        err = echo_probe(c.netns(src), dst_ip, ECHO_PORT, timeout=min(5.0, within))
        if err is None:
            break
        time.sleep(0.2)
    return res.check(err is None, "%s: probe %s -> %s:%d works (%.1f s%s)" % (
        what, src, dst_ip, ECHO_PORT, time.time() - t0, "" if err is None else "; " + err))


def open_many(netns, addr, n, timeout=10.0):
    """n non-blocking TCP connects from netns to addr; returns the sockets
    whose connect completed within timeout."""
    socks, pending = [], {}
    for _ in range(n):
        s = netns_socket(netns)
        s.setblocking(False)
        try:
            s.connect(addr)
        except BlockingIOError:
            pass
        except OSError:
            s.close()
            continue
        pending[s.fileno()] = s
    poller = select.poll()
    for fd in pending:
        poller.register(fd, select.POLLOUT)
    deadline = time.time() + timeout
    while pending and time.time() < deadline:
        for fd, ev in poller.poll(200):
            s = pending.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                socks.append(s)
            else:
                s.close()
    for s in pending.values():
        s.close()
    return socks


def wait_closed(socks, timeout):
    """Seconds after which every socket in socks had seen EOF or a reset from
    the server (None if some were still open after timeout), and how many
    were still open."""
    t0 = time.time()
    open_ = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in open_:
        poller.register(fd, select.POLLIN | select.POLLRDHUP)
    last = 0.0
    while open_ and time.time() - t0 < timeout:
        for fd, ev in poller.poll(200):
            s = open_.get(fd)
            if s is None:
                continue
            try:
                b = s.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                b = b""
            if not b:
                poller.unregister(fd)
                del open_[fd]
                last = time.time() - t0
    return (None if open_ else last), len(open_)


def case_idle_hbone(c):
    """(b) 5,000 idle connects to 15008 from one address."""
    pid = weftd_pid(c, 2)
    fds0, (live0, tun0) = nfds(pid), live(c, 2)
    t0 = time.time()
    socks = open_many(c.netns("n2"), ("172.30.0.2", 15008), IDLE_CONNECTS)
    print("  info %d of %d idle connects to 172.30.0.2:15008 completed in %.1f s" % (
        len(socks), IDLE_CONNECTS, time.time() - t0))
    res.check(len(socks) >= 4000, "(b) %d of %d idle TCP connects to node 2's 15008 "
              "completed" % (len(socks), IDLE_CONNECTS))
    try:
        probe(c, "n1-p1", c.ip("n2-p1"), 8.0, "(b) while 5,000 idle connects are held, "
              "a new tunnel node 1 -> node 2")
        left = HS_DEADLINE_S + 3.0 - (time.time() - t0)
        last, still = wait_closed(socks, max(left, 0.5))
        res.check(last is not None, "(b) every idle connect closed by node 2 by its "
                  "handshake deadline (%.0f s + 3 s margin): %s" % (
                      HS_DEADLINE_S, "last after %.1f s of waiting" % last if last is not None
                      else "%d still open" % still))
    finally:
        for s in socks:
            s.close()
    back_to_baseline(c, 2, pid, fds0, live0, tun0, "5,000 idle connects")


def agent_pid(c):
    return int(open(os.path.join(c.dir, "agent", "agent.pid")).read().split()[0])


# The small HTTP endpoints (lib/httpsrv.c): (who, address, a good request's path).
HTTP_ENDPOINTS = (
    ("node 2's readiness", ("172.30.0.2", 15021), "/healthz/ready"),
    ("node 2's metrics", ("172.30.0.2", 15020), "/metrics"),
    ("the agent's metrics", ("172.30.0.250", 15014), "/metrics"),
)


def case_slow_http(c, who, addr, path):
    """(c) a slow-byte client and a crowd of idle ones on one endpoint."""
    agent = addr[1] == 15014
    pid = agent_pid(c) if agent else weftd_pid(c, 2)
    fds0 = nfds(pid)
    live0, tun0 = (0, 0) if agent else live(c, 2)
    where = "%s:%d" % addr

    def answer():
        # From node 2's netns: another address than the attacker's (node 1).
        p = c.run("n2", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                         "--max-time", "3", "http://%s%s" % (where, path)], check=False)
        return p.stdout.decode().strip()

    s = netns_socket(c.netns("n1"))
    s.settimeout(2)
    s.connect(addr)
    req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: slow\r\n\r\n" %
           (path, addr[0])).encode()
    t0 = time.time()
    cut, answers, i = None, [], 0
    next_probe = t0 + 1.0
    s.setblocking(False)
    while time.time() - t0 < 12.0 and i < len(req) - 1:   # never the last byte
        try:
            s.send(req[i:i + 1])
            i += 1
        except OSError:
            cut = time.time() - t0
            break
        r, _, _ = select.select([s], [], [], 0.5)
        if r:
            try:
                b = s.recv(4096)
            except OSError:
                b = b""
            if not b or b.startswith(b"HTTP/"):
                cut = time.time() - t0
                break
        if time.time() >= next_probe:
            answers.append(answer())
            next_probe = time.time() + 1.0
    s.close()
    res.check(cut is not None and REQ_DEADLINE_S - 1.0 <= cut <= REQ_DEADLINE_S + 1.5,
              "(c) %s %s: a slow-byte client (1 byte / 0.5 s) is cut at the absolute "
              "request deadline of %.0f s (%s, %d bytes sent)" % (
                  who, where, REQ_DEADLINE_S, "cut after %.1f s" % cut if cut is not None
                  else "still open after 12 s", i))
    res.check(answers and all(a == "200" for a in answers),
              "(c) %s kept answering others meanwhile (%s)" % (who, answers))

    crowd = open_many(c.netns("n1"), addr, 200)
    try:
        time.sleep(0.5)
        code = answer()
        res.check(code == "200", "(c) with %d idle connections to %s from node 1, a client "
                  "from another address is answered (%s)" % (len(crowd), who, code))
        held = sum(1 for x in crowd if not select.select([x], [], [], 0)[0])
        res.check(held < len(crowd), "(c) %s caps the connections of one address: %d of "
                  "%d idle ones kept open" % (who, held, len(crowd)))
        last, still = wait_closed(crowd, REQ_DEADLINE_S + 2.0)
        res.check(last is not None, "(c) the idle crowd on %s is closed by the request "
                  "deadline (%s)" % (who, "%.1f s" % last if last is not None
                                     else "%d still open" % still))
    finally:
        for x in crowd:
            x.close()
    for junk, what in ((b"\x00\x01\x02 garbage\r\n\r\n", "control bytes"),
                       (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n", "a 9 KB request line")):
        x = netns_socket(c.netns("n1"))
        x.settimeout(3)
        x.connect(addr)
        try:
            x.sendall(junk)
            got = x.recv(64)
        except OSError as e:
            got = ("%s" % e).encode()
        x.close()
        res.check(got.startswith(b"HTTP/1.1 400"),
                  "(c) %s answers %s with 400 at once (%r)" % (who, what, got[:16]))
    if agent:
        deadline = time.time() + 2.0
        while nfds(pid) > fds0 and time.time() < deadline:
            time.sleep(0.1)
        res.check(nfds(pid) <= fds0, "after the %s clients: the agent's fds back to baseline "
                  "(%d, baseline %d)" % (who, nfds(pid), fds0))
    else:
        back_to_baseline(c, 2, pid, fds0, live0, tun0, "the %s clients" % who)


def case_admin_methods(c):
    """Changes through the admin API need POST (issue 8 item 7)."""
    def call(method, path):
        p = c.run("n2", ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                         "3", "-X", method, "http://127.0.0.1:15000" + path], check=False)
        return p.stdout.decode().strip()

    pid = weftd_pid(c, 2)
    got = (call("GET", "/quitquitquit"), call("GET", "/logging?level=debug"),
           call("GET", "/logging"), call("POST", "/logging?level=info"))
    res.check(got == ("405", "405", "200", "200"),
              "admin API: GET /quitquitquit and GET /logging?level= answer 405, GET /logging "
              "and POST /logging?level=info 200 (%s)" % (got,))
    res.check(os.path.exists("/proc/%d" % pid) and weftd_pid(c, 2) == pid,
              "node 2's weftd still runs after GET /quitquitquit")


def echo_states(socks, timeout=3.0):
    """Send one byte on each socket and sort them by what comes back within
    timeout: (echoed, reset or EOF, silent). A silent one is still in a
    listen backlog weftd has not accepted from."""
    for s in socks:
        try:
            s.send(b"x")
        except OSError:
            pass
    left = {s.fileno(): s for s in socks}
    poller = select.poll()
    for fd in left:
        poller.register(fd, select.POLLIN | select.POLLRDHUP)
    echoed = reset = 0
    deadline = time.time() + timeout
    while left and time.time() < deadline:
        for fd, ev in poller.poll(100):
            s = left.pop(fd, None)
            if s is None:
                continue
            poller.unregister(fd)
            try:
                b = s.recv(16)
            except OSError:
                b = b""
            if b == b"x":
                echoed += 1
            else:
                reset += 1
    return echoed, reset, len(left)


def pod_row(c, k, pod):
    for w in c.admin(k, "/workloads"):
        if w["ip"] == c.ip(pod):
            return w
    raise RuntimeError("%s is not enrolled on node %d" % (pod, k))


def weftd_log_lines(c, k, text, since):
    """Lines of node k's weftd log after byte offset since that hold text."""
    with open(os.path.join(c.dir, "n%d" % k, "weftd.log"), "rb") as f:
        f.seek(since)
        return [ln.decode(errors="replace") for ln in f.read().splitlines()
                if text.encode() in ln]


def weftd_log_has(c, k, text, since):
    return bool(weftd_log_lines(c, k, text, since))


def case_fd_exhaust(c):
    """(a) pods of node 1 open app connections without end."""
    pid = weftd_pid(c, 1)
    dst = c.ip("n2-p1")
    probe(c, "n1-p1", dst, 10.0, "(a) before: warm-up")
    time.sleep(0.5)
    fds0, (live0, tun0) = nfds(pid), live(c, 1)
    lim = nofile(pid)
    ceiling = lim - max(16, min(1024, lim // 16))
    cap = pod_row(c, 1, "n1-p2")["connections_max"]
    print("  info node 1 weftd: %d fds, RLIMIT_NOFILE %d (cluster.sh WEFT_TEST_WEFTD_NOFILE), "
          "fd ceiling %d, %d connections per pod" % (fds0, lim, ceiling, cap))
    log0, cpu0 = log_size(c, 1), cpu_s(pid)
    held = {}
    # An app connection of n1-p1 opened before, which must keep working.
    keep = netns_socket(c.netns("n1-p1"))
    keep.settimeout(5.0)
    try:
        keep.connect((dst, ECHO_PORT))
        # (a1) one pod: it gets its share, the rest of the node goes on.
        held["n1-p2"] = open_many(c.netns("n1-p2"), (dst, ECHO_PORT), ATTACK_CONNS, timeout=5.0)
        echoed, reset, silent = echo_states(held["n1-p2"])
        row = pod_row(c, 1, "n1-p2")
        res.check(echoed == cap and row["connections"] == cap and row["refused"] > 0,
                  "(a1) n1-p2 opened %d app connections: weftd carries its share of %d "
                  "(%d echo, %d reset, %d waiting; /workloads: %d held, %d refused)" % (
                      ATTACK_CONNS, cap, echoed, reset, silent, row["connections"],
                      row["refused"]))
        line = weftd_log_lines(c, 1, "[OVERFLOW]: max_connections_per_pod reached (pod "
                               "default/n1-p2", log0)
        res.check(bool(line), "(a1) weftd's log names the pod that reached "
                  "max_connections_per_pod (%s)" % (
                      line[0].split("weftd: ", 1)[-1] if line else "no line"))
        probe(c, "n1-p1", dst, 3.0, "(a1) while n1-p2 holds its share")
        # (a2) more pods, each a new identity needing a new tunnel: the
        # node reaches the fd ceiling, and the tunnels still get their fds.
        for pod in ("n1-p3", "n1-p4", "n1-p5"):
            held[pod] = open_many(c.netns(pod), (dst, ECHO_PORT), ATTACK_CONNS // 4,
                                  timeout=5.0)
        time.sleep(1.0)
        peak = nfds(pid)
        res.check(ceiling - 4 <= peak <= lim,
                  "(a2) with n1-p3..p5 opening %d more, node 1's weftd reached its fd ceiling "
                  "(%d fds; ceiling %d, limit %d)" % (3 * (ATTACK_CONNS // 4), peak, ceiling, lim))
        carried, rows = {}, {}
        for pod in ("n1-p3", "n1-p4", "n1-p5"):
            carried[pod] = echo_states(held[pod])
            rows[pod] = pod_row(c, 1, pod)["connections"]
        res.check(sum(rows.values()) > 0 and
                  all(carried[p][0] == rows[p] for p in carried),
                  "(a2) every connection weftd accepted from n1-p3..p5 is carried over its "
                  "pod's new tunnel, none lost for want of an fd (echo/reset/waiting of the "
                  "pod's sockets vs held by weftd: %s)" % (
                      ", ".join("%s %d/%d/%d vs %d" % ((p,) + carried[p] + (rows[p],))
                                for p in sorted(carried))))
        emfile = weftd_log_lines(c, 1, "Too many open files", log0)
        res.check(not emfile, "(a2) no socket of weftd failed with EMFILE (the reserve below "
                  "the limit)%s" % "".join("\n         | " + ln for ln in emfile[:5]))
        keep.sendall(b"still-here")
        got = b""
        while len(got) < 10:
            b = keep.recv(64)
            if not b:
                break
            got += b
        res.check(got == b"still-here",
                  "(a2) n1-p1's connection opened before keeps working at the ceiling (%r)" % got)
        cpu1 = cpu_s(pid)
        time.sleep(5.0)
        cpu2, log2 = cpu_s(pid), log_size(c, 1)
        paused = sum(w["accept_paused"] for w in c.admin(1, "/workloads"))
        print("  info node 1 weftd: %.2f CPU-s up to the ceiling, %.2f CPU-s over the next 5 "
              "s; log +%d bytes; accepting paused %d times" % (
                  cpu1 - cpu0, cpu2 - cpu1, log2 - log0, paused))
        res.check(paused > 0, "(a2) the pods' listeners paused accepting at the ceiling "
                  "(%d pauses)" % paused)
        res.check(cpu2 - cpu1 < 0.5, "(a2) over 5 s at the fd ceiling weftd used %.2f CPU-s "
                  "(< 0.5)" % (cpu2 - cpu1))
        res.check(log2 - log0 < 1 << 20, "(a) weftd's log grew by %d bytes during the attack "
                  "(< 1 MB)" % (log2 - log0))
    finally:
        keep.close()
        for socks in held.values():
            for s in socks:
                s.close()
    probe(c, "n1-p1", dst, 3.0, "(a) once the pods let go of their connections")
    log3 = log_size(c, 1)
    res.check(log3 - log0 < 1 << 20, "(a) weftd's log grew by %d bytes in all (< 1 MB)" %
              (log3 - log0))
    # The backlog the pods left (connections weftd did not accept) drains
    # first; the new pods' tunnels may stay.
    back_to_baseline(c, 1, pid, fds0, live0, tun0, "the fd exhaustion", timeout=3.0)


def main():
    require_root()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < IDLE_CONNECTS + 1000:
        res.check(False, "test process RLIMIT_NOFILE hard limit %d < %d" % (
            hard, IDLE_CONNECTS + 1000))
        res.done()
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # Node 1's weftd starts with a small fd limit (soft and hard, so raising
    # its soft limit to the hard one at start changes nothing) for (a).
    os.environ["WEFT_TEST_WEFTD_NOFILE"] = "n1=%d" % WEFTD1_NOFILE
    with Cluster(NAME, nodes=2, pods=5) as c:
        c.py("n2-p1", ECHO_SERVER, ["%d" % ECHO_PORT])
        if not c.wait_port("n2-p1", "127.0.0.1", ECHO_PORT):
            raise RuntimeError("echo server in n2-p1 did not listen")
        pids = (weftd_pid(c, 1), weftd_pid(c, 2))
        case_idle_hbone(c)      # first: node 1 has no tunnel to node 2 yet
        for who, addr, path in HTTP_ENDPOINTS:
            case_slow_http(c, who, addr, path)
        case_admin_methods(c)
        case_fd_exhaust(c)
        res.check((weftd_pid(c, 1), weftd_pid(c, 2)) == pids and
                  all(os.path.exists("/proc/%d" % p) for p in pids),
                  "both weftds kept their pids throughout %s" % (pids,))


if __name__ == "__main__":
    res.run(main)
