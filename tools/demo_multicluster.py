# SPDX-License-Identifier: Apache-2.0
"""`make demo-multicluster`: two clusters, west and east, each its own
network (the same pod CIDR), agent, CA and trust domain, joined only by a
WAN on which each cluster's gateway sits. West's agent federates east.local
and imports east's registry; an unmodified app in west (curl) calls east's
service by the local VIP it got. Then a summary: the two trust domains, the
outer and inner tunnels, a cross-cluster deny in words, and what east's
gateway carried (TLS only). `make demo-multicluster-down` removes it all.

Run with Debian's /usr/bin/python3 as root.
"""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "lib"))
from clusterlib import CLUSTER, Cluster, deny_policy  # noqa: E402
from multilib import federate, gw_admin  # noqa: E402
from pcaplib import Capture, tls_flows  # noqa: E402

NAME = "mcdemo"
WEFTCTL = os.path.join(os.environ.get("WEFT_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "build"), "weftctl")
MARK = "weft-demo-cross-cluster-marker"
WEST_ID = "spiffe://west.local/ns/default/sa/sa-n1-p1"


def curl(c, pod, url):
    p = c.run(pod, ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                    "-H", "X-Demo: " + MARK, url], check=False)
    return p.stdout.decode().strip() if p.returncode == 0 else "failed (%s)" % (
        p.stderr.decode().strip().split(": ", 1)[-1][:50])


def only_tls(cap):
    """(TCP flows on 15008, flows that are not TLS records only, marker hits)."""
    n, bad = tls_flows(cap.path, 15008)
    return n, len(bad), open(cap.path, "rb").read().count(MARK.encode())


def up():
    print("weft multi-cluster demo: two clusters (west, east), each 2 nodes x 1 pod, an "
          "agent and a gateway, on one WAN ...", flush=True)
    subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True)
    p = subprocess.run([CLUSTER, "up", "--name", NAME, "--clusters", "west,east", "--nodes",
                        "2", "--pods", "1", "--weftd"], capture_output=True, text=True,
                       timeout=300)
    if p.returncode:
        sys.exit("cluster.sh up failed:\n" + (p.stdout + p.stderr)[-2000:])
    w, e = Cluster(NAME + "-west"), Cluster(NAME + "-east")
    w.nodes = e.nodes = 2
    print("federating: east trusts west.local; west trusts east.local and imports east's "
          "registry ...", flush=True)
    federate(e, w)
    federate(w, e, "remote_networks:\n  - {network: east, trust_domain: east.local, "
             "agent_address: \"192.168.50.2:15012\", vip_cidr: 10.97.0.0/16}\n")
    for pod in ("n1-p1", "n2-p1"):
        log = open(os.path.join(e.dir, "http-%s.log" % pod), "w")
        a = subprocess.Popen(["ip", "netns", "exec", e.netns(pod), "/usr/bin/python3", "-m",
                              "http.server", "8080", "--bind", "0.0.0.0"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(e.dir, "apps.pid"), "a") as f:
            f.write("%d\n" % a.pid)
    for pod in ("n1-p1", "n2-p1"):
        e.wait_port(pod, "127.0.0.1", 8080)
    svc = []
    for _ in range(100):
        svc = [s for s in w.admin(1, "/services") if s.get("network") == "east"]
        if svc:
            break
        time.sleep(0.1)
    if not svc:
        sys.exit("west never got east's services")
    vip = svc[0]["vips"][0]

    tmp = tempfile.mkdtemp(prefix="weft-mcdemo-")
    caps = [Capture(e, os.path.join(tmp, i + ".pcap"), "gw", i) for i in ("wan0", "eth0")]
    for cap in caps:
        cap.start()
    results = [("west n1-p1 -> %s:80 x6" % vip, "east's svc-p1 (local VIP)",
                " ".join(curl(w, "n1-p1", "http://%s/" % vip) for _ in range(6)))]
    # A cross-cluster deny: east's policy, with west's principal.
    e.set_policies("policies:\n" + deny_policy("deny-west-n1p1", "app-p1", WEST_ID))
    results.append(("west n1-p1 -> %s:80" % vip, "denied by east's policy",
                    curl(w, "n1-p1", "http://%s/" % vip)))
    e.set_policies("policies: []\n")
    time.sleep(0.3)
    for cap in caps:
        cap.stop()

    print()
    print("trust domains (federated, never merged: each peer checked against its own "
          "domain's roots)")
    for c in (w, e):
        st = c.admin(1, "/stats")
        print("  %-5s trust domain %-11s federates %-14s remote networks: %s" % (
            c.name.rsplit("-", 1)[1], st["trust_domain"], ",".join(
                st.get("federated_trust_domains") or []) or "-",
            ", ".join("%s (%s, %d service%s)" % (r["network"], r["trust_domain"],
                                                  r["services"], "" if r["services"] == 1
                                                  else "s")
                      for r in st.get("remote_networks") or []) or "-"))
    print("  east's svc-p1 in west: %s (local VIP from west's vip_cidr), endpoints %s" % (
        vip, ", ".join(svc[0]["endpoints"])))
    print()
    print("traffic (curl in west, python http.server in east; the apps know nothing of weft)")
    for what, why, r in results:
        print("  %-34s %-26s %s" % (what, why, r))
    hits = {p: open(os.path.join(e.dir, "http-%s.log" % p)).read().count("GET /")
            for p in ("n1-p1", "n2-p1")}
    print("  served by east's pods: %s" % ", ".join("%s x%d" % kv for kv in hits.items()))
    print()
    print("why the last one failed, in each side's words")
    for c, host, needle in ((w, "n1", "refused [DENY]"), (e, "n1", "denied [DENY]"),
                            (e, "n2", "denied [DENY]")):
        lines = [ln for ln in open(os.path.join(c.dir, host, "weftd.log"), errors="replace")
                 if needle in ln]
        if lines:
            print("  %s %s: %s" % (c.name.rsplit("-", 1)[1], host,
                                   lines[-1].split(needle + ": ", 1)[-1].strip()[:170]))
    print()
    print("tunnels of west node1 (double HBONE: outer to east's gateway, inner mTLS end to "
          "end with east's nodes, inside it)")
    for t in w.admin(1, "/tunnels"):
        kind = "inner, via " + t["via"] if t.get("via") else "outer" if "/" in t["node"] \
            else "local"
        print("  %-10s %-24s streams %d now / %d total  %s  (%s)" % (
            t["node"], t["peer"], t["streams"], t["streams_total"], t["cipher"], kind))
    gws = gw_admin(e, "/stats")
    print("  east's gateway: %s HBONE connections in now, holds no workload key (%s pods)" % (
        gws.get("hbone_connections"), gws.get("pods")))
    print()
    print("what east's gateway carried (tcpdump on both its links, during the traffic)")
    for cap in caps:
        n, bad, marks = only_tls(cap)
        print("  %-4s (%s): %d connections on 15008, %s; marker %r found %d times" % (
            cap.iface, "WAN" if cap.iface == "wan0" else "east's underlay", n,
            "all TLS records" if not bad else "%d NOT TLS" % bad, MARK, marks))
    print()
    print("logs: %s-{west,east}/{n1,n2,gw}/weftd.log, .../agent/agent.log; weftctl: "
          "ip netns exec %s-west-n1 %s tunnels" % (w.dir.rsplit("-", 1)[0], NAME,
                                                   os.path.normpath(WEFTCTL)))
    print("'make demo-multicluster-down' removes both clusters and the WAN.")


def down():
    e = Cluster(NAME + "-east")
    try:
        for line in open(os.path.join(e.dir, "apps.pid")):
            try:
                os.killpg(int(line), 15)
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True)
    print("multi-cluster demo removed")


if __name__ == "__main__":
    down() if sys.argv[1:] == ["down"] else up()
