# SPDX-License-Identifier: Apache-2.0
"""Multiplexed tunnels (issue 3 item 10): 100 concurrent app connections
from one pod on node 1 to pods on node 2 share exactly one TLS connection.

Tunnels are keyed by (source identity, destination node), so every
connection from n1-p2 to n2-p1 and n2-p2 rides the same tunnel. A plain
python3 client in n1-p2 opens 100 connections at once (a cold start: the
burst also exercises "at most one tunnel opened per key"), half to the echo
server in n2-p1 and half to the one in n2-p2, proves each one end to end with
a round trip, then holds all of them open at a barrier. While they are open
the test counts with `ss`: exactly one established TCP connection to :15008
in node 1's netns (and one from :15008 in node 2's), 100 app connections in
the client pod, 100 deliveries in the server pods; /tunnels shows the one
tunnel with 100 live streams. Then every connection finishes (second chunk,
half-close, the server's trailer) and must return exactly its own bytes.
"""
import os
import re
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_SERVER, Hold  # noqa: E402
from clusterlib import Cluster, Results, require_root  # noqa: E402

NAME = "dpa"
TD = "spiffe://cluster.local"
CIPHER = "TLS_AES_256_GCM_SHA384"
N = 100
CLIENT = "n1-p2"
CLIENT_ID = TD + "/ns/default/sa/sa-" + CLIENT
SERVERS = ("n2-p1", "n2-p2")


def main():
    require_root()
    r = Results("test_dp_multiplex")
    nonce = secrets.token_hex(6)
    with Cluster(NAME, nodes=2, pods=2) as c:
        ip = {p: c.ip(p) for p in SERVERS + (CLIENT,)}
        for pod in SERVERS:
            c.py(pod, ECHO_SERVER, ["8080", pod])
        for pod in SERVERS:
            r.check(c.wait_port(pod, "127.0.0.1", 8080), "echo server listens in %s" % pod)
        log1_start = len(c.weftd_log(1))
        tun0 = c.admin(1, "/tunnels")
        r.check(tun0 == [], "node1 has no tunnel before the burst (%s)" % tun0)

        app = Hold(c, CLIENT, N, [ip["n2-p1"], ip["n2-p2"]], nonce, 8080, repeat=50,
                   connect_timeout=20, barrier_timeout=60, join_timeout=120)
        t0 = time.time()
        line = app.wait_ready(90)
        r.check(bool(line) and line.startswith("READY"),
                "the client reached its barrier (%r, %.1f s)" % (line, time.time() - t0))

        # --- while all N are open --------------------------------------------------
        tls_lines = c.ss("n1", "( dport = :15008 )")
        n_tls = len(tls_lines)
        r.check(n_tls == 1, "exactly ONE established connection to :15008 in node1's netns "
                "while %d app connections are open: %d\n        %s" % (
                    N, n_tls, "\n        ".join(tls_lines)))
        n_in = len(c.ss("n2", "( sport = :15008 )"))
        r.check(n_in == 1, "exactly one established HBONE connection on node2's :15008: %d" %
                n_in)
        n_app = len(c.ss(CLIENT, "( dport = :8080 )"))
        r.check(n_app == N, "%s holds %d established app connections to :8080 (%d)" % (
            CLIENT, N, n_app))
        n_srv = {pod: len(c.ss(pod, "( sport = :8080 )")) for pod in SERVERS}
        r.check(n_srv == {"n2-p1": N // 2, "n2-p2": N - N // 2},
                "the server pods hold %d delivered connections each: %s" % (N // 2, n_srv))
        tunnels = c.admin(1, "/tunnels")
        mine = [t for t in tunnels if t.get("source") == CLIENT_ID]
        print("  info node1 /tunnels:", tunnels)
        r.check(len(tunnels) == 1 and len(mine) == 1,
                "node1 /tunnels lists exactly one tunnel, keyed by %s (%d)" % (
                    CLIENT_ID, len(tunnels)))
        t = mine[0] if mine else {}
        r.check(t.get("node") == "node2" and t.get("cipher") == CIPHER,
                "it goes to node2 with %s (%s, %r)" % (CIPHER, t.get("node"), t.get("cipher")))
        r.check(t.get("streams") == N, "it carries %d live streams (%s)" % (N, t.get("streams")))

        # --- finish them all -----------------------------------------------------------
        res = app.finish(120)
        r.check(isinstance(res, list) and len(res) == N and None not in res,
                "the client reported all %d connections" % N)
        res = [x for x in (res or []) if x]
        opened = sum(1 for x in res if x["opened"])
        ok = [x for x in res if x["ok"]]
        r.check(opened == N, "%d/%d connections opened with a correct first echo" % (opened, N))
        bad = [x for x in res if not x["ok"]]
        r.check(len(ok) == N, "%d/%d connections completed with exactly their own bytes%s" % (
            len(ok), N, (": e.g. %s" % bad[:3]) if bad else ""))
        want_tag = {ip["n2-p1"]: "n2-p1", ip["n2-p2"]: "n2-p2"}
        right = [x for x in ok if x["out"].split("|")[1:2] == [want_tag[x["ip"]]]]
        r.check(len(right) == len(ok) and ok,
                "each was answered by the server it dialled (trailer tag)")
        seen = sorted({x["out"].split("|")[2] for x in ok if x["out"].count("|") >= 2})
        print("  info the echo servers saw sources: %s (client pod %s)" % (seen, ip[CLIENT]))

        # --- after ------------------------------------------------------------------------
        time.sleep(0.3)
        tunnels = c.admin(1, "/tunnels")
        mine = [t for t in tunnels if t.get("source") == CLIENT_ID]
        r.check(len(mine) == 1 and mine[0].get("streams_total") == N,
                "the one tunnel carried all %d streams (streams_total %s)" % (
                    N, mine[0].get("streams_total") if mine else None))
        log1 = c.weftd_log(1)[log1_start:]
        up = [ln for ln in log1.splitlines()
              if re.search(r"tunnel \S+ -> node \S+ .* up: ", ln)]
        r.check(len(up) == 1, "node1 logged exactly one tunnel handshake during the burst "
                "(%d)%s" % (len(up), "".join("\n        " + ln for ln in up[:4])))
        lines = [ln for ln in log1.splitlines() if "connection complete direction=outbound" in ln
                 and ("src_identity=%s " % CLIENT_ID) in ln]
        clean = [ln for ln in lines if "response_flags=- " in ln + " " and "error=" not in ln]
        r.check(len(lines) == N and len(clean) == N,
                "node1 logged %d clean `connection complete` lines (%d, %d clean)" % (
                    N, len(lines), len(clean)))
    r.done()


if __name__ == "__main__":
    main()
