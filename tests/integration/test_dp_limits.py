# SPDX-License-Identifier: Apache-2.0
"""Bounded everything (issue 3 item 6): weftd's limits refuse the new
connection with a logged reason and never crash.

Unmodified apps only: python3 echo servers in the node-2 pods and python3
socket clients in the node-1 pods. Two clusters, one after the other (the
limits are per-daemon settings, appended to every weftd.yaml):

Cluster 1, `max_streams_per_tunnel: 10`:
 (a) 25 concurrent connections from n1-p1 to the echo servers on node 2, each
     proven with a first round trip and then held open at a barrier. While
     they are open node 1's /tunnels shows exactly 3 ready tunnels for the key
     (sa-n1-p1, node2), none with more than 10 streams, 25 streams in all, and
     `ss` in node 1's netns counts 3 established connections to :15008 (and
     node 2 3 from it). Then all 25 finish (second chunk, half-close, the
     server's trailer) with exactly their own bytes; afterwards the tunnels'
     live streams drop to 0 (the tunnels themselves may idle on) and they
     carried 25 streams in all.

Cluster 2, `max_tunnels: 1` and `max_connections: 20` (and
`max_connections_per_pod: 20`, so one pod may take all of it):
 (c) a held connection from n1-p1 to node 2 opens the one tunnel allowed; a
     connection from n1-p2 (another source identity, so another tunnel key)
     to node 2 is refused (the app sees a reset or EOF and no data) and node
     1 logs a refusal naming the tunnel limit; no second tunnel exists; the
     held n1-p1 connection still finishes correctly and a new one from n1-p1
     works.
 (b) with node 1 idle again, 20 connections from n1-p1 (the key that owns the
     one tunnel, so max_tunnels plays no part) are held open: node 1 and node
     2 both count 20 live connections. The 21st outbound connection on node 1
     is refused by node 1 itself (reset/EOF, no data; node 1 logs a refusal
     naming max_connections, node 2 logs none: it never saw the CONNECT) and
     the count is back at 20 afterwards. After 5 of the held connections
     finish, new connections work again (one probe, then 5 more held ones up
     to 20), and the next one is refused again. All held connections finish
     with their own bytes and the live counts return to 0.
 (b2) inbound connections count on their node too: node 2 holding 10 HBONE
     deliveries and 10 plaintext ones (a non-mesh client in node 2's netns,
     through the pods' 15006 capture) refuses one more of either kind (HBONE:
     503, logged; plaintext: reset, logged naming max_connections).

Every daemon keeps its pid through all of it (never a crash).
(The per-stream buffer bound is test_dp_integrity.py's slow-reader check.)
"""
import json
import os
import re
import secrets
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_SERVER, SOCK_LIB, Hold  # noqa: E402
from clusterlib import Cluster, Results, require_root, weftd_pid  # noqa: E402

NAME = "dpl"
TD = "spiffe://cluster.local"
SERVERS = ("n2-p1", "n2-p2")
PORT = 8080


def sa_id(pod):
    return TD + "/ns/default/sa/sa-" + pod


# One connection, classified: connect, send a message, wait for its echo,
# half-close, read to EOF. Prints JSON {"outcome", "data", "err"}: outcome
# "ok" (echo + trailer), "eof" (EOF before all of the echo), "reset"
# (ECONNRESET/EPIPE), "timeout", "connect" (connect failed).
# Args: ip port msg.
PROBE_APP = SOCK_LIB + r"""
import json, sys
ip, port, msg = sys.argv[1], int(sys.argv[2]), sys.argv[3].encode()
r = {"outcome": None, "data": "", "err": None}
got = bytearray()
try:
    c = socket.create_connection((ip, port), timeout=8)
except Exception as e:
    r["outcome"], r["err"] = "connect", repr(e)
    print(json.dumps(r)); sys.exit(0)
try:
    c.sendall(msg)
    recv_until(c, got, len(msg))
    if len(got) < len(msg):
        r["outcome"] = "eof"
    else:
        c.shutdown(socket.SHUT_WR)
        recv_until(c, got)
        r["outcome"] = "ok" if got.startswith(msg + b"|") else "bad"
except (ConnectionResetError, BrokenPipeError) as e:
    r["outcome"], r["err"] = "reset", repr(e)
except socket.timeout as e:
    r["outcome"], r["err"] = "timeout", repr(e)
except OSError as e:
    r["outcome"], r["err"] = "error", repr(e)
r["data"] = bytes(got).decode(errors="replace")
c.close()
print(json.dumps(r))
"""


