# SPDX-License-Identifier: Apache-2.0
"""Source addresses are claims (DESIGN §5.1, issue 8 item 2). A mesh workload
(a real SVID for sa-n1-p1 from the agent, an independent HBONE client on
Python ssl + h2, dialling from node 1 like node 1's weftd) sends CONNECTs to
node 2 with forged `forwarded: for=` headers: another workload's IP,
127.0.0.1, the destination pod's own IP, an IP outside the registry and
malformed values — each answered 401 with IDENTITY_ERROR and a log line
naming the claim and the identity. Its own IP is honoured (the app sees it);
without the header the app sees node 2's own address. A source_ips ALLOW
rule cannot be satisfied by forging, and is satisfied by the real client.
While each attack runs a probe app connection keeps working; afterwards
node 2 is back at its baseline within 2 s."""
import os
import ssl
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from attacklib import NodeWatch, probe  # noqa: E402
from clusterlib import (ECHO_SERVER, Cluster, HboneClient, HboneError, Results,  # noqa: E402
                        agent_svid, echo_probe, require_root, wait_log)

NAME = "atkf"
TD = "cluster.local"
N2 = "172.30.0.2"
res = Results("attack: forged sources")


class Client:
    def __init__(self, c, svid, bundle):
        self.c, self.svid, self.bundle = c, svid, bundle

    def connect(self, dst, fwd):
        """CONNECT dst with forwarded fwd (None: no header), send a token on 200:
        (status, what the echo app answered)."""
        h = HboneClient(self.c.netns("n1"), key_pem=self.svid[0], chain_pem=self.svid[1],
                        bundle=self.bundle)
        try:
            h.connect()
            sid = h.open(dst, headers=[("forwarded", fwd)] if fwd is not None else [])
            st = h.streams[sid]
            if h.status(sid, timeout=5) != 200:
                return st["status"], b""
            h.send(sid, b"tok", end=True)
            h.pump(lambda: st["ended"] or st["reset"] is not None, 5)
            return st["status"], st["data"]
        except (ssl.SSLError, OSError, HboneError) as e:
            return "error %s" % e, b""
        finally:
            h.close()


def forged(c, cl, w2, dst, fwd, what, want_line):
    w2.mark()
    st, _ = cl.connect(dst, fwd)
    probe(c, res, "n1-p2", "n2-p1", what)
    res.check(st == 401, "%s: answered 401 (got %s)" % (what, st))
    line = wait_log(c, 2, r"refused \[IDENTITY_ERROR\].*%s" % want_line, timeout=2,
                    start=w2.log0)
    res.check(line is not None and "sa-n1-p1" in line,
              "%s: node 2 logs the claim and the identity (%s)" %
              (what, line.split("weftd: ", 1)[-1] if line else "no line"))
    w2.settle(what)


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=2) as c:
        ip = {p: c.ip(p) for p in ("n1-p1", "n1-p2", "n2-p1", "n2-p2")}
        for pod in ip:
            c.py(pod, ECHO_SERVER, ["8080", pod.replace("-", "")])
        for pod in ip:
            c.wait_port(pod, "127.0.0.1", 8080)
        probe(c, res, "n1-p2", "n2-p1", "warm-up")
        svid = agent_svid(c, 1, "spiffe://%s/ns/default/sa/sa-n1-p1" % TD)
        bundle = open(os.path.join(c.dir, "agent", "ca", "root-cert.pem"), "rb").read()
        cl = Client(c, svid, bundle)
        w2 = NodeWatch(c, 2, res)
        dst = "%s:8080" % ip["n2-p1"]

        # The harness succeeds for the truth, and the app sees who it is.
        st, data = cl.connect(dst, 'for="%s:4242"' % ip["n1-p1"])
        res.check(st == 200 and data == b"tok|n2p1|" + ip["n1-p1"].encode(),
                  "own IP claimed: 200, the app sees %s (%s %r)" % (ip["n1-p1"], st, data))
        st, data = cl.connect(dst, None)
        res.check(st == 200 and data == b"tok|n2p1|" + N2.encode(),
                  "no header: 200, the app sees node 2's own address %s (%s %r)" %
                  (N2, st, data))

        for fwd, what, want in [
                ('for="%s:4242"' % ip["n1-p2"], "another workload's IP", ip["n1-p2"]),
                ('for="127.0.0.1:1"', "loopback", "loopback"),
                ('for="%s:1"' % ip["n2-p1"], "the destination's own IP", "own address"),
                ('for="10.9.9.9:1"', "an IP outside the registry", "no workload"),
                ('for="%s:1", for=1.2.3.4' % ip["n1-p1"], "two elements", "forwarded header"),
                ('for=_hidden', "obfuscated", "forwarded header"),
                ('for="%s:1"x' % ip["n1-p1"], "trailing bytes", "forwarded header")]:
            forged(c, cl, w2, dst, fwd, "forged for= %s" % what, want)

        # A source_ips ALLOW rule on app-p2 that only n1-p2 satisfies.
        ok = c.set_policies("""policies:
  - name: only-n1p2
    namespace: default
    scope: workload
    selector: {app: app-p2}
    action: ALLOW
    rules:
      - source_ips: ["%s/32"]
""" % ip["n1-p2"])
        res.check(ok, "source_ips policy reached both nodes")
        dst2 = "%s:8080" % ip["n2-p2"]
        forged(c, cl, w2, dst2, 'for="%s:4242"' % ip["n1-p2"],
               "forging the allowed source_ips", ip["n1-p2"])
        st, _ = cl.connect(dst2, None)
        res.check(st == 401, "no header: matches no source_ips rule, denied (got %s)" % st)
        res.check(wait_log(c, 2, r"only-n1p2|no ALLOW", timeout=2, start=w2.log0) is not None,
                  "no header: node 2 logs the policy decision")
        err = echo_probe(c.netns("n1-p2"), ip["n2-p2"], 8080)
        res.check(err is None, "the real n1-p2 satisfies the rule through weft (%s)" %
                  (err or "echo ok"))
        err = echo_probe(c.netns("n1-p1"), ip["n2-p2"], 8080)
        res.check(err is not None, "n1-p1 does not (%s)" % err)
        per_peer_cap(c, svid, bundle, w2, dst)


