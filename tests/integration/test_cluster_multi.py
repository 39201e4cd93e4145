# SPDX-License-Identifier: Apache-2.0
"""The simulated multi-cluster (issue 10 item 1, DESIGN §8.1):
`cluster.sh up --clusters west,east --weftd` makes a WAN and two clusters,
each with its own agent, CA, trust domain and registry, on the same
addresses (underlay 172.30.0.0/24, pod CIDRs 10.244.K.0/24), each with a
gateway node on the WAN.

  - both clusters have the same pod IPs, and inside each the pods reach
    each other through that cluster's weftds (mTLS within the cluster);
  - the trust domains are west.local and east.local: each agent has its own
    root (different keys), each weftd its own trust domain, each registry
    names its nodes' network;
  - a node of west reaches east's gateway at its WAN address (through
    west's gateway node, masqueraded), and east's agent on the same address
    (the one port published inward); nothing else of east is reachable from
    the WAN: a listener on an east node is not, even with a route to it;
  - federation (item 2): with east's root in west's agent's federation_dir
    (east.local.pem) and a SIGHUP, west's weftds get east.local's bundle in
    the registry stream and accept a client holding an SVID east's agent
    issued (a CONNECT into a west pod answers 200 and echoes) at once, where
    before they refused it; a west.local SVID forged by east's CA is
    refused; removing the file takes east.local away again: a live
    east.local tunnel is closed with the reason, a new one refused;
  - nothing of the multi-cluster is in the root netns, and `down` removes
    every namespace and the state of all of it."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CLUSTER, ECHO_SERVER, RUN, Cluster, HboneClient,  # noqa: E402
                        HboneError, Results, agent_svid, echo_probe, load_ca, make_svid,
                        netns_socket, require_root, wait_log)
import signal  # noqa: E402
import ssl  # noqa: E402

NAME = "mcl"
res = Results("multi-cluster topology")

LISTEN = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
while True:
    c, a = s.accept(); c.sendall(("%s saw %s\n" % (sys.argv[1], a[0])).encode()); c.close()
"""


class Multi:
    """The multi-cluster and a Cluster view of each of its clusters."""

    def __init__(self, names, **kw):
        self.names = names
        self.kw = kw
        self.procs = []
        self.clusters = {n: Cluster("%s-%s" % (NAME, n)) for n in names}

    def __enter__(self):
        subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True)
        p = subprocess.run([CLUSTER, "up", "--name", NAME, "--clusters", ",".join(self.names),
                            "--nodes", "2", "--pods", "1", "--weftd"],
                           capture_output=True, text=True, timeout=300)
        if p.returncode != 0:
            raise RuntimeError("cluster.sh up --clusters failed:\n%s%s" % (
                p.stdout[-3000:], p.stderr[-3000:]))
        for n in self.names:
            self.clusters[n].nodes = 2
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
        subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True, timeout=180)

    def spawn(self, netns, code, args):
        p = subprocess.Popen(["ip", "netns", "exec", netns, "/usr/bin/python3", "-c", code] +
                             list(args))
        self.procs.append(p)
        return p


def reach(netns, ip, port, timeout=2.0):
    """What a TCP client in netns reads from ip:port, or the error."""
    s = netns_socket(netns)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        return s.recv(200).decode().strip()
    except OSError as e:
        return "error: %s" % (e.strerror or e)
    finally:
        s.close()


def connects(netns, ip, port):
    s = netns_socket(netns)
    s.settimeout(2.0)
    try:
        s.connect((ip, port))
        return "connected"
    except OSError as e:
        return "error: %s" % (e.strerror or e)
    finally:
        s.close()


def netns_of(prefix):
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return sorted(ln.split()[0] for ln in out.splitlines()
                  if ln.split() and ln.split()[0].startswith(prefix + "-"))


def hbone_try(cl, key, chain):
    """A CONNECT into west's pod n2-p1 from node 1's netns, with key/chain:
    "200 echoed" or what went wrong."""
    h = HboneClient(cl.netns("n1"), ("172.30.0.2", 15008), key_pem=key, chain_pem=chain,
                    timeout=5)
    try:
        h.connect()
        status, data = h.roundtrip("%s:8080" % cl.ip("n2-p1"), b"federated", timeout=5)
        if status == 200 and data == b"federated":
            return "200 echoed"
        return "status %s, %r, %s" % (status, data[:20], h.closed)
    except (ssl.SSLError, OSError, HboneError) as ex:
        return "refused: %s" % ex
    finally:
        h.close()


def wait_federated(cl, want, timeout=10):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = [cl.admin(k, "/stats").get("federated_trust_domains") for k in (1, 2)]
        if all(g == want for g in got):
            return True, got
        time.sleep(0.2)
    return False, got


