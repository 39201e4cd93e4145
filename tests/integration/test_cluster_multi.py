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
  - nothing of the multi-cluster is in the root netns, and `down` removes
    every namespace and the state of all of it."""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CLUSTER, ECHO_SERVER, RUN, Cluster, Results,  # noqa: E402
                        echo_probe, netns_socket, require_root)

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
        m.spawn("%s-east-gw" % NAME, LISTEN, ["192.168.50.2", "15008"])
        m.spawn("%s-east-n1" % NAME, LISTEN, ["172.30.0.1", "7777"])
        time.sleep(0.5)
        got = reach(w.netns("n1"), "192.168.50.2", 15008)
        res.check(got == "192.168.50.2 saw 192.168.50.1",
                  "west node 1 reaches east's gateway on the WAN, masqueraded by west's "
                  "gateway node (%s)" % got)
        got = reach(w.netns("n1-p1"), "192.168.50.2", 15008)
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
        got = reach("%s-wan" % NAME, "192.168.50.2", 15008)
        res.check(got == "192.168.50.2 saw 192.168.50.254",
                  "while east's gateway address itself answers the WAN (%s)" % got)
        now = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
        res.check(now == root_links, "nothing of the multi-cluster is in the root netns")
    left = netns_of(NAME)
    res.check(not left, "down removed every namespace (%s)" % (left or "none left"))
    res.check(not os.path.exists(os.path.join(RUN, NAME)) and
              not any(os.path.exists(os.path.join(RUN, "%s-%s" % (NAME, c)))
                      for c in ("west", "east")),
              "down removed the state of the multi-cluster and of each cluster")


res.run(main)
