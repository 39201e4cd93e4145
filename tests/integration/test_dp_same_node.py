# SPDX-License-Identifier: Apache-2.0
"""Same-node traffic (issue 3 item 15): the fast path, and mTLS without it.

Cluster dpa (defaults): a plain python3 echo server in n1-p2, clients in n1-p1
(same node). The traffic works, goes through the fast path (/stats same_node
counts every connection), and no tunnel is opened to node1's own 15008: no
/tunnels entry with node=node1, no TCP connection to :15008 in node1's netns
while a connection is open, no inbound HBONE access-log line.

Cluster dpa2 (`same_node_fast_path: false`): the same traffic works and is
carried over mTLS through node1's own HBONE listener: /tunnels shows the
tunnel n1-p1's identity -> node1 with TLS_AES_256_GCM_SHA384, `ss` shows the
established connection to 172.30.0.1:15008, and node1 logs the inbound side
of each connection with the client's identity.
"""
import os
import re
import secrets
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_CLIENT, ECHO_SERVER, SOCK_LIB, readline  # noqa: E402
from clusterlib import Cluster, Results, require_root  # noqa: E402

TD = "spiffe://cluster.local"
CIPHER = "TLS_AES_256_GCM_SHA384"
CLIENT, SERVER = "n1-p1", "n1-p2"
CLIENT_ID = TD + "/ns/default/sa/sa-" + CLIENT
CONNS = 5   # echo round trips (data, then half-close)
FINS = 3    # connections half-closed at once, without data
TOTAL = CONNS + FINS + 1    # and one held open

# A plain client that half-closes at once, before sending anything, and
# prints what comes back (the echo server's trailer). Args: ip port.
FIN_CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.shutdown(socket.SHUT_WR)
out = b""
try:
    while True:
        x = c.recv(4096)
        if not x:
            break
        out += x
except OSError as e:
    out += b" [%r]" % e
print(out.decode(errors="replace"))
"""

# A plain app connection held open until the test says so on stdin: one round
# trip, "READY", wait, a second chunk, half-close, print what came back.
# Args: ip port marker.
HOLD_CLIENT = SOCK_LIB + r"""
import sys
ip, port, marker = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
c = socket.create_connection((ip, port), timeout=10)
c.sendall(marker + b"-1;")
got = bytearray()
recv_until(c, got, len(marker) + 3)
print("READY" if got == marker + b"-1;" else "BAD %r" % bytes(got), flush=True)
sys.stdin.readline()
c.sendall(marker + b"-2")
c.shutdown(socket.SHUT_WR)
print(recv_all(c).decode(errors="replace"), flush=True)
"""


def access(log, direction):
    return [ln for ln in log.splitlines() if "connection complete direction=%s " % direction
            in ln and ("src_identity=%s " % CLIENT_ID) in ln]


def traffic(c, r, label):
    """Same-node traffic in cluster c, CLIENT -> SERVER by pod IP: CONNS echo
    round trips, then FINS connections half-closed without data. Returns the
    server's IP."""
    ip_s = c.ip(SERVER)
    c.py(SERVER, ECHO_SERVER, ["8080", SERVER])
    r.check(c.wait_port(SERVER, "127.0.0.1", 8080), "%s: echo server listens in %s" % (
        label, SERVER))
    ok = 0
    for i in range(CONNS):
        marker = "same-node-%s-%d-%s" % (label, i, secrets.token_hex(4))
        p = c.run(CLIENT, ["/usr/bin/python3", "-c", ECHO_CLIENT, ip_s, "8080", marker],
                  check=False, timeout=20)
        out = p.stdout.decode(errors="replace").strip()
        if p.returncode == 0 and out.startswith(marker + "|" + SERVER + "|"):
            ok += 1
        else:
            print("  info connection %d: rc %d out %r err %r" % (
                i, p.returncode, out[:120], p.stderr.decode(errors="replace")[-300:]))
    r.check(ok == CONNS, "%s: %d/%d echo round trips %s -> %s (%s:8080) came back intact" % (
        label, ok, CONNS, CLIENT, SERVER, ip_s))
    outs = []
    for i in range(FINS):
        p = c.run(CLIENT, ["/usr/bin/python3", "-c", FIN_CLIENT, ip_s, "8080"], check=False,
                  timeout=20)
        outs.append(p.stdout.decode(errors="replace").strip())
    r.check(all(o.startswith("|%s|" % SERVER) for o in outs),
            "%s: %d connections half-closed at once: the FIN reached the server, which "
            "answered (%s)" % (label, FINS, outs))
    return ip_s


def hold_open(c, r, label, ip_s, while_open):
    marker = "hold-%s-%s" % (label, secrets.token_hex(4))
    app = c.py(CLIENT, HOLD_CLIENT, [ip_s, "8080", marker], stdin=subprocess.PIPE,
               stdout=subprocess.PIPE)
    line = readline(app, 20)
    r.check(line == "READY\n", "%s: a connection %s -> %s is open and echoing (%r)" % (
        label, CLIENT, SERVER, line))
    seen = while_open()
    try:
        app.stdin.write(b"go\n")
        app.stdin.flush()
    except OSError:
        pass
    out = (readline(app, 20) or "").strip()
    want = marker + "-2|" + SERVER + "|"
    r.check(out.startswith(want), "%s: the held connection finished intact (%r)" % (
        label, out[:120]))
    try:
        app.wait(10)
    except subprocess.TimeoutExpired:
        pass
    return seen


