# SPDX-License-Identifier: Apache-2.0
"""Never into itself (DESIGN §5.1, issue 8 item 1). An attacker tries to make
weftd dial one of its own listeners, which used to loop weftd into itself
until it ran out of file descriptors:
  (a) over HBONE, with a real workload SVID and an independent client (Python
      ssl + h2): CONNECT to a pod's 15006, 15001 and 15008, to the node's
      15000 and 15008, and to 127.0.0.1:15006 — each answered 400 at once;
  (b) from inside a pod, with plain sockets: connect() to 127.0.0.1:15006,
      127.0.0.1:15001, the pod's own IP:15006, a same-node pod:15006 and a
      remote pod:15006 — each connection ends at once, nothing is dialled.
While each attack runs a probe app connection from another pod keeps
working; afterwards weftd's fds and live connections are back at their
baseline within 2 s and its log grew by less than 1 MB, with one line
naming the attempt."""
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from attacklib import NodeWatch, probe  # noqa: E402
from clusterlib import (ECHO_SERVER, Cluster, HboneClient, HboneError, Results,  # noqa: E402
                        agent_svid, netns_socket, require_root, wait_log)

NAME = "atkl"
TD = "cluster.local"
N2 = "172.30.0.2"
res = Results("attack: self-loops")


def hbone_attacks(c, w1, w2, svid, bundle):
    src = c.ip("n1-p1")
    targets = [
        ("%s:15006" % c.ip("n2-p1"), "pod's inbound plaintext port"),
        ("%s:15001" % c.ip("n2-p1"), "pod's outbound capture port"),
        ("%s:15008" % c.ip("n2-p1"), "HBONE port on a pod"),
        ("%s:15000" % N2, "node's admin port"),
        ("%s:15008" % N2, "node's own HBONE listener"),
        ("127.0.0.1:15006", "loopback"),
    ]
    for auth, what in targets:
        what = "CONNECT %s (%s)" % (auth, what)
        w2.mark()
        off = w2.log0
        h = HboneClient(c.netns("n1"), key_pem=svid[0], chain_pem=svid[1], bundle=bundle)
        status, dt = None, None
        try:
            h.connect()
            t0 = time.time()
            sid = h.open(auth, headers=[("forwarded", 'for="%s:4242"' % src)])
            status = h.status(sid, timeout=3)
            dt = time.time() - t0
            probe(c, res, "n1-p2", "n2-p1", what)
        except (ssl.SSLError, OSError, HboneError) as e:
            res.check(False, "%s: HBONE client failed: %s" % (what, e))
        finally:
            h.close()
        res.check(status == 400 and dt is not None and dt < 1.0,
                  "%s: answered 400 at once (status %s after %s s)" %
                  (what, status, "%.3f" % dt if dt is not None else "-"))
        line = wait_log(c, 2, r"would loop into weftd", timeout=2, start=off)
        res.check(line is not None and auth.split(":")[0] in line,
                  "%s: node 2 logs the attempt (%s)" %
                  (what, line.split("weftd: ", 1)[-1] if line else "no line"))
        w2.settle(what)


def pod_attempt(c, pod, ip, port):
    """connect() from inside pod to ip:port, send a byte, wait for the end:
    (how it ended, seconds). A refused connection ends within a moment."""
    s = netns_socket(c.netns(pod))
    s.settimeout(3)
    t0 = time.time()
    try:
        s.connect((ip, port))
        s.sendall(b"loop?")
        got = s.recv(100)
        how = "EOF" if not got else "data %r" % got[:40]
    except socket.timeout:
        how = "still open after 3 s"
    except OSError as e:
        how = type(e).__name__
    finally:
        s.close()
    return how, time.time() - t0


def pod_attacks(c, w1, w2):
    own = c.ip("n1-p1")
    targets = [
        ("127.0.0.1", 15006, "loopback inbound port", w1),
        ("127.0.0.1", 15001, "loopback outbound port", w1),
        (own, 15006, "its own IP's inbound port", w1),
        (c.ip("n1-p2"), 15006, "a same-node pod's inbound port", w1),
        (c.ip("n2-p1"), 15006, "a remote pod's inbound port", w1),
    ]
    for ip, port, what, w in targets:
        what = "n1-p1 connect %s:%d (%s)" % (ip, port, what)
        w1.mark()
        w2.mark()
        off = w.log0
        how, dt = pod_attempt(c, "n1-p1", ip, port)
        probe(c, res, "n1-p2", "n2-p1", what)
        res.check(how in ("EOF", "ConnectionResetError", "ConnectionRefusedError",
                          "BrokenPipeError") and dt < 1.0,
                  "%s: refused at once (%s after %.3f s)" % (what, how, dt))
        line = wait_log(c, 1, r"would loop into weftd", timeout=2, start=off)
        res.check(line is not None and "%s:%d" % (ip, port) in line,
                  "%s: node 1 logs the attempt (%s)" %
                  (what, line.split("weftd: ", 1)[-1] if line else "no line"))
        w1.settle(what)
        w2.settle(what)


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=2) as c:
        for pod in ("n1-p1", "n1-p2", "n2-p1", "n2-p2"):
            c.py(pod, ECHO_SERVER, ["8080", pod.replace("-", "")])
        for pod in ("n1-p1", "n1-p2", "n2-p1", "n2-p2"):
            c.wait_port(pod, "127.0.0.1", 8080)
        # Tunnels and certificates warm before the baselines are taken.
        probe(c, res, "n1-p2", "n2-p1", "warm-up")
        probe(c, res, "n1-p1", "n2-p1", "warm-up")
        svid = agent_svid(c, 1, "spiffe://%s/ns/default/sa/sa-n1-p1" % TD)
        bundle = open(os.path.join(c.dir, "agent", "ca", "root-cert.pem"), "rb").read()
        w1, w2 = NodeWatch(c, 1, res), NodeWatch(c, 2, res)
        hbone_attacks(c, w1, w2, svid, bundle)
        pod_attacks(c, w1, w2)
        # The harness can succeed: a legitimate CONNECT with the same client.
        h = HboneClient(c.netns("n1"), key_pem=svid[0], chain_pem=svid[1], bundle=bundle)
        try:
            h.connect()
            st, data = h.roundtrip("%s:8080" % c.ip("n2-p1"), b"hello", timeout=5)
        finally:
            h.close()
        res.check(st == 200 and data.startswith(b"hello|n2p1|"),
                  "a legitimate CONNECT with the same client works (%s %r)" % (st, data[:40]))


res.run(main)