def federation(m, w, e):
    east_id = "spiffe://east.local/ns/default/sa/sa-n1-p1"
    key, chain = agent_svid(e, 1, east_id)
    fkey, fchain = make_svid("spiffe://west.local/ns/default/sa/sa-n1-p1", ca=load_ca(e))
    got = hbone_try(w, key, chain)
    res.check(got.startswith("refused") or "status None" in got,
              "before federation, west node 2 refuses a client of east.local (%s)" % got)
    fed = os.path.join(RUN, w.name, "agent", "federation")
    os.makedirs(fed, exist_ok=True)
    with open(os.path.join(RUN, w.name, "agent", "agent.yaml"), "a") as f:
        f.write("federation_dir: %s\n" % fed)
    root = open(os.path.join(RUN, e.name, "agent", "ca", "root-cert.pem")).read()
    with open(os.path.join(fed, "east.local.pem"), "w") as f:
        f.write(root)
    # The agent reads federation_dir at start and on SIGHUP; it was started
    # without the key, so restart it with the new config.
    subprocess.run([CLUSTER, "stop", "--name", w.name, "agent"], check=True,
                   capture_output=True)
    subprocess.run([CLUSTER, "start", "--name", w.name, "agent"], check=True,
                   capture_output=True)
    ok, got = wait_federated(w, ["east.local"])
    res.check(ok, "west's weftds learn east.local's bundle from the registry stream (%s)" %
              (got,))
    log = open(os.path.join(RUN, w.name, "n2", "weftd.log")).read()
    res.check("federated trust domains: east.local" in log,
              "west node 2 logs the federated trust domains it now accepts")
    # The contexts are made again from the current certificates when the
    # bundles arrive: the first try after /stats shows them succeeds.
    got = hbone_try(w, key, chain)
    res.check(got == "200 echoed", "federated: west node 2 accepts the east.local client at "
              "once and carries its CONNECT into a west pod (%s)" % got)
    got = hbone_try(w, fkey, fchain)
    res.check(got.startswith("refused") or "status None" in got,
              "a west.local SVID signed by east's CA is refused: east may not vouch for west "
              "(%s)" % got)
    line = None
    deadline = time.time() + 3
    while line is None and time.time() < deadline:
        line = next((ln for ln in open(os.path.join(RUN, w.name, "n2", "weftd.log"))
                     if "does not chain to the bundle of trust domain west.local" in ln), None)
        time.sleep(0.1)
    res.check(line is not None and "IDENTITY_ERROR" in line,
              "west node 2 says why: %s" % (line.split("weftd: ", 1)[-1].strip()[:200]
                                             if line else "no line"))
    # A live tunnel of east.local, with a stream open, across the removal.
    live = HboneClient(w.netns("n1"), ("172.30.0.2", 15008), key_pem=key, chain_pem=chain,
                       timeout=5)
    sid = None
    try:
        live.connect()
        sid = live.open("%s:8080" % w.ip("n2-p1"))
        res.check(live.status(sid) == 200, "an east.local tunnel with an open stream into a "
                  "west pod, before the removal")
    except (ssl.SSLError, OSError, HboneError) as ex:
        res.check(False, "an east.local tunnel before the removal (%s)" % ex)
    start = os.path.getsize(os.path.join(RUN, w.name, "n2", "weftd.log"))
    # The registry file is broken at the same time: the removal still goes
    # out, on the last good registry.
    regf = os.path.join(RUN, w.name, "registry", "registry.yaml")
    good = open(regf).read()
    with open(regf, "a") as f:
        f.write("\nnodes: [unclosed\n")
    os.unlink(os.path.join(fed, "east.local.pem"))
    pid = int(open(os.path.join(RUN, w.name, "agent", "agent.pid")).read().split()[0])
    t0 = time.time()
    os.kill(pid, signal.SIGHUP)
    ok, got = wait_federated(w, [])
    res.check(ok, "SIGHUP after removing east.local.pem, with the registry file broken: the "
              "nodes drop east.local (%s)" % (got,))
    alog = open(os.path.join(RUN, w.name, "agent", "agent.log")).read()
    res.check("federated bundles published on the last good registry" in alog,
              "west's agent says it published the removal on the last good registry")
    with open(regf, "w") as f:
        f.write(good)
    if sid is not None:
        live.pump(lambda: live.streams[sid]["reset"] is not None, timeout=3)
        res.check(live.closed is not None or live.streams[sid]["reset"] is not None,
                  "the live east.local tunnel is closed %.1f s after the SIGHUP (%s)" %
                  (time.time() - t0, live.closed or "stream reset"))
    live.close()
    line = wait_log(w, 2, r"closed \[IDENTITY_ERROR\]: trust domain east.local is no longer "
                    r"federated", start=start)
    res.check(line is not None, "west node 2 says why: %s" %
              (line.split("weftd: ", 1)[-1].strip()[:160] if line else "no line"))
    got = hbone_try(w, key, chain)
    res.check(got != "200 echoed", "and refuses a new east.local client at once (%s)" % got)


