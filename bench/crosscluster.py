#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The cross-cluster data plane (issue 10 item 8, DESIGN §8.1), in `make bench`.

One multi-cluster (tests/cluster/cluster.sh up --clusters west,east: two
clusters with the same pod CIDR, each with its agent, CA and gateway, joined
by a WAN), west's agent importing east's registry. From west's pod n1-p1,
side by side in one run:

  same      same-cluster weft: to west's n2-p1 by pod IP (one HBONE hop)
  pooled    cross-cluster weft, pooled: to east's svc-p1 by its local VIP
            (outer tunnel to east's gateway, inner mTLS per (identity, node))
  unpooled  the same in Istio's form (form: istio): a new inner mTLS session
            for every connection

Workloads (build/bench/loadgen, HTTP/1.1): latency at 1,000 RPS over 16
connections (open loop), connection churn (a new connection per request, 8
concurrent) with the handshakes it cost (weft_tunnels_opened_total of west's
node 1), bulk (1 MiB responses over one connection). East's gateway: CPU per
GB moved (pooled bulk), RSS idle and with 1,000 app connections open (in the
pooled form they are 2 gateway streams, in Istio's form 1,000).

  bench/crosscluster.py [--quick] [--reps N] [--out DIR]

Writes DIR/crosscluster.json and DIR/crosscluster.md (DIR default
bench/results/<timestamp>-xc) and prints the table.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration", "lib"))
import run as bench  # noqa: E402
from clusterlib import Cluster  # noqa: E402
from multilib import federate, restart_agent  # noqa: E402

NAME = "bxc"
PORT = 8080             # svc-p1's target port; the VIP's port is 80
PROFILES = {
    "quick": {"reps": 1, "rr_s": 2, "churn_s": 1.5, "bulk_s": 1.5, "conns_s": 1},
    "full": {"reps": 3, "rr_s": 10, "churn_s": 3, "bulk_s": 3, "conns_s": 2},
}
REMOTE = ("remote_networks:\n  - {network: east, trust_domain: east.local, "
          "agent_address: \"192.168.50.2:15012\", vip_cidr: 10.97.0.0/16%s}\n")


def log(*a):
    print("crosscluster:", *a, file=sys.stderr, flush=True)


def pid_of(cl, host):
    with open(os.path.join(cl.dir, host, "weftd.pid")) as f:
        return int(f.read().split()[0])


def handshakes(w):
    """weft_tunnels_opened_total{result="ok"} of west's node 1."""
    p = w.run("n1", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15020/metrics"])
    for ln in p.stdout.decode().splitlines():
        if ln.startswith('weft_tunnels_opened_total{result="ok"}'):
            return int(float(ln.split()[-1]))
    raise RuntimeError("no weft_tunnels_opened_total on west node 1")


def loadgen(w, mode, target, *opts, dur=1.0, warm=0.5, mesh=()):
    cmd = [bench.LOADGEN, mode, "--http", "-d", str(dur), "-w", str(warm), "--drain", "0.5"] + \
        [str(o) for o in opts] + [target]
    before = bench.cpu_sample(mesh)
    with bench.RssSampler(list(mesh)) as rs:
        p = w.run("n1-p1", cmd, timeout=dur + warm + 60, check=False)
    if p.returncode != 0:
        raise RuntimeError("loadgen %s %s: %s" % (mode, target, p.stderr.decode()[-600:]))
    r = json.loads(p.stdout)
    r.pop("histogram_us", None)
    r["mesh_cpu_s"] = sum(bench.cpu_delta(list(mesh), before).values()) if mesh else 0.0
    r["mesh_rss_peak_kb"] = rs.peak
    return r


def set_form(w, form):
    """West's agent reaches east in form ("pooled" or "istio"); weftd has it."""
    y = os.path.join(w.dir, "agent", "agent.yaml")
    text = open(y).read()
    head = text.split("remote_networks:")[0]
    with open(y, "w") as f:
        f.write(head + REMOTE % ("" if form == "pooled" else ", form: istio"))
    restart_agent(w)
    deadline = time.time() + 20
    while time.time() < deadline:
        st = w.admin(1, "/stats").get("remote_networks") or [{}]
        if st[0].get("unpooled") == (form == "istio"):
            return
        time.sleep(0.2)
    raise RuntimeError("west's weftd did not get form %s" % form)


def block(w, gw, plane, target, prof):
    """One plane's workloads: rr at 1,000 RPS, churn, bulk."""
    out = {"plane": plane}
    for _ in range(50):     # the first connection opens the tunnels
        try:
            loadgen(w, "churn", target, "-c", 1, "-R", 20, dur=0.3, warm=0)
            break
        except RuntimeError:
            time.sleep(0.2)
    out["rr"] = loadgen(w, "rr", target, "-c", 16, "-R", 1000, dur=prof["rr_s"])
    h0 = handshakes(w)
    out["churn"] = loadgen(w, "churn", target, "-c", 8, dur=prof["churn_s"], warm=0)
    out["churn"]["handshakes"] = handshakes(w) - h0
    out["bulk"] = loadgen(w, "max", target, "-c", 1, "-s", 1 << 20, dur=prof["bulk_s"],
                          mesh=gw)
    return out


def gateway_memory(w, gw, target, prof):
    time.sleep(bench.IDLE_S)
    idle = sum(bench.rss_per_node(gw).values())
    c = loadgen(w, "rr", target, "-c", 1000, "-R", 1000, dur=prof["conns_s"], mesh=gw)
    return {"idle_kb": idle, "conns_1000_peak_kb": c["mesh_rss_peak_kb"],
            "conns_1000_errors": c["errors"]}


def med(runs, plane, f):
    v = [f(r) for r in runs if r["plane"] == plane]
    return statistics.median(v) if v else None


def table(res):
    runs = res["runs"]
    rows = []
    for plane, name in (("same", "same-cluster weft"), ("pooled", "cross-cluster, pooled"),
                        ("unpooled", "cross-cluster, unpooled (Istio's form)")):
        if not any(r["plane"] == plane for r in runs):
            continue
        rows.append("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.2f |" % (
            name,
            med(runs, plane, lambda r: r["rr"]["latency_us"]["p50"]),
            med(runs, plane, lambda r: r["rr"]["latency_us"]["p90"]),
            med(runs, plane, lambda r: r["rr"]["latency_us"]["p99"]),
            med(runs, plane, lambda r: r["churn"]["conns_per_s"]),
            med(runs, plane, lambda r: 1000.0 * r["churn"]["handshakes"] /
                max(1, r["churn"]["connections_opened"])),
            med(runs, plane, lambda r: r["bulk"]["rate_achieved"] * r["bulk"]["resp_bytes"] *
                8 / 1e9)))
    g = res.get("gateway", {})
    lines = [
        "## Cross-cluster data plane (bench/crosscluster.py, %s profile, %d repetitions, "
        "medians)" % (res["profile"], res["params"]["reps"]),
        "",
        "From west's n1-p1: same-cluster to west's n2-p1 by pod IP; cross-cluster to east's "
        "svc-p1 by its local VIP, through east's gateway. HTTP/1.1, 1 KB request and response;",
        "bulk is 1 MiB responses over one connection.",
        "",
        "| data plane | p50 µs @1k RPS | p90 µs | p99 µs | churn conn/s | handshakes per "
        "1,000 new conns | bulk Gbit/s |",
        "|---|---|---|---|---|---|---|",
    ] + rows + [
        "",
        "East's gateway: %.1f CPU s per GB moved (pooled bulk); RSS %.1f MB idle, %.1f MB "
        "with 1,000 app connections open pooled (%s gateway streams), %.1f MB with 1,000 "
        "unpooled (1,000 gateway streams)." % (
            g.get("cpu_s_per_gb") or 0, (g.get("pooled", {}).get("idle_kb") or 0) / 1024,
            (g.get("pooled", {}).get("conns_1000_peak_kb") or 0) / 1024,
            g.get("pooled_streams", "?"),
            (g.get("unpooled", {}).get("conns_1000_peak_kb") or 0) / 1024),
        "",
    ]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--out")
    a = ap.parse_args()
    profile = "quick" if a.quick else "full"
    prof = dict(PROFILES[profile])
    if a.reps:
        prof["reps"] = a.reps
    outdir = os.path.abspath(a.out or os.path.join(HERE, "results",
                                                   time.strftime("%Y%m%d-%H%M%S") + "-xc"))
    os.makedirs(outdir, exist_ok=True)
    res = {"profile": profile, "params": prof, "runs": [], "gateway": {}}
    subprocess.run([bench.CLUSTER, "down", "--name", NAME], capture_output=True)
    try:
        log("two clusters (west, east) with their gateways ...")
        bench.cluster_sh("up", "--name", NAME, "--clusters", "west,east", "--nodes", 2,
                         "--pods", 1, "--weftd",
                         # Istio's form: a session (and a tunnel) per connection
                         "--weftd-conf", "max_connections_per_peer: 2048",
                         "--weftd-conf", "max_tunnels: 4096", timeout=600)
        w, e = Cluster(NAME + "-west"), Cluster(NAME + "-east")
        w.nodes = e.nodes = 2
        if not federate(e, w) or not federate(w, e, REMOTE % ""):
            raise RuntimeError("federation did not reach the nodes")
        for cl, pod in ((e, "n1-p1"), (e, "n2-p1"), (w, "n2-p1")):
            cl.spawn(pod, [bench.LOADGEN, "server", "-p", str(PORT)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cl.wait_port(pod, "127.0.0.1", PORT)
        vip = None
        for _ in range(100):
            svc = [s for s in w.admin(1, "/services") if s.get("network") == "east"]
            if svc:
                vip = svc[0]["vips"][0]
                break
            time.sleep(0.1)
        if not vip:
            raise RuntimeError("west never got east's services")
        gw = [(pid_of(e, "gw"), 0)]
        same = "%s:%d" % (w.ip("n2-p1"), PORT)
        cross = "%s:80" % vip
        for form in ("pooled", "istio"):
            set_form(w, form)
            for rep in range(prof["reps"]):
                order = [("same", same), ("pooled" if form == "pooled" else "unpooled", cross)]
                for plane, target in order[rep % 2:] + order[:rep % 2]:
                    log("%s rep %d: %s" % (form, rep + 1, plane))
                    r = block(w, gw, plane, target, prof)
                    r["rep"] = rep
                    res["runs"].append(r)
            log("%s: gateway memory" % form)
            res["gateway"]["pooled" if form == "pooled" else "unpooled"] = \
                gateway_memory(w, gw, cross, prof)
            if form == "pooled":
                res["gateway"]["pooled_streams"] = sum(
                    1 for t in w.admin(1, "/tunnels") if t.get("via") == "east/gw")
        bulk = [r["bulk"] for r in res["runs"] if r["plane"] == "pooled"]
        gb = sum(b["count"] * b["resp_bytes"] for b in bulk) / 1e9
        res["gateway"]["cpu_s_per_gb"] = sum(b["mesh_cpu_s"] for b in bulk) / gb if gb else None
    finally:
        subprocess.run([bench.CLUSTER, "down", "--name", NAME], capture_output=True,
                       timeout=300)
    with open(os.path.join(outdir, "crosscluster.json"), "w") as f:
        json.dump(res, f, indent=1)
    md = table(res)
    with open(os.path.join(outdir, "crosscluster.md"), "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
