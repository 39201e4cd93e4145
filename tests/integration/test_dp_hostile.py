# SPDX-License-Identifier: Apache-2.0
"""Hostile input on node 2's HBONE listener (172.30.0.2:15008) leaves weftd
serving (issue 3 item 13). From node 1's netns: random bytes; plain
HTTP/1.1 (a GET and an HTTP/1.1 CONNECT); TLS without a client
certificate; then with a real workload SVID (issued by the agent for node
1's token + ImpersonatedIdentity) over TLS + HTTP/2: CONNECT to a pod on
another node (400), to node 2's admin port and to a garbage authority
(400), to a closed port of a local pod (503) — the same tunnel still
carries a good CONNECT afterwards; 2,000 CONNECT streams to a local echo
server opened and abandoned in batches under the peer's stream limit
(RST_STREAM, or the whole connection dropped with its streams open):
weftd keeps serving, its live connections go back to 0 and its VmRSS
comes back near the baseline. After every case a real app connection
n1-p1 -> n2-p1 through weft still works, and weftd on node 2 is the same
process throughout."""
import os
import re
import socket
import ssl
import sys
import time

try:
    import h2.exceptions
except ImportError:
    print("SKIP: python3-h2 not installed")
    sys.exit(77)

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CHAT_CLIENT, ECHO_SERVER, Cluster, HboneClient,  # noqa: E402
                        HboneError, Results, agent_svid, memory_check, require_root, rss_kib,
                        wait_log, weftd_pid)

NAME = "dpc-h"
GOOD_ID = "spiffe://cluster.local/ns/default/sa/sa-n1-p1"
ECHO = "10.244.2.2:8080"
STREAMS = 2000
BATCH = 500
RSS_SLACK_KIB = 4 * 1024      # "near the baseline": a few MiB

res = Results("dp hostile")


def app_request(c, after):
    """A real pod-to-pod connection n1-p1 -> n2-p1 through weft."""
    msg = "hello-after-" + re.sub(r"\W+", "-", after)
    p = c.run("n1-p1", ["/usr/bin/python3", "-c", CHAT_CLIENT, "10.244.2.2", "8080", msg],
              timeout=20, check=False)
    out = p.stdout.decode(errors="replace").strip()
    return res.check(p.returncode == 0 and out.startswith(msg + "|n2p1|"),
                     "app n1-p1 -> n2-p1 works after %s (got %r%s)" % (
                         after, out[:80], "" if p.returncode == 0 else ", " +
                         p.stderr.decode(errors="replace").strip()[-200:]))


def raw_exchange(c, payload, timeout=5.0):
    """TCP to 15008 from node 1, send payload, read until the server closes:
    (local address, bytes received, how it ended or None if still open)."""
    s = HboneClient(c.netns("n1")).tcp()
    local = "%s:%d" % s.getsockname()[:2]
    got, ended = b"", None
    try:
        s.sendall(payload)
        deadline = time.time() + timeout
        while time.time() < deadline:
            s.settimeout(max(0.05, deadline - time.time()))
            try:
                b = s.recv(65536)
            except socket.timeout:
                break
            except OSError as e:
                ended = "error: %s" % e
                break
            if not b:
                ended = "EOF"
                break
            got += b
    except OSError as e:
        ended = "send error: %s" % e
    finally:
        s.close()
    return local, got, ended


def check_logged(c, off, local, what):
    line = wait_log(c, 2, r"HBONE connection from %s\b" % re.escape(local), 5, start=off)
    res.check(line is not None, "%s: node 2 logs why it dropped %s (%s)" % (
        what, local, line.split("weftd: ", 1)[-1] if line else "no line"))


def case_random(c):
    off = len(c.weftd_log(2))
    local, got, ended = raw_exchange(c, os.urandom(8192))
    res.check(ended is not None, "random bytes: connection closed by weftd (%s, %d bytes back)"
              % (ended or "still open after 5 s", len(got)))
    check_logged(c, off, local, "random bytes")