def hold(c, pod, n, ips, nonce):
    """A HOLD_APP in pod with n connections to the echo servers at ips."""
    return Hold(c, pod, n, ips, nonce, PORT)


def check_hold_open(r, h, what):
    """Every connection opened with a correct first echo and waits at the barrier."""
    r.check(h.ready == "READY %d" % h.n,
            "%s: all %d connections from %s opened and reached their barrier (%r)" % (
                what, h.n, h.pod, h.ready))


def check_hold_done(r, h, what):
    h.finish()
    n, ok, bad = h.summary()
    opened = sum(1 for x in (h.res or []) if x and x["opened"])
    r.check(n == h.n and opened == h.n,
            "%s: %d/%d connections opened with a correct first echo" % (what, opened, h.n))
    r.check(n == h.n and ok == h.n, "%s: %d/%d finished with exactly their own bytes%s" % (
        what, ok, h.n, (": e.g. %s" % bad[:3]) if bad else ""))


def probe(c, pod, ip, msg):
    p = c.run(pod, ["/usr/bin/python3", "-c", PROBE_APP, ip, str(PORT), msg], timeout=30,
              check=False)
    try:
        return json.loads(p.stdout.decode())
    except ValueError:
        return {"outcome": "crashed", "data": "", "err": p.stderr.decode()[-300:]}


def refused(res):
    return res.get("outcome") in ("eof", "reset", "connect") and res.get("data") == ""


def stat(c, k, key):
    try:
        return c.admin(k, "/stats").get(key)
    except Exception as e:  # noqa: BLE001
        return "error: %s" % e


def wait_stat(c, k, key, want, timeout=8.0):
    deadline = time.time() + timeout
    while True:
        v = stat(c, k, key)
        if v == want or time.time() >= deadline:
            return v
        time.sleep(0.1)


def log_lines(c, k, start, rx):
    return [ln for ln in c.weftd_log(k)[start:].splitlines() if re.search(rx, ln)]


def check_refusal_logged(c, r, k, start, line, what):
    """The access-log line of the refused connection (src from the refusal
    line `outbound SRC -> DST refused [FLAG]: why`) must carry FLAG as its
    response_flags (DESIGN section 7: a failed connection says why in
    response_flags), and the refusal's reason in error=."""
    m = re.search(r"outbound (\S+) -> (\S+) refused \[(\w+)\]: (.*)$", line or "")
    if not m:
        r.check(False, "%s: the refusal line has the form `outbound SRC -> DST refused "
                "[FLAG]: why` (%r)" % (what, line))
        return
    src, flag, why = m.group(1), m.group(3), m.group(4).strip()
    acc = log_lines(c, k, start, r"connection complete direction=outbound src=%s " %
                    re.escape(src))
    got = re.search(r"response_flags=(\S+)", acc[0]).group(1) if len(acc) == 1 else None
    r.check(len(acc) == 1 and got == flag and why in acc[0],
            "%s: its `connection complete` line says response_flags=%s and error=%r "
            "(%d lines, response_flags=%s)%s" % (what, flag, why, len(acc), got,
                                                 "".join("\n        " + ln for ln in acc[:2])))


def start_servers(c, r):
    for pod in SERVERS:
        c.py(pod, ECHO_SERVER, [str(PORT), pod])
    for pod in SERVERS:
        r.check(c.wait_port(pod, "127.0.0.1", PORT), "echo server listens in %s" % pod)


def check_pids(c, r, pids, what):
    now = {k: weftd_pid(c, k) for k in pids}
    alive = {k: os.path.exists("/proc/%d" % now[k]) for k in now}
    r.check(now == pids and all(alive.values()),
            "%s: weftd kept its pid on every node (never crashed): %s -> %s, alive %s" % (
                what, pids, now, alive))