def main():
    require_root()
    root_links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    with Multi(["west", "east"]) as m:
        w, e = m.clusters["west"], m.clusters["east"]
        ns = netns_of(NAME)
        want = {"%s-wan" % NAME} | {"%s-%s-%s" % (NAME, c, x) for c in ("west", "east")
                                     for x in ("ul", "ctl", "gw", "n1", "n2", "n1-p1", "n2-p1")}
        res.check(set(ns) == want, "the WAN and two clusters of 2 nodes x 1 pod, each with a "
                  "gateway node (%d namespaces)" % len(ns))
        ips = {c: (cl.ip("n1-p1"), cl.ip("n2-p1")) for c, cl in m.clusters.items()}
        res.check(ips["west"] == ips["east"], "the clusters' pods have the same IPs (%s)" %
                  (ips["west"],))

        # Each cluster on its own: mTLS between its two nodes.
        for c, cl in m.clusters.items():
            cl.py("n2-p1", ECHO_SERVER, ["8080"])
            cl.wait_port("n2-p1", "127.0.0.1", 8080)
            err = echo_probe(cl.netns("n1-p1"), cl.ip("n2-p1"), 8080)
            res.check(err is None, "%s: n1-p1 -> n2-p1 through its weftds (%s)" %
                      (c, err or "echoed"))
            st = cl.admin(1, "/stats")
            res.check(st["trust_domain"] == "%s.local" % c,
                      "%s: weftd's trust domain is %s.local (%s)" % (c, c, st["trust_domain"]))
            srcs = [t["source"] for t in cl.admin(1, "/tunnels")]
            res.check(srcs and all(x.startswith("spiffe://%s.local/" % c) for x in srcs),
                      "%s: node 1's tunnels carry identities of %s.local (%s)" % (c, c, srcs))
            reg = open(os.path.join(RUN, cl.name, "registry", "registry.yaml")).read()
            res.check("network: %s" % c in reg, "%s: its registry names its nodes' network" % c)
        roots = [open(os.path.join(RUN, cl.name, "agent", "ca", "root-cert.pem")).read()
                 for cl in (w, e)]
        res.check(roots[0] != roots[1] and all("BEGIN CERTIFICATE" in r for r in roots),
                  "each cluster's agent has its own root certificate")

        # The WAN: east's gateway address, from a node and a pod of west.
        m.spawn("%s-east-gw" % NAME, LISTEN, ["192.168.50.2", "17008"])
        m.spawn("%s-east-n1" % NAME, LISTEN, ["172.30.0.1", "7777"])
        time.sleep(0.5)
        got = reach(w.netns("n1"), "192.168.50.2", 17008)
        res.check(got == "192.168.50.2 saw 192.168.50.1",
                  "west node 1 reaches east's gateway on the WAN, masqueraded by west's "
                  "gateway node (%s)" % got)
        got = reach(w.netns("n1-p1"), "192.168.50.2", 17008)
        res.check(got == "192.168.50.2 saw 192.168.50.1",
                  "and so does a pod of west, whose reply comes back to it (%s)" % got)
        got = connects(w.netns("n1"), "192.168.50.2", 15012)
        res.check(got == "connected", "east's agent takes a TCP connection on the WAN address "
                  ":15012 (%s)" % got)
        # From the WAN itself, with a route into east's underlay: dropped.
        subprocess.run(["ip", "-n", "%s-wan" % NAME, "addr", "add", "192.168.50.254/24",
                        "dev", "br0"], check=True)
        subprocess.run(["ip", "-n", "%s-wan" % NAME, "route", "add", "172.30.0.0/24", "via",
                        "192.168.50.2"], check=True)
        got = reach("%s-wan" % NAME, "172.30.0.1", 7777)
        res.check(got.startswith("error") and "refused" not in got,
                  "the WAN cannot reach an east node through east's gateway node, even with a "
                  "route to it: dropped (%s)" % got)
        got = reach("%s-wan" % NAME, "192.168.50.2", 17008)
        res.check(got == "192.168.50.2 saw 192.168.50.254",
                  "while east's gateway address itself answers the WAN (%s)" % got)
        federation(m, w, e)
        now = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        res.check(now == root_links, "nothing of the multi-cluster is in the root netns")
    left = netns_of(NAME)
    res.check(not left, "down removed every namespace (%s)" % (left or "none left"))
    res.check(not os.path.exists(os.path.join(RUN, NAME)) and
              not any(os.path.exists(os.path.join(RUN, "%s-%s" % (NAME, c)))
                      for c in ("west", "east")),
              "down removed the state of the multi-cluster and of each cluster")


res.run(main)