def case_http(c, req, what):
    off = len(c.weftd_log(2))
    local, got, ended = raw_exchange(c, req)
    res.check(ended is not None and not got.startswith(b"HTTP/"),
              "%s: no HTTP answer, connection closed (%s, got %r)" % (
                  what, ended or "still open after 5 s", got[:40]))
    check_logged(c, off, local, what)


def case_no_client_cert(c):
    off = len(c.weftd_log(2))
    h = HboneClient(c.netns("n1"), timeout=5)
    status, ended = None, None
    try:
        h.tcp()
        h.connect()
        sid = h.open(ECHO)
        h.status(sid, 5)
        status, ended = h.streams[sid]["status"], h.closed
    except (ssl.SSLError, OSError, HboneError) as e:
        ended = "handshake: %s" % e
    finally:
        h.close()
    res.check(status is None and ended is not None,
              "TLS without a client certificate: refused before any CONNECT (status %s, %s)" %
              (status, ended or "still open after 5 s"))
    line = wait_log(c, 2, r"from %s\b.*(no certificate|certificate required)" %
                    re.escape(h.local), 5, start=off)
    res.check(line is not None, "TLS without a client certificate: node 2 logs why (%s)" %
              (line.split("weftd: ", 1)[-1] if line else "no line"))


def case_bad_connects(c, good, bundle):
    h = HboneClient(c.netns("n1"), key_pem=good[0], chain_pem=good[1], bundle=bundle,
                    timeout=10)
    try:
        h.connect()
        for auth, want, what in (
                ("10.244.1.2:80", 400, "a pod on node 1 (not local)"),
                ("10.244.1.2:8080", 400, "a pod on node 1, service port"),
                ("172.30.0.2:15000", 400, "node 2's own admin port"),
                ("127.0.0.1:15000", 400, "loopback admin port"),
                ("10.244.2.250:8080", 400, "an unused IP in node 2's pod CIDR"),
                ("not-an-address", 400, "a garbage authority"),
                ("10.244.2.2:9", 503, "a closed port of a local pod")):
            status, data = h.roundtrip(auth, b"x", timeout=10)
            res.check(status == want, "CONNECT %s (%s) -> %d (got %s)" % (auth, what, want,
                                                                         status))
        res.check(h.closed is None, "the tunnel stays open after the refused CONNECTs (%s)" %
                  h.closed)
        status, data = h.roundtrip(ECHO, b"same-tunnel", timeout=10)
        res.check(status == 200 and data.startswith(b"same-tunnel|n2p1|"),
                  "the same tunnel then carries a good CONNECT (got %s %r)" % (status, data[:60]))
    except (ssl.SSLError, OSError, HboneError) as e:
        res.check(False, "CONNECT cases: %s" % e)
    finally:
        h.close()


def stats(c):
    return c.admin(2, "/stats")


def wait_idle(c, hbone=None, timeout=15):
    """Wait for no live connection on node 2 (and, with hbone, that many HBONE
    connections: node 1's pooled tunnel stays)."""
    deadline = time.time() + timeout
    st = stats(c)
    while time.time() < deadline:
        st = stats(c)
        if st["live_connections"] == 0 and (hbone is None or st["hbone_connections"] == hbone):
            return True, st
        time.sleep(0.2)
    return False, st