# --- (a) max_streams_per_tunnel ---------------------------------------------------
def part_streams(r, nonce):
    n, per = 25, 10
    want_tunnels = (n + per - 1) // per
    client = "n1-p1"
    with Cluster(NAME, nodes=2, pods=2, conf=["max_streams_per_tunnel: %d" % per]) as c:
        ip = {p: c.ip(p) for p in SERVERS + (client,)}
        start_servers(c, r)
        pids = {k: weftd_pid(c, k) for k in (1, 2)}
        log1 = len(c.weftd_log(1))
        r.check(c.admin(1, "/tunnels") == [], "(a) node1 has no tunnel before the burst")

        h = hold(c, client, n, [ip[s] for s in SERVERS], nonce)
        t0 = time.time()
        h.wait_ready()
        check_hold_open(r, h, "(a)")
        print("  info (a) %d connections open in %.1f s" % (n, time.time() - t0))

        tunnels = c.admin(1, "/tunnels")
        print("  info (a) node1 /tunnels:", json.dumps(tunnels))
        mine = [t for t in tunnels if t.get("source") == sa_id(client) and
                t.get("node") == "node2"]
        streams = [t.get("streams") for t in mine]
        r.check(len(mine) == want_tunnels and len(tunnels) == want_tunnels,
                "(a) node1 /tunnels shows %d tunnels for (%s, node2) with %d connections "
                "held and max_streams_per_tunnel %d: %d (of %d listed)" % (
                    want_tunnels, sa_id(client), n, per, len(mine), len(tunnels)))
        r.check(all(isinstance(s, int) and s <= per for s in streams) and sum(
            s for s in streams if isinstance(s, int)) == n,
                "(a) no tunnel carries more than %d streams, %d in all: %s" % (
                    per, n, streams))
        r.check(all(t.get("state") == "ready" for t in mine),
                "(a) all of them are ready: %s" % [t.get("state") for t in mine])
        n_tls = len(c.ss("n1", "( dport = :15008 )"))
        r.check(n_tls == want_tunnels, "(a) `ss` in node1's netns: %d established "
                "connections to :15008 (%d)" % (want_tunnels, n_tls))
        n_in = len(c.ss("n2", "( sport = :15008 )"))
        r.check(n_in == want_tunnels, "(a) `ss` in node2's netns: %d established HBONE "
                "connections on :15008 (%d)" % (want_tunnels, n_in))
        n_app = len(c.ss(client, "( dport = :%d )" % PORT))
        r.check(n_app == n, "(a) %s holds %d established app connections (%d)" % (
            client, n, n_app))

        check_hold_done(r, h, "(a)")

        deadline = time.time() + 5
        while True:
            tunnels = c.admin(1, "/tunnels")
            mine = [t for t in tunnels if t.get("source") == sa_id(client)]
            if sum(t.get("streams", 0) for t in mine) == 0 or time.time() >= deadline:
                break
            time.sleep(0.1)
        r.check(sum(t.get("streams", 0) for t in mine) == 0 and mine,
                "(a) afterwards the tunnels' live streams drop to 0: %s" % [
                    (t.get("state"), t.get("streams")) for t in mine])
        total = sum(t.get("streams_total", 0) for t in mine)
        r.check(total == n, "(a) the tunnels carried %d streams in all (%d)" % (n, total))
        up = log_lines(c, 1, log1, r"tunnel %s -> node node2 .* up: " % re.escape(
            sa_id(client)))
        r.check(len(up) == want_tunnels, "(a) node1 logged %d tunnel handshakes for the key "
                "(%d)" % (want_tunnels, len(up)))
        done = log_lines(c, 1, log1, r"connection complete direction=outbound")
        clean = [ln for ln in done if "response_flags=- " in ln + " " and "error=" not in ln]
        r.check(len(done) == n and len(clean) == n,
                "(a) node1 logged %d clean `connection complete` lines (%d, %d clean)" % (
                    n, len(done), len(clean)))
        refusals = log_lines(c, 1, log1, r"refused")
        r.check(not refusals, "(a) node1 refused nothing%s" % "".join(
            "\n        " + ln for ln in refusals[:3]))
        check_pids(c, r, pids, "(a)")


