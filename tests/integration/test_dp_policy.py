# SPDX-License-Identifier: Apache-2.0
"""L4 authorization at the destination (DESIGN §6): DENY and ALLOW policies
from the registry are enforced on inbound HBONE (401 -> the client's
connection is reset), on same-node delivery and on plaintext inbound; every
deny is logged with the policy and rule; a policy change closes live
connections that are no longer allowed."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import ECHO_SERVER, Cluster, Results, require_root  # noqa: E402

require_root()
res = Results("data path: policy")

# Talk, read the echo back, half-close, read the rest: prints OK or the error.
CLIENT = r"""
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
    c.sendall(b"ping"); got = c.recv(100)
    c.shutdown(socket.SHUT_WR)
    while c.recv(100):
        pass
    print("OK" if got == b"ping" else "BAD %r" % got)
except Exception as e:
    print("ERR %s" % type(e).__name__)
"""

# Holds a connection open, echoing a byte every 0.2 s; prints how it ended.
HOLD = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
t0 = time.time()
try:
    while time.time() - t0 < 20:
        c.sendall(b"x")
        if c.recv(10) != b"x":
            print("ENDED eof %.1f" % (time.time() - t0)); sys.exit()
        time.sleep(0.2)
    print("ALIVE")
except OSError as e:
    print("ENDED %s %.1f" % (type(e).__name__, time.time() - t0))
"""


def talk(c, src, dst_ip, port=9090):
    p = c.run(src, ["/usr/bin/python3", "-c", CLIENT, dst_ip, str(port)], check=False,
              timeout=20)
    return p.stdout.decode().strip()


with Cluster("dpp", nodes=2, pods=2) as c:
    ip = {p: c.ip(p) for p in ("n1-p1", "n1-p2", "n2-p1", "n2-p2")}
    for pod in ip:
        c.py(pod, ECHO_SERVER, ["9090", pod])
    for pod in ip:
        c.wait_port(pod, "127.0.0.1", 9090)
    sa = lambda p: "spiffe://cluster.local/ns/default/sa/sa-%s" % p  # noqa: E731

    res.check(talk(c, "n1-p1", ip["n2-p1"]) == "OK", "no policy: n1-p1 -> n2-p1 allowed")

    # 1. DENY from one principal, to workloads labelled app=app-p1.
    ok = c.set_policies("""policies:
  - name: deny-n1p1
    namespace: default
    scope: workload
    selector: {app: app-p1}
    action: DENY
    rules:
      - principals: ["%s"]
""" % sa("n1-p1"))
    res.check(ok, "policy update reached both nodes")
    r = talk(c, "n1-p1", ip["n2-p1"])
    res.check(r.startswith("ERR"), "DENY: n1-p1 -> n2-p1 refused (client saw %s)" % r)
    log2 = c.weftd_log(2)
    line = [l for l in log2.splitlines() if "denied [DENY]" in l]
    res.check(bool(line) and "default/deny-n1p1" in line[-1] and "rule 0" in line[-1],
              "node2 logs the deny with policy and rule: %s" % (line[-1][-160:] if line else "-"))
    log1 = c.weftd_log(1)
    res.check(any("[DENY]" in l and ip["n2-p1"] in l for l in log1.splitlines()),
              "node1 (source) logs the refusal with response flag DENY")
    res.check(talk(c, "n1-p2", ip["n2-p1"]) == "OK", "other principal n1-p2 -> n2-p1 allowed")
    res.check(talk(c, "n1-p1", ip["n2-p2"]) == "OK", "n1-p1 -> n2-p2 (app-p2) not covered: allowed")

    # 2. A live connection that a policy change no longer allows is closed.
    hold = c.py("n1-p2", HOLD, [ip["n2-p1"], "9090"], stdout=__import__("subprocess").PIPE)
    time.sleep(1.0)
    t0 = time.time()
    c.set_policies("""policies:
  - name: deny-n1
    namespace: default
    scope: namespace
    action: DENY
    rules:
      - principals: ["%s", "%s"]
        destination_ports: [9090]
""" % (sa("n1-p1"), sa("n1-p2")))
    out = hold.communicate(timeout=30)[0].decode().strip()
    res.check(out.startswith("ENDED"), "live n1-p2 -> n2-p1 connection closed by the policy "
              "change (%s, %.1fs after the edit)" % (out, time.time() - t0))
    res.check("policy changed" in c.weftd_log(2), "node2 logs why the live connection was closed")

    # 3. ALLOW: only n1-p1 may reach app-p2 workloads; same-node is enforced too.
    c.set_policies("""policies:
  - name: allow-n1p1
    namespace: default
    scope: workload
    selector: {app: app-p2}
    action: ALLOW
    rules:
      - principals: ["%s"]
""" % sa("n1-p1"))
    res.check(talk(c, "n1-p1", ip["n2-p2"]) == "OK", "ALLOW: n1-p1 -> n2-p2 allowed")
    r = talk(c, "n2-p1", ip["n2-p2"])
    res.check(r.startswith("ERR"), "ALLOW: same-node n2-p1 -> n2-p2 refused (%s)" % r)
    res.check(any("same-node" in l or ("refused [DENY]" in l and ip["n2-p2"] in l)
                  for l in c.weftd_log(2).splitlines()),
              "node2 logs the same-node deny")
    res.check(talk(c, "n1-p1", ip["n2-p1"]) == "OK", "app-p1 workloads have no ALLOW policy: allowed")

    # 4. Plaintext from outside the mesh (node2's own netns, not a pod) cannot
    # satisfy a principal rule.
    p = c.run("n2", ["/usr/bin/python3", "-c", CLIENT, ip["n2-p2"], "9090"], check=False,
              timeout=20)
    r = p.stdout.decode().strip()
    res.check(r.startswith("ERR"), "plaintext client without identity -> n2-p2 refused (%s)" % r)
    res.check("inbound plaintext" in c.weftd_log(2) and "denied [DENY]" in c.weftd_log(2),
              "node2 logs the plaintext deny")
    p = c.run("n2", ["/usr/bin/python3", "-c", CLIENT, ip["n2-p1"], "9090"], check=False,
              timeout=20)
    res.check(p.stdout.decode().strip() == "OK",
              "plaintext client -> n2-p1 (no ALLOW policy) allowed through 15006")

    c.set_policies("policies: []\n")
    res.check(talk(c, "n2-p1", ip["n2-p2"]) == "OK", "policies removed: same-node allowed again")

res.done()
