# SPDX-License-Identifier: Apache-2.0
"""`make demo`: a 2-node x 2-pod cluster in network namespaces with weft-agent
and one weftd per node; unmodified apps (python http.server, curl) talk
across nodes by pod IP and by service VIP, one connection fails and says
why; then a summary a person reads in ten seconds: identities, traffic,
tunnels, and what the underlay carried. `make demo-down` removes it all.

Run with Debian's /usr/bin/python3 as root.
"""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "lib"))
from clusterlib import Cluster, deny_policy  # noqa: E402

NAME = "demo"
WEFTCTL = os.path.join(os.environ.get("WEFT_BUILD") or os.path.join(
    os.path.dirname(__file__), "..", "build"), "weftctl")
MARK = "weft-demo-plaintext-marker"
POLICY = "policies:\n" + deny_policy("deny-n1p1-to-app-p2", "app-p2",
                                     "spiffe://cluster.local/ns/default/sa/sa-n1-p1")


def short(spiffe):
    return spiffe.replace("spiffe://cluster.local", "")


def kb(n):
    return "%.1f KB" % (n / 1024) if n >= 1024 else "%d B" % n


def curl(c, pod, url):
    p = c.run(pod, ["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w",
                    "%{http_code} %{size_download}", "-H", "X-Demo: " + MARK, url],
              check=False)
    out = p.stdout.decode().strip()
    return out if p.returncode == 0 else "failed (%s)" % (
        p.stderr.decode().strip().split(": ", 1)[-1][:60])