# --- (c) max_tunnels, (b) max_connections ------------------------------------------
def part_tunnels_connections(r, nonce):
    maxc = 20
    with Cluster(NAME, nodes=2, pods=2,
                 conf=["max_tunnels: 1", "max_connections: %d" % maxc,
                       # the node's cap under test, not one pod's share of it
                       "max_connections_per_pod: %d" % maxc]) as c:
        ip = {p: c.ip(p) for p in SERVERS + ("n1-p1", "n1-p2")}
        start_servers(c, r)
        pids = {k: weftd_pid(c, k) for k in (1, 2)}
        dst = ip["n2-p1"]

        # (c) ------------------------------------------------------------------------
        log1 = len(c.weftd_log(1))
        held = hold(c, "n1-p1", 1, [dst], nonce)
        held.wait_ready()
        check_hold_open(r, held, "(c)")
        tunnels = c.admin(1, "/tunnels")
        r.check(len(tunnels) == 1 and tunnels[0].get("source") == sa_id("n1-p1"),
                "(c) node1 has the one tunnel allowed, keyed by %s: %s" % (
                    sa_id("n1-p1"), [(t.get("source"), t.get("node")) for t in tunnels]))
        res = probe(c, "n1-p2", dst, "tunnel-limit-" + nonce)
        r.check(refused(res), "(c) a connection from n1-p2 (another tunnel key) to node2 is "
                "refused: the app sees %s and no data (%s)" % (res.get("outcome"), res))
        why = log_lines(c, 1, log1, r"refused.*(max_tunnels|tunnel limit)")
        mine = [ln for ln in why if ip["n1-p2"] + ":" in ln]
        r.check(len(mine) == 1, "(c) node1 logged one refusal naming the tunnel limit for "
                "n1-p2's connection (%d)%s" % (len(mine), "".join(
                    "\n        " + ln for ln in why[:3])))
        check_refusal_logged(c, r, 1, log1, mine[0] if mine else None, "(c)")
        tunnels = c.admin(1, "/tunnels")
        r.check(len(tunnels) == 1 and tunnels[0].get("source") == sa_id("n1-p1"),
                "(c) still only n1-p1's tunnel: %s" % [
                    (t.get("source"), t.get("state")) for t in tunnels])
        check_hold_done(r, held, "(c) the held n1-p1 connection")
        res = probe(c, "n1-p1", dst, "after-limit-" + nonce)
        r.check(res.get("outcome") == "ok", "(c) a new connection from n1-p1 still works "
                "(%s)" % res)
        v = wait_stat(c, 1, "live_connections", 0)
        r.check(v == 0, "(c) node1's live connections are back at 0 (%s)" % v)
        check_pids(c, r, pids, "(c)")

        # (b) ------------------------------------------------------------------------
        client = "n1-p1"
        ips = [ip[s] for s in SERVERS]
        log1, log2 = len(c.weftd_log(1)), len(c.weftd_log(2))
        a = hold(c, client, 15, ips, nonce + "a")
        b = hold(c, client, maxc - 15, ips, nonce + "b")
        a.wait_ready()
        b.wait_ready()
        check_hold_open(r, a, "(b)")
        check_hold_open(r, b, "(b)")
        v1 = wait_stat(c, 1, "live_connections", maxc)
        v2 = wait_stat(c, 2, "live_connections", maxc)
        r.check(v1 == maxc and v2 == maxc, "(b) with %d connections held node1 and node2 "
                "each count %d live (%s, %s)" % (maxc, maxc, v1, v2))

        res = probe(c, client, dst, "one-too-many-" + nonce)
        r.check(refused(res), "(b) connection %d from %s is refused: the app sees %s and no "
                "data (%s)" % (maxc + 1, client, res.get("outcome"), res))
        why = log_lines(c, 1, log1, r"refused.*max_connections")
        r.check(len(why) == 1 and ip[client] + ":" in why[0],
                "(b) node1 logged one refusal naming max_connections, for %s's connection "
                "(%d)%s" % (client, len(why), "".join("\n        " + ln for ln in why[:3])))
        check_refusal_logged(c, r, 1, log1, why[0] if why else None, "(b)")
        n2why = log_lines(c, 2, log2, r"max_connections|answering 503")
        r.check(not n2why, "(b) node1 refused it itself: node2 logged no refusal%s" % "".join(
            "\n        " + ln for ln in n2why[:3]))
        v1 = wait_stat(c, 1, "live_connections", maxc)
        r.check(v1 == maxc, "(b) node1's live count is back at %d after the refusal (%s)" % (
            maxc, v1))

        check_hold_done(r, b, "(b) 5 of the held connections")
        v1 = wait_stat(c, 1, "live_connections", 15)
        r.check(v1 == 15, "(b) node1's live count drops to 15 (%s)" % v1)
        res = probe(c, client, dst, "room-again-" + nonce)
        r.check(res.get("outcome") == "ok", "(b) with room again a new connection works "
                "(%s)" % res)
        c2 = hold(c, client, maxc - 15, ips, nonce + "c")
        c2.wait_ready()
        check_hold_open(r, c2, "(b) refilled")
        v1 = wait_stat(c, 1, "live_connections", maxc)
        r.check(v1 == maxc, "(b) node1 counts %d live again (%s)" % (maxc, v1))
        res = probe(c, client, ip["n2-p2"], "again-too-many-" + nonce)
        r.check(refused(res), "(b) and the next one is refused again (%s, %s)" % (
            res.get("outcome"), res))
        why = log_lines(c, 1, log1, r"refused.*max_connections")
        r.check(len(why) == 2, "(b) node1 logged a second max_connections refusal (%d)" %
                len(why))
        check_hold_done(r, a, "(b) the first 15 held")
        check_hold_done(r, c2, "(b) the refill")
        v1 = wait_stat(c, 1, "live_connections", 0)
        v2 = wait_stat(c, 2, "live_connections", 0)
        r.check(v1 == 0 and v2 == 0, "(b) afterwards node1 and node2 count 0 live "
                "connections (%s, %s)" % (v1, v2))
        done = log_lines(c, 1, log1, r"connection complete direction=outbound")
        flags = {}
        for ln in done:
            m = re.search(r"response_flags=(\S+)", ln)
            flags[m.group(1) if m else "?"] = flags.get(m.group(1) if m else "?", 0) + 1
        want = {"-": maxc + 5 + 1, "OVERFLOW": 2}
        r.check(flags == want, "(b) node1's outbound `connection complete` lines: %d clean, "
                "2 with response_flags=OVERFLOW: %s" % (want["-"], flags))
        failed = stat(c, 1, "failed")
        r.check(failed == 3, "(b) node1's /stats counts the 3 refused connections of (c) and "
                "(b) as failed once each: %s" % failed)
        check_pids(c, r, pids, "(b)")

        # (b2) inbound connections count on their node too ----------------------------
        # node2 holds 10 HBONE deliveries (from n1-p1) and 10 plaintext ones from
        # a non-mesh client (node2's own netns, through the pods' 15006 capture):
        # 20 live on node2, 10 on node1. One more of either kind must be refused by
        # node2: an HBONE CONNECT answered 503, a plaintext one reset.
        log1, log2 = len(c.weftd_log(1)), len(c.weftd_log(2))
        mesh = hold(c, client, 10, ips, nonce + "m")
        plain = hold(c, "n2", maxc - 10, ips, nonce + "p")
        mesh.wait_ready()
        plain.wait_ready()
        check_hold_open(r, mesh, "(b2) mesh")
        check_hold_open(r, plain, "(b2) plaintext")
        v1 = wait_stat(c, 1, "live_connections", 10)
        v2 = wait_stat(c, 2, "live_connections", maxc)
        r.check(v1 == 10 and v2 == maxc, "(b2) node1 counts 10 live and node2 %d (%s, %s)" % (
            maxc, v1, v2))
        res = probe(c, client, dst, "inbound-full-" + nonce)
        r.check(refused(res), "(b2) a new mesh connection to node2 (full) is refused: the app "
                "sees %s and no data (%s)" % (res.get("outcome"), res))
        why = log_lines(c, 2, log2, r"inbound CONNECT.*max_connections")
        r.check(len(why) == 1, "(b2) node2 logged one refused CONNECT naming max_connections "
                "(%d)%s" % (len(why), "".join("\n        " + ln for ln in why[:3])))
        res = probe(c, "n2", ip["n2-p2"], "plain-full-" + nonce)
        r.check(refused(res), "(b2) a new plaintext connection into node2's pods (full) is "
                "refused: the app sees %s and no data (%s)" % (res.get("outcome"), res))
        why = log_lines(c, 2, log2, r"inbound plaintext.*max_connections")
        r.check(len(why) == 1, "(b2) node2 logged one refused plaintext connection naming "
                "max_connections (%d)%s" % (len(why), "".join(
                    "\n        " + ln for ln in why[:3])))
        v1 = wait_stat(c, 1, "live_connections", 10)
        v2 = wait_stat(c, 2, "live_connections", maxc)
        r.check(v1 == 10 and v2 == maxc, "(b2) after the refusals node1 counts 10 and node2 "
                "%d again (%s, %s)" % (maxc, v1, v2))
        check_hold_done(r, mesh, "(b2) mesh")
        check_hold_done(r, plain, "(b2) plaintext")
        v1 = wait_stat(c, 1, "live_connections", 0)
        v2 = wait_stat(c, 2, "live_connections", 0)
        r.check(v1 == 0 and v2 == 0, "(b2) afterwards node1 and node2 count 0 live "
                "connections (%s, %s)" % (v1, v2))
        check_pids(c, r, pids, "(b2)")


def main():
    require_root()
    r = Results("test_dp_limits")
    nonce = secrets.token_hex(6)
    t0 = time.time()
    part_streams(r, nonce)
    print("  info part (a) took %.1f s" % (time.time() - t0))
    part_tunnels_connections(r, nonce)
    print("  info whole test took %.1f s" % (time.time() - t0))
    r.done()


if __name__ == "__main__":
    main()
