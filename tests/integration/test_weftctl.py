# SPDX-License-Identifier: Apache-2.0
"""weftctl against a live cluster (issue 9 items 3 and 4): every verb it has, in
both output forms (the JSON parsed and checked against the cluster), the
exit codes (0 ok, 2 usage / unreachable daemon), --help for the tool and a
verb, `log-level` really changing weftd's level, and `explain` for an
allowed pair, a service VIP, a DENY policy (a real connection agrees), a pod
of another node, an address outside the registry and weftd's own port;
`why` listing the denied connection on node 1 and finding it by trace id on
both nodes, and explain's history of a port where nothing listens.
weftctl runs in node
1's netns, as an operator would run it on the node."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (ECHO_SERVER, Cluster, Results, deny_policy,  # noqa: E402
                        echo_probe, netns_socket, require_root)

NAME = "ctl"
BUILD = os.environ.get("WEFT_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "build")
WEFTCTL = os.path.join(BUILD, "weftctl")
res = Results("weftctl")
DENY_LEGACY = """policies:
  - name: deny-legacy
    namespace: default
    scope: namespace
    action: DENY
    rules:
      - namespaces: [legacy]
"""


def ctl(c, *args, node="n1"):
    p = subprocess.run(["ip", "netns", "exec", c.netns(node), WEFTCTL] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def main():
    require_root()
    if not os.access(WEFTCTL, os.X_OK):
        res.check(False, "%s is built" % WEFTCTL)
        res.done()
    with Cluster(NAME, nodes=2, pods=2) as c:
        c.py("n2-p1", ECHO_SERVER, ["8080"])
        c.wait_port("n2-p1", "127.0.0.1", 8080)
        res.check(echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 8080) is None,
                  "traffic n1-p1 -> n2-p1 (so node 1 has a tunnel)")

        rc, out, _ = ctl(c, "status")
        res.check(rc == 0 and "node node1 (172.30.0.1)" in out and "ready" in out,
                  "status: exit 0, names the node and says ready (%r)" % out.splitlines()[:1])
        rc, out, _ = ctl(c, "-o", "json", "status")
        st = json.loads(out) if rc == 0 else {}
        res.check(st.get("node") == "node1" and st.get("ready") is True and st.get("pods") == 2,
                  "status -o json: node1, ready, 2 pods (%s)" % {k: st.get(k) for k in
                                                                 ("node", "ready", "pods")})

        rc, out, _ = ctl(c, "workloads")
        lines = out.splitlines()
        res.check(rc == 0 and lines and lines[0].split()[:3] == ["WORKLOAD", "IP", "IDENTITY"]
                  and sum("default/n1-p" in ln for ln in lines) == 2,
                  "workloads: a header and the 2 pods of node 1 (%d lines)" % len(lines))
        cols = [ln.index("IP") for ln in lines[:1]] + \
               [ln.index(c.ip("n1-p1")) for ln in lines if "n1-p1" in ln]
        res.check(len(cols) == 2 and cols[0] == cols[1],
                  "workloads: columns are aligned (IP at %s)" % cols)
        rc, out, _ = ctl(c, "-o", "json", "workloads")
        wl = json.loads(out) if rc == 0 else []
        res.check(sorted(w["ip"] for w in wl) == sorted([c.ip("n1-p1"), c.ip("n1-p2")]),
                  "workloads -o json: the pods' IPs (%s)" % [w.get("ip") for w in wl])

        rc, out, _ = ctl(c, "services")
        res.check(rc == 0 and "svc-p1" in out and "10.96.0.1" in out and "80" in out,
                  "services: svc-p1 with its VIP and port")
        rc, out, _ = ctl(c, "-o", "json", "services")
        sv = {s["name"]: s for s in json.loads(out)} if rc == 0 else {}
        res.check(sv.get("svc-p1", {}).get("vips") == ["10.96.0.1"] and
                  sv["svc-p1"]["ports"] == [{"port": 80, "target_port": 8080}] and
                  len(sv["svc-p1"]["endpoints"]) == 2,
                  "services -o json: svc-p1's VIP, port 80 -> 8080 and its 2 endpoints (%s)" %
                  sv.get("svc-p1"))

        rc, out, _ = ctl(c, "tunnels")
        res.check(rc == 0 and "sa-n1-p1" in out and "node2" in out and "ready" in out and
                  "TLS_AES_256_GCM_SHA384" in out,
                  "tunnels: n1-p1's tunnel to node2, ready, with its cipher")
        rc, out, _ = ctl(c, "-o", "json", "tunnels")
        tn = json.loads(out) if rc == 0 else []
        res.check(any(t["node"] == "node2" and t["state"] == "ready" for t in tn),
                  "tunnels -o json: a ready tunnel to node2")

        connections_checks(c)

        rc, out, _ = ctl(c, "certs")
        res.check(rc == 0 and "spiffe://cluster.local/weft/node/node1" in out and
                  "ready" in out, "certs: the node identity, ready")
        rc, out, _ = ctl(c, "-o", "json", "certs")
        ce = json.loads(out) if rc == 0 else []
        res.check(any(x["identity"].endswith("/sa/sa-n1-p1") and x["state"] == "ready"
                      for x in ce), "certs -o json: n1-p1's identity is ready")

        c.set_policies(DENY_LEGACY)
        explain_checks(c)
        rc, out, _ = ctl(c, "policy")
        res.check(rc == 0 and "deny-legacy" in out and "DENY" in out and "namespace" in out,
                  "policy: the DENY policy just applied")
        rc, out, _ = ctl(c, "-o", "json", "policy")
        po = json.loads(out) if rc == 0 else []
        res.check(po and po[0] == {"name": "deny-legacy", "namespace": "default",
                                   "scope": "namespace", "action": "DENY", "selector": {},
                                   "rules": 1},
                  "policy -o json: the namespace DENY policy as applied (%s)" % po[:1])

        rc, out, _ = ctl(c, "log-level", "debug")
        res.check(rc == 0 and "debug" in out, "log-level debug: set (%r)" % out.strip())
        rc, out, _ = ctl(c, "-o", "json", "log-level")
        res.check(rc == 0 and json.loads(out).get("level") == "debug",
                  "log-level -o json: weftd says debug")
        ctl(c, "log-level", "info")
        rc, _, err = ctl(c, "log-level", "loud")
        res.check(rc == 2 and "not one of" in err, "log-level loud: exit 2, says why")

        rc, out, _ = ctl(c, "--help")
        res.check(rc == 0 and "verbs:" in out and max(len(ln) for ln in out.splitlines()) <= 80,
                  "--help: exit 0, fits 80 columns")
        rc, out, _ = ctl(c, "tunnels", "--help")
        res.check(rc == 0 and "tunnels" in out, "tunnels --help: exit 0")
        rc, _, err = ctl(c, "no-such-verb")
        res.check(rc == 2 and "no such verb" in err, "an unknown verb: exit 2")
        rc, _, err = ctl(c, "--admin", "127.0.0.1:1", "status")
        res.check(rc == 2 and "cannot reach" in err,
                  "an unreachable admin address: exit 2, says so (%r)" % err.strip()[:90])
        rc, out, _ = ctl(c, "--admin", "127.0.0.1:15000", "status", node="n2")
        res.check(rc == 0 and "node node2" in out, "--admin in node 2's netns asks node 2")


def connections_checks(c):
    """connections: a connection held open shows on both nodes, one trace id."""
    s = netns_socket(c.netns("n1-p1"))
    s.settimeout(5)
    s.connect((c.ip("n2-p1"), 8080))
    s.sendall(b"hold")
    s.recv(16)
    try:
        rc1, out1, _ = ctl(c, "-o", "json", "connections")
        rc2, out2, _ = ctl(c, "-o", "json", "connections", node="n2")
        mine = [x for x in (json.loads(out1) if rc1 == 0 else [])
                if x["direction"] == "outbound" and x["dst"] == "%s:8080" % c.ip("n2-p1")]
        theirs = [x for x in (json.loads(out2) if rc2 == 0 else [])
                  if x["direction"] == "inbound"]
        res.check(len(mine) == 1 and mine[0]["src_identity"].endswith("/sa/sa-n1-p1") and
                  mine[0]["dst_workload"] == "default/n2-p1",
                  "connections on node 1: the open connection, outbound to default/n2-p1 "
                  "(%s)" % mine)
        res.check(len(mine) == 1 and [x["trace_id"] for x in theirs] == [mine[0]["trace_id"]],
                  "connections on node 2: the same connection inbound, same trace id")
        rc, out, _ = ctl(c, "connections")
        res.check(rc == 0 and "outbound" in out and c.ip("n2-p1") in out,
                  "connections (table): lists it")
    finally:
        s.close()
    time.sleep(0.5)
    rc, out, _ = ctl(c, "-o", "json", "connections")
    res.check(rc == 0 and json.loads(out) == [], "connections: gone once closed (%s)" % out.strip())


def explain_checks(c):
    """explain answers with the decisions real connections use."""
    c2 = c.ip("n2-p1")
    rc, out, _ = ctl(c, "explain", c.ip("n1-p1"), "%s:8080" % c2)
    res.check(rc == 0 and "ALLOWED" in out and "HBONE tunnel to node node2" in out and
              "tunnel now: ready" in out and "only node2 knows" in out,
              "explain n1-p1 -> n2-p1:8080: exit 0, allowed over the ready tunnel to node2, "
              "and it says only node2 knows whether the app listens (%r)" %
              out.strip().splitlines()[-1:])
    rc, out, _ = ctl(c, "-o", "json", "explain", "default/n1-p1", "10.96.0.1:80")
    e = json.loads(out) if out else {}
    dest = [x["says"] for x in e.get("steps", []) if x["step"] == "destination"]
    res.check(rc == 0 and e.get("verdict") == "allow" and dest and "svc-p1" in dest[0],
              "explain by uid to svc-p1's VIP: the destination step names the service and "
              "its next endpoint (%s)" % dest)
    # A DENY for n2-p2 from sa-n1-p1: explain and a real connection agree.
    c.set_policies(DENY_LEGACY + deny_policy("deny-n1p1", "app-p2",
                                             "spiffe://cluster.local/ns/default/sa/sa-n1-p1"))
    rc, out, _ = ctl(c, "explain", c.ip("n1-p1"), "%s:8080" % c.ip("n2-p2"))
    res.check(rc == 1 and "DENIED" in out and "deny-n1p1" in out,
              "explain n1-p1 -> n2-p2:8080 after the DENY policy: exit 1, names the policy "
              "(%r)" % out.strip().splitlines()[-1:])
    c.py("n2-p2", ECHO_SERVER, ["8080"])
    c.wait_port("n2-p2", "127.0.0.1", 8080)
    err = echo_probe(c.netns("n1-p1"), c.ip("n2-p2"), 8080)
    res.check(err is not None, "and a real connection n1-p1 -> n2-p2 is refused (%s)" % err)
    rc, out, _ = ctl(c, "explain", c.ip("n2-p1"), "%s:8080" % c2)
    res.check(rc == 1 and "not a pod enrolled on node node1" in out,
              "explain from node 2's pod on node 1: exit 1, says this node does not see it")
    rc, out, _ = ctl(c, "explain", c.ip("n1-p1"), "10.9.9.9:80")
    res.check(rc == 0 and "not in the registry" in out and "outside the mesh" in out,
              "explain to an address outside the registry: passthrough, outside the mesh")
    rc, out, _ = ctl(c, "explain", c.ip("n1-p1"), "%s:15006" % c2)
    res.check(rc == 1 and "would loop into weftd" in out,
              "explain to weftd's own port: refused, it would loop (%r)" %
              out.strip().splitlines()[-1:])
    rc, _, err = ctl(c, "explain", c.ip("n1-p1"))
    res.check(rc == 2 and "usage" in err, "explain with one argument: exit 2")
    why_checks(c)


def why_checks(c):
    """why: the failure ring, by trace id on both nodes; explain's history."""
    rc, out, _ = ctl(c, "-o", "json", "why")
    fails = json.loads(out) if rc == 0 else []
    deny = [f for f in fails if f["response_flags"] == "DENY" and
            f["dst"].startswith(c.ip("n2-p2") + ":")]
    res.check(deny and "denied by policy" in deny[0]["error"],
              "why on node 1: the denied connection, DENY, 'denied by policy' (%s)" %
              (deny[0]["error"][:100] if deny else [f["response_flags"] for f in fails]))
    if deny:
        trace = deny[0]["trace_id"]
        rc1, out1, _ = ctl(c, "why", trace)
        rc2, out2, _ = ctl(c, "why", trace, node="n2")
        res.check(rc1 == 0 and rc2 == 0 and trace in out1 and trace in out2 and
                  "DENY" in out2 and "inbound" in out2 and "deny-n1p1" in out2,
                  "why %s: node 1's outbound line, and on node 2 the inbound line of the same "
                  "connection naming the policy" % trace[:8])
    rc, out, _ = ctl(c, "why", "0" * 31 + "1")
    res.check(rc == 1 and "no failed connection" in out, "why with an unknown trace id: exit 1")
    rc, _, err = ctl(c, "why", "not-a-trace")
    res.check(rc == 2 and "32 lower-case hex" in err, "why with a malformed trace id: exit 2")
    # Nothing listens on n2-p1:9: explain's answer depends on the destination,
    # and says what the last real connection there met.
    err = echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 9)
    rc, out, _ = ctl(c, "explain", c.ip("n1-p1"), "%s:9" % c.ip("n2-p1"))
    res.check(rc == 0 and "history" in out and "[CONNECT]" in out and "only node2 knows" in out,
              "explain n1-p1 -> n2-p1:9 after a real attempt (%s): allowed, only node2 knows "
              "whether anything listens, and the last attempt there failed [CONNECT]" % err)


res.run(main)