def case_abandoned_streams(c, good, bundle, pid):
    ok, st = wait_idle(c)
    hbone0 = st["hbone_connections"]
    res.check(ok, "before the streams: no live connection on node 2 (live %d, hbone %d)" % (
        st["live_connections"], hbone0))
    base = rss_kib(pid)
    opened = answered = 0
    peak = base
    h = None
    t0 = time.time()
    try:
        batch_no = 0
        while opened < STREAMS:
            if h is None:
                h = HboneClient(c.netns("n1"), key_pem=good[0], chain_pem=good[1],
                                bundle=bundle, timeout=20).connect()
                h.pump(lambda: h.remote_max_streams is not None, 5)
            n = min(BATCH, STREAMS - opened, (h.remote_max_streams or 100) // 2)
            sids = [h.open(ECHO) for _ in range(n)]
            opened += n
            h.pump(lambda: all(h.streams[s]["status"] is not None or
                               h.streams[s]["reset"] is not None for s in sids), 30)
            ok = [s for s in sids if h.streams[s]["status"] == 200]
            answered += len(ok)
            for s in ok:
                h.send(s, b"abandoned stream payload " * 40)
            h.pump(lambda: False, 0.2)
            peak = max(peak, rss_kib(pid))
            batch_no += 1
            if batch_no % 3 == 0:
                # Drop the whole connection with its streams open.
                h.close()
                h = None
            else:
                for s in sids:
                    if h.streams[s]["reset"] is None and not h.streams[s]["ended"]:
                        h.reset(s)
                h.pump(lambda: False, 0.1)
            if h is not None and h.closed:
                res.check(False, "stream storm: weftd closed the tunnel: %s" % h.closed)
                h.close()
                h = None
    except (ssl.SSLError, OSError, HboneError, h2.exceptions.H2Error) as e:
        res.check(False, "stream storm: %s" % e)
    finally:
        if h is not None:
            h.close()
    after = rss_kib(pid)
    res.check(opened == STREAMS and answered == STREAMS,
              "%d streams opened and abandoned in batches of <= %d, %d answered 200 (%.1f s)" %
              (opened, BATCH, answered, time.time() - t0))
    ok, st = wait_idle(c, hbone0)
    res.check(ok, "after the streams: node 2 back to 0 live connections and %d HBONE "
              "connection(s) (live %d, hbone %d)" % (hbone0, st["live_connections"],
                                                      st["hbone_connections"]))
    # "After a few seconds": give weftd up to 10 s to hand freed memory back.
    deadline = time.time() + 10
    settled = rss_kib(pid)
    while settled >= base + RSS_SLACK_KIB and time.time() < deadline:
        time.sleep(0.5)
        settled = rss_kib(pid)
    print("  info weftd node2 VmRSS: baseline %d KiB, peak %d, right after %d, settled %d" %
          (base, peak, after, settled))
    memory_check(res, settled < base + RSS_SLACK_KIB,
                 "weftd node2 VmRSS returns near its baseline: %d KiB settled vs %d KiB "
                 "baseline (limit +%d KiB; peak %d, right after %d)" % (
                     settled, base, RSS_SLACK_KIB, peak, after))


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=2) as c:
        c.py("n2-p1", ECHO_SERVER, ["8080", "n2p1"])
        if not c.wait_port("n2-p1", "127.0.0.1", 8080):
            raise RuntimeError("echo server in n2-p1 did not listen")
        pid = weftd_pid(c, 2)
        if not app_request(c, "start"):
            raise RuntimeError("pod-to-pod traffic does not work at all")
        bundle = open(os.path.join(c.dir, "agent", "ca", "root-cert.pem"), "rb").read()
        good = agent_svid(c, 1, GOOD_ID)

        case_random(c)
        app_request(c, "random bytes")
        case_http(c, b"GET / HTTP/1.1\r\nHost: 172.30.0.2:15008\r\nConnection: close\r\n\r\n",
                  "plain HTTP/1.1 GET")
        app_request(c, "plain HTTP/1.1 GET")
        case_http(c, b"CONNECT 10.244.2.2:8080 HTTP/1.1\r\nHost: 10.244.2.2:8080\r\n\r\n",
                  "plain HTTP/1.1 CONNECT")
        app_request(c, "plain HTTP/1.1 CONNECT")
        case_no_client_cert(c)
        app_request(c, "TLS without a client certificate")
        case_bad_connects(c, good, bundle)
        app_request(c, "CONNECTs answered 400 and 503")
        case_abandoned_streams(c, good, bundle, pid)
        app_request(c, "2000 abandoned streams")

        alive = os.path.exists("/proc/%d" % pid) and weftd_pid(c, 2) == pid
        res.check(alive, "weftd on node 2 is the same process throughout (pid %d)" % pid)
    res.done()


if __name__ == "__main__":
    main()