PEER_CONNS_MAX = 16     # weftd max_connections_per_peer (default)


def per_peer_cap(c, svid, bundle, w2, dst):
    """One authenticated identity opening HBONE connections without end holds
    at most PEER_CONNS_MAX of them (§5.1: what one peer may make weftd hold
    is capped); the rest are refused after the handshake with a log line,
    the ones held keep working, and so does everyone else."""
    w2.mark()
    # Node 1's own tunnels as this identity to node 2 count against it too.
    ours = sum(1 for t in c.admin(1, "/tunnels")
               if t["source"].endswith("/sa/sa-n1-p1") and t["node"] == "node2" and
               t["state"] != "closed")
    want = PEER_CONNS_MAX - ours
    held, refused = [], 0
    try:
        for _ in range(PEER_CONNS_MAX + 8):
            h = HboneClient(c.netns("n1"), key_pem=svid[0], chain_pem=svid[1], bundle=bundle)
            try:
                h.connect()
                # The refusal comes right after the handshake: our first
                # CONNECT gets no answer, the connection ends.
                sid = h.open(dst)
                if h.status(sid, timeout=3) == 200:
                    held.append((h, sid))
                    continue
                refused += 1
            except (ssl.SSLError, OSError, HboneError):
                refused += 1
            h.close()
        res.check(len(held) == want and refused == PEER_CONNS_MAX + 8 - want,
                  "one identity opening %d HBONE connections to node 2 (which has %d of "
                  "node 1's tunnels as it) holds %d, the cap of %d, the rest are refused "
                  "(held %d, refused %d)" % (PEER_CONNS_MAX + 8, ours, want, PEER_CONNS_MAX,
                                             len(held), refused))
        line = wait_log(c, 2, r"refused \[OVERFLOW\].*already has %d connections" %
                        PEER_CONNS_MAX, timeout=2, start=w2.log0)
        res.check(line is not None and "sa-n1-p1" in line,
                  "node 2 logs the refusal with the identity (%s)" %
                  (line.split("weftd: ", 1)[-1] if line else "no line"))
        ok = 0
        for h, sid in held:
            st = h.streams[sid]
            h.send(sid, b"tok", end=True)
            h.pump(lambda: st["ended"] or st["reset"] is not None, 5)
            ok += st["data"].startswith(b"tok")
        res.check(ok == len(held), "the %d held connections still carry their streams (%d "
                  "echoed)" % (len(held), ok))
        probe(c, res, "n1-p2", "n2-p1", "while one identity holds its cap")
    finally:
        for h, _ in held:
            h.close()
    w2.settle("the per-peer cap")


res.run(main)