def fast_path(r):
    with Cluster("dpa", nodes=2, pods=2) as c:
        st0 = c.admin(1, "/stats")
        r.check(st0.get("same_node_fast_path") is True,
                "dpa: node1 reports same_node_fast_path true by default")
        start = len(c.weftd_log(1))
        ip_s = traffic(c, r, "dpa")
        seen = hold_open(c, r, "dpa", ip_s, lambda: (
            c.ss("n1", "( dport = :15008 or sport = :15008 )"), c.admin(1, "/tunnels")))
        r.check(seen[0] == [], "dpa: while it is open, node1's netns has no TCP connection on "
                ":15008 (%s)" % seen[0])
        r.check(not [t for t in seen[1] if t.get("node") == "node1"],
                "dpa: /tunnels on node1 has no tunnel to node1 (%s)" % seen[1])
        time.sleep(0.3)
        st1 = c.admin(1, "/stats")
        r.check(st1.get("same_node", 0) - st0.get("same_node", 0) == TOTAL,
                "dpa: /stats same_node grew by %d: %s -> %s" % (
                    TOTAL, st0.get("same_node"), st1.get("same_node")))
        tun = c.admin(1, "/tunnels")
        r.check(tun == [], "dpa: node1 opened no tunnel at all for same-node traffic (%s)" % tun)
        log = c.weftd_log(1)[start:]
        out = [ln for ln in access(log, "outbound")
               if "dst_workload=default/%s " % SERVER in ln]
        r.check(len(out) == TOTAL and all("response_flags=- " in ln + " " for ln in out),
                "dpa: node1 logged %d clean outbound `connection complete` lines to "
                "default/%s (%d)" % (TOTAL, SERVER, len(out)))
        r.check(access(log, "inbound") == [],
                "dpa: node1 logged no inbound HBONE connection from %s" % CLIENT_ID)
        r.check(not re.search(r"tunnel \S+ -> node node1 ", log),
                "dpa: node1 logged no tunnel to itself")


def mtls_path(r):
    with Cluster("dpa2", nodes=2, pods=2, conf=["same_node_fast_path: false"]) as c:
        st0 = c.admin(1, "/stats")
        r.check(st0.get("same_node_fast_path") is False,
                "dpa2: node1 reports same_node_fast_path false")
        start = len(c.weftd_log(1))
        ip_s = traffic(c, r, "dpa2")

        def during():
            return (c.ss("n1", "( dport = :15008 )"),
                    c.ss("n1", "( sport = :15008 )"), c.admin(1, "/tunnels"))
        to, frm, tun = hold_open(c, r, "dpa2", ip_s, during)
        print("  info node1 /tunnels:", tun)
        r.check(len(to) == 1 and "172.30.0.1:15008" in to[0].split()[-1],
                "dpa2: while it is open, node1's netns has one established connection to "
                "172.30.0.1:15008 (%s)" % to)
        r.check(len(frm) == 1, "dpa2: ... and node1's HBONE listener holds its other end (%s)"
                % frm)
        mine = [t for t in tun if t.get("source") == CLIENT_ID and t.get("node") == "node1"]
        r.check(len(mine) == 1, "dpa2: /tunnels on node1 has one tunnel %s -> node1 (%d)" % (
            CLIENT_ID, len(mine)))
        t = mine[0] if mine else {}
        r.check(t.get("cipher") == CIPHER and t.get("peer") == "172.30.0.1:15008",
                "dpa2: it uses %s to 172.30.0.1:15008 (%r, %r)" % (
                    CIPHER, t.get("cipher"), t.get("peer")))
        r.check(t.get("streams") == 1, "dpa2: the held connection is a live stream on it (%s)" %
                t.get("streams"))
        time.sleep(0.3)
        tun = c.admin(1, "/tunnels")
        mine = [x for x in tun if x.get("source") == CLIENT_ID and x.get("node") == "node1"]
        r.check(len(mine) == 1 and mine[0].get("streams_total") == TOTAL,
                "dpa2: every connection was a stream on that tunnel (streams_total %s of %d)" % (
                    mine[0].get("streams_total") if mine else None, TOTAL))
        st1 = c.admin(1, "/stats")
        print("  info dpa2 /stats same_node %s -> %s, outbound %s -> %s, inbound %s -> %s" % (
            st0.get("same_node"), st1.get("same_node"), st0.get("outbound"),
            st1.get("outbound"), st0.get("inbound"), st1.get("inbound")))
        r.check(st1.get("inbound", 0) - st0.get("inbound", 0) == TOTAL,
                "dpa2: node1's HBONE listener took %d CONNECTs (/stats inbound %s -> %s)" % (
                    TOTAL, st0.get("inbound"), st1.get("inbound")))
        log = c.weftd_log(1)[start:]
        inb = [ln for ln in access(log, "inbound") if "dst_workload=default/%s " % SERVER in ln]
        r.check(len(inb) == TOTAL and all("response_flags=- " in ln + " " for ln in inb),
                "dpa2: node1 logged %d clean inbound (HBONE) lines from %s to default/%s (%d)"
                % (TOTAL, CLIENT_ID, SERVER, len(inb)))
        outb = [ln for ln in access(log, "outbound") if "dst_workload=default/%s " % SERVER in ln]
        r.check(len(outb) == TOTAL, "dpa2: ... and %d outbound lines (%d)" % (
            TOTAL, len(outb)))
        up = re.findall(r"tunnel %s -> node node1 \(172\.30\.0\.1:15008\) up: (\S+)," %
                        re.escape(CLIENT_ID), log)
        r.check(up == [CIPHER], "dpa2: node1 logged one tunnel handshake to itself with %s "
                "(%s)" % (CIPHER, up))


def main():
    require_root()
    r = Results("test_dp_same_node")
    fast_path(r)
    mtls_path(r)
    r.done()


if __name__ == "__main__":
    main()