def up():
    c = Cluster(NAME, nodes=2, pods=2)
    print("weft demo: starting weft-agent, 2 nodes x 2 pods (network namespaces), "
          "one weftd per node ...", flush=True)
    c.sh("down", "--name", NAME, check=False)
    c.sh("up", "--name", NAME, "--nodes", "2", "--pods", "2", "--weftd", timeout=180)
    # Apps that know nothing about weft: an HTTP server on :8080 in three pods.
    for pod in ("n1-p1", "n2-p1", "n2-p2"):
        log = open(os.path.join(c.dir, "http-%s.log" % pod), "w")
        p = subprocess.Popen(["ip", "netns", "exec", c.netns(pod), "/usr/bin/python3", "-m",
                              "http.server", "8080", "--bind", "0.0.0.0"],
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with open(os.path.join(c.dir, "apps.pid"), "a") as f:
            f.write("%d\n" % p.pid)
    for pod in ("n1-p1", "n2-p1", "n2-p2"):
        c.wait_port(pod, "127.0.0.1", 8080)
    # One L4 policy: pod n1-p1's identity may not reach workloads labelled
    # app=app-p2. The agent streams the edit to both nodes.
    reg = os.path.join(c.dir, "registry", "registry.yaml")
    ver = c.admin(2, "/stats")["registry_version"]
    with open(reg + ".new", "w") as f:
        f.write(open(reg).read().split("\npolicies:")[0].rstrip("\n") + "\n" + POLICY)
    os.rename(reg + ".new", reg)
    for _ in range(100):
        if c.admin(2, "/stats")["registry_version"] > ver:
            break
        time.sleep(0.1)
    # Watch the underlay (the bridge between nodes) while the apps talk.
    pcap = os.path.join(c.dir, "underlay.pcap")
    td = subprocess.Popen(["ip", "netns", "exec", c.netns("ul"), "tcpdump", "-i", "n1", "-U", "--immediate-mode",
                           "-Z", "root", "-s", "0", "-w", pcap, "tcp"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    td.stderr.readline()	# "listening on n1 ...": capturing from here on

    ip = {p: c.ip(p) for p in ("n1-p1", "n1-p2", "n2-p1", "n2-p2")}
    results = []
    r = curl(c, "n1-p2", "http://%s:8080/" % ip["n2-p1"])
    results.append(("n1-p2 -> %s:8080" % ip["n2-p1"], "pod IP on node2", r))
    vip = [curl(c, "n1-p2", "http://10.96.0.1/") for _ in range(4)]
    results.append(("n1-p2 -> 10.96.0.1:80 x4", "service svc-p1 (VIP)", " ".join(
        v.split()[0] for v in vip)))
    r = curl(c, "n2-p2", "http://%s:8080/" % ip["n1-p1"])
    results.append(("n2-p2 -> %s:8080" % ip["n1-p1"], "pod IP on node1", r))
    r = curl(c, "n1-p1", "http://%s:8080/" % ip["n2-p2"])
    results.append(("n1-p1 -> %s:8080" % ip["n2-p2"], "denied by policy", r))
    r = curl(c, "n1-p2", "http://%s:9/" % ip["n2-p2"])
    results.append(("n1-p2 -> %s:9" % ip["n2-p2"], "nothing listens there", r))
    time.sleep(0.5)
    td.terminate()
    td.communicate()

    hits = {}
    for pod in ("n1-p1", "n2-p1", "n2-p2"):
        try:
            hits[pod] = open(os.path.join(c.dir, "http-%s.log" % pod)).read().count("GET /")
        except OSError:
            hits[pod] = 0

    print()
    print("identities (X.509 SVIDs signed by weft-agent from CSRs; keys never left the node)")
    for k in (1, 2):
        certs = {x["identity"]: x for x in c.admin(k, "/certs")}
        node_id = "spiffe://cluster.local/weft/node/node%d" % k
        pods = [(p["uid"].split("/")[-1], p["ip"], p["identity"]) for p in c.admin(k, "/workloads")]
        for who, addr, ident in [("node%d" % k, "172.30.0.%d" % k, node_id)] + sorted(pods):
            x = certs.get(ident, {})
            print("  %-7s %-11s %-42s %s, %s, valid until %s" % (
                who, addr, ident, x.get("key", "?"), x.get("state", "?"),
                x.get("not_after", "?")))
        if k == 1 and certs:
            x = next(iter(certs.values()))
            print("          issuer: %s" % x.get("issuer", "?"))
    print()
    print("traffic (curl and python http.server; the apps know nothing about weft)")
    for what, why, res in results:
        print("  %-28s %-24s %s" % (what, why, res))
    print("  svc-p1 requests served by: %s" % ", ".join(
        "%s x%d" % (p, n) for p, n in sorted(hits.items()) if n))
    deny = [l for l in open(os.path.join(c.dir, "n2", "weftd.log")) if "denied [DENY]" in l]
    fail = [l for l in open(os.path.join(c.dir, "n1", "weftd.log")) if "refused [CONNECT]" in l]
    print("  why they failed, in weftd's words:")
    if deny:
        print("    node2 [DENY]: " + deny[-1].split("denied [DENY]: ", 1)[-1].strip()[:200])
    if fail:
        print("    node1 [CONNECT]: " + fail[-1].split("refused [CONNECT]: ", 1)[-1].strip()[:200])
    print()
    print("weftctl explain %s %s:8080   (asked on node1, before or after the fact)" % (
        ip["n1-p1"], ip["n2-p2"]))
    ctl = subprocess.run(["ip", "netns", "exec", c.netns("n1"), WEFTCTL, "-o", "json",
                          "explain", ip["n1-p1"], "%s:8080" % ip["n2-p2"]],
                         capture_output=True, text=True)
    try:
        ex = json.loads(ctl.stdout)
        for st in ex["steps"]:
            print("  %-12s %-6s %s" % (st["step"], st["result"], st["says"][:110]))
        print("  => %s" % ex["sentence"][:150])
    except (ValueError, KeyError):
        print("  (weftctl: %s)" % (ctl.stderr.strip() or "no answer")[:120])
    print()
    print("tunnels (one mTLS HTTP/2 connection per source identity and destination node)")
    for k in (1, 2):
        for t in c.admin(k, "/tunnels"):
            print("  node%d  %-22s -> %-6s %-18s %s  streams %d now / %d total, "
                  "sent %s, received %s" % (k, short(t["source"]), t["node"], t["peer"],
                                            t["cipher"], t["streams"], t["streams_total"],
                                            kb(t["bytes_sent"]), kb(t["bytes_received"])))
    print()
    print("metrics (a scrape of node2's :15020/metrics; Istio's names and labels)")
    scrape = c.run("n2", ["curl", "-sS", "--max-time", "5", "http://172.30.0.2:15020/metrics"],
                   check=False).stdout.decode()
    for line in scrape.splitlines():
        if ((line.startswith("istio_tcp_connections_opened_total") and
             'response_flags="-"' in line) or
            line.startswith("istio_tcp_connections_failed_total")) and \
           'reporter="destination"' in line:
            lab = dict(kv.split("=", 1) for kv in line.split("{", 1)[1].rsplit("}", 1)[0]
                       .split('",') if "=" in kv)
            print("  %-36s %s -> %s %s %s" % (
                line.split("{", 1)[0], lab.get("source_workload", "?").strip('"'),
                lab.get("destination_workload", "?").strip('"'),
                lab.get("response_flags", "?").strip('"'), line.rsplit(" ", 1)[1]))
    print()
    ports = {}
    total = 0
    out = subprocess.run(["tcpdump", "-nn", "-r", pcap, "tcp"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        total += 1
        for port in ("15008", "15012"):
            if "." + port + " " in line or "." + port + ":" in line:
                ports[port] = ports.get(port, 0) + 1
                break
        else:
            ports["other"] = ports.get("other", 0) + 1
    raw = open(pcap, "rb").read()
    print("underlay (tcpdump on node1's link to the bridge, during the traffic)")
    print("  %d TCP packets: %d HBONE (port 15008, TLS), %d agent (15012, TLS), %d other" % (
        total, ports.get("15008", 0), ports.get("15012", 0), ports.get("other", 0)))
    print("  the HTTP text never crossed in the clear: marker %r found %d times, "
          "\"GET /\" found %d times" % (MARK, raw.count(MARK.encode()), raw.count(b"GET /")))
    print()
    print("logs: %s/n{1,2}/weftd.log, %s/agent/agent.log; admin API: "
          "ip netns exec demo-n1 curl 127.0.0.1:15000/tunnels" % (c.dir, c.dir))
    print("'make demo-down' removes the cluster.")


def down():
    c = Cluster(NAME)
    try:
        for line in open(os.path.join(c.dir, "apps.pid")):
            try:
                os.killpg(int(line), 15)
            except (OSError, ValueError):
                pass
    except OSError:
        pass
    c.sh("down", "--name", NAME, check=False)
    print("demo cluster removed")


if __name__ == "__main__":
    down() if sys.argv[1:] == ["down"] else up()
