# SPDX-License-Identifier: Apache-2.0
"""weft as per-pod sidecars (`weftd --mode sidecar`, issue 4 item 1(d)).

A cluster of 2 nodes x 2 pods (`cluster.sh up --weftd-sidecar`): no weftd in
the nodes; one weftd inside each pod's netns, started before the pod's CNI
ADD, into which the pod's weft-cni enrolls the pod. Each sidecar is a node
of its own in the registry (sc-nK-pJ, address = the pod IP, its own token).
Checked with unmodified python3 apps and the sidecars' admin APIs:

- every sidecar holds exactly one workload identity, its own pod's
  (spiffe://cluster.local/ns/default/sa/sa-nK-pJ), besides its node identity
  spiffe://cluster.local/weft/node/sc-nK-pJ, and listens for HBONE on its
  pod's IP;
- pod to pod across nodes: 1 MiB echoed back intact, through a tunnel from
  the client's sidecar (its workload identity) to the server's sidecar
  (registry node sc-n2-p1, at the server pod's IP); the app sees the real
  client pod IP;
- pod to a service VIP: every connection served, by both endpoints;
- the underlay (br0) carries only TCP to or from 15008 (HBONE) or 15012
  (the agent); every 15008 connection opened during the capture is TLS
  records from its first byte, and a random marker the apps send never
  appears in the capture;
- a second pod's enrollment into a sidecar (weft-cni run for another pod
  against n1-p1's sidecar socket) is refused: the CNI ADD fails with the
  sidecar's reason, the sidecar logs it and still serves its one pod;
- the admin API is served only on the sidecar's unix socket
  (state/admin.sock, mode 0600), not on 127.0.0.1:15000 inside the pod, and
  GET /quitquitquit is answered 405;
- `weftd --mode sidecar` overrides the configuration file's mode, and a
  sidecar's configuration needs no node_ip (`-t`).

The cluster is torn down afterwards, also when a check or step fails.
Exit 0 pass, 1 fail, 77 skip.
"""
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from clusterlib import ECHO_CLIENT, ECHO_SERVER, BUILD, ROOT, Results, SidecarCluster, \
    require_root, skip  # noqa: E402
import test_dp_encrypted as enc  # noqa: E402  (pcap reader, capture, TLS record walker)

NAME = "dsc"
PORT = 8080
MiB = 1 << 20
HBONE, AGENT = 15008, 15012
TD = "cluster.local"

res = Results("weft as per-pod sidecars")


def wait_certs(c, pod, timeout=15):
    """The sidecar's /certs once every identity it holds is ready."""
    deadline = time.time() + timeout
    certs = []
    while time.time() < deadline:
        certs = c.sidecar_admin(pod, "/certs")
        if certs and all(x.get("state") == "ready" for x in certs) and len(certs) >= 2:
            return certs
        time.sleep(0.2)
    return certs


def check_identities(c):
    for pod in c.pod_names():
        certs = wait_certs(c, pod)
        ids = sorted(x["identity"] for x in certs)
        wl = [i for i in ids if "/ns/" in i]
        node = [i for i in ids if "/weft/node/" in i]
        res.check(wl == ["spiffe://%s/ns/default/sa/sa-%s" % (TD, pod)] and
                  node == ["spiffe://%s/weft/node/sc-%s" % (TD, pod)] and len(ids) == 2,
                  "sidecar of %s holds exactly its pod's workload identity and its node "
                  "identity (%s)" % (pod, ids))
        dump = c.sidecar_admin(pod, "/config_dump")
        res.check(dump.get("node") == "sc-" + pod and dump.get("node_ip") == c.ip(pod),
                  "sidecar of %s is node sc-%s at the pod's IP %s (config_dump: %s at %s)" % (
                      pod, pod, c.ip(pod), dump.get("node"), dump.get("node_ip")))
        wls = c.sidecar_admin(pod, "/workloads")
        pods = wls.get("pods", wls) if isinstance(wls, dict) else wls
        res.check(isinstance(pods, list) and len(pods) == 1 and
                  pods[0].get("uid") == "default/" + pod,
                  "sidecar of %s has one pod enrolled (%s)" % (
                      pod, [p.get("uid") for p in pods] if isinstance(pods, list) else pods))
        listen = c.run(pod, ["ss", "-Htln", "sport = :%d" % HBONE]).stdout.decode()
        res.check("%s:%d" % (c.ip(pod), HBONE) in listen,
                  "sidecar of %s listens for HBONE on %s:%d" % (pod, c.ip(pod), HBONE))
        res.check(not os.path.exists(os.path.join(c.dir, pod.split("-")[0], "weftd.pid")),
                  "no node weftd on the node of %s" % pod)


def traffic(c, marker):
    """Under a capture of br0: 1 MiB of marker n1-p1 -> n2-p1 and back, then
    8 connections n1-p2 -> svc-p1's VIP. Returns (pcap path, echo line,
    VIP replies, packets dropped)."""
    ips = {p: c.ip(p) for p in c.pod_names()}
    for p in ("n1-p1", "n2-p1"):
        c.py(p, ECHO_SERVER, [str(PORT), p], stdout=subprocess.DEVNULL,
             stderr=subprocess.DEVNULL)
    for p in ("n1-p1", "n2-p1"):
        res.check(c.wait_port(p, "127.0.0.1", PORT), "echo server listening in %s" % p)
    path = os.path.join(c.tmp, "sidecar.pcap")
    cap = enc.Capture(c, path)
    if not res.check(cap.start(), "tcpdump listening on br0 before the app traffic"):
        return None
    p = c.run("n1-p1", ["/usr/bin/python3", "-c", enc.CLIENT, ips["n2-p1"], str(PORT), marker],
              timeout=60, check=False)
    echo = p.stdout.decode(errors="replace").strip() + p.stderr.decode(errors="replace")[-300:]
    vip = []
    for i in range(8):
        q = c.run("n1-p2", ["/usr/bin/python3", "-c", ECHO_CLIENT, "10.96.0.1", "80",
                            "%s-%d" % (marker[:24], i)], timeout=20, check=False)
        vip.append(q.stdout.decode(errors="replace").strip() or
                   "ERROR " + q.stderr.decode(errors="replace")[-200:])
    dropped, text = cap.stop()
    m = re.search(r"(\d+) packets captured\s+(\d+) packets received by filter", text)
    if m and m.group(1) != m.group(2):
        dropped = (dropped or 0) + int(m.group(2)) - int(m.group(1))
    return path, echo, vip, dropped, ips


def check_traffic(c, marker):
    got = traffic(c, marker)
    if got is None:
        return
    path, echo, vip, dropped, ips = got
    res.check(enc.echoed(echo, "n2-p1") and echo.endswith("|n2-p1|" + ips["n1-p1"]),
              "n1-p1 -> n2-p1: 1 MiB echoed back intact, the app saw the client pod's IP "
              "(%s)" % echo[-80:])
    served = [v.rsplit("|", 2)[1] if v.count("|") >= 2 else v for v in vip]
    res.check(all(v.startswith(marker[:24]) for v in vip) and
              set(served) == {"n1-p1", "n2-p1"},
              "n1-p2 -> svc-p1 VIP 10.96.0.1:80: 8 of 8 served, by both endpoints (%s)" %
              served)
    tun = c.sidecar_admin("n1-p1", "/tunnels")
    res.check(any(t.get("node") == "sc-n2-p1" and t.get("peer") == "%s:%d" % (
        ips["n2-p1"], HBONE) and t.get("source") == "spiffe://%s/ns/default/sa/sa-n1-p1" % TD
        and t.get("state") == "ready" for t in tun),
        "n1-p1's sidecar tunnel: source sa-n1-p1 -> node sc-n2-p1 at %s:%d (%s)" % (
            ips["n2-p1"], HBONE, [(t.get("source"), t.get("node"), t.get("peer"))
                                   for t in tun]))
    inb = c.sidecar_log("n2-p1")
    res.check(re.search(r"direction=inbound src=%s:\d+ dst=%s:%d src_identity=spiffe://%s/ns/"
                        r"default/sa/sa-n1-p1" % (re.escape(ips["n1-p1"]),
                                                  re.escape(ips["n2-p1"]), PORT, TD), inb)
              is not None,
              "n2-p1's sidecar delivered the connection with the client's identity (log)")

    res.check(dropped == 0, "the capture is complete (%s packets dropped)" % dropped)
    pkts = [p for p in enc.read_pcap(path) if p[0] != "ipv6"]
    ip4 = [p for p in pkts if p[2] != 2]    # IGMP aside: the bridge's own bookkeeping
    tcp = [p for p in ip4 if p[2] == 6]
    not_tcp = [p[:3] for p in ip4 if p[2] != 6]
    other = sorted({(p[0], p[3], p[1], p[4]) for p in tcp
                    if HBONE not in (p[3], p[4]) and AGENT not in (p[3], p[4])})
    res.check(len(tcp) > 0 and not not_tcp,
              "the underlay carried %d TCP packets and no other IP (%s)" % (len(tcp),
                                                                            not_tcp[:5]))
    res.check(not other, "every TCP packet on the underlay is to or from %d or %d (others: %s)"
              % (HBONE, AGENT, other[:5]))
    flows, syn = {}, {}
    for (src, dst, _, sp, dp, flags, seq, data) in tcp:
        if HBONE not in (sp, dp):
            continue
        k = (src, sp, dst, dp)
        flows.setdefault(k, []).append((seq, data))
        if flags & 0x02:
            syn[k] = seq
    hbone_bytes = 0
    for k in sorted(syn):
        stream, gap = enc.reassemble(flows.get(k, []), syn[k])
        recs, err, left = enc.tls_records(stream)
        hbone_bytes += len(stream)
        res.check(not gap and err is None and left == 0 and recs and recs[0][0] == 22,
                  "%s:%d -> %s:%d: %d bytes, all TLS records, handshake first%s" % (
                      k + (len(stream), " (" + err + ")" if err else "")))
    res.check(len(syn) >= 2 and hbone_bytes >= 2 * MiB,
              "%d HBONE connections (both directions) carried %d bytes (>= 2 MiB)" % (
                  len(syn), hbone_bytes))
    full, part = enc.marker_hits(path, marker)
    res.check(full == 0 and part == 0,
              "the marker never appears on the underlay (%d whole, %d prefix)" % (full, part))


def check_second_enrollment(c):
    """weft-cni, run by a runtime for a new pod n1-p9 but pointed at n1-p1's
    sidecar (its conflist), is refused; n1-p1 keeps working."""
    pns = "%s-n1-p9" % NAME
    conf = os.path.join(c.sidecar_dir("n1-p1"), "cni.conflist")
    cache = os.path.join(c.tmp, "n1-p9.json")
    args = ["/usr/bin/python3", os.path.join(ROOT, "tests", "cluster", "cni_exec.py"), None,
            "--conflist", conf, "--netns", "/var/run/netns/" + pns, "--containerid", pns,
            "--ifname", "eth0", "--args", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;"
            "K8S_POD_NAME=n1-p9;K8S_POD_INFRA_CONTAINER_ID=" + pns,
            "--cni-path", "/usr/lib/cni:" + BUILD, "--cache", cache,
            "--timeout", "10"]
    subprocess.run(["ip", "netns", "add", pns], check=True)
    try:
        subprocess.run(["ip", "-n", pns, "link", "set", "lo", "up"], check=True)
        add = args[:]
        add[2] = "ADD"
        p = c.run("n1", add, timeout=30, check=False)
        err = p.stderr.decode(errors="replace")
        res.check(p.returncode != 0 and "serves no other pod" in err,
                  "CNI ADD of a second pod into n1-p1's sidecar fails with the sidecar's "
                  "reason (exit %d: %s)" % (p.returncode, err.strip()[-200:]))
        res.check(re.search(r"enrollment refused: .*default/n1-p9", c.sidecar_log("n1-p1"))
                  is not None, "n1-p1's sidecar logged the refusal")
        rules = subprocess.run(["ip", "netns", "exec", pns, "nft", "list", "ruleset"],
                               capture_output=True, text=True).stdout
        res.check("weft" not in rules, "the refused pod has no capture rules left")
        wls = c.sidecar_admin("n1-p1", "/workloads")
        pods = wls.get("pods", wls) if isinstance(wls, dict) else wls
        res.check([x.get("uid") for x in pods] == ["default/n1-p1"],
                  "n1-p1's sidecar still has only its pod (%s)" % [x.get("uid") for x in pods])
        out = c.run("n2-p1", ["/usr/bin/python3", "-c", ECHO_CLIENT, c.ip("n1-p1"), str(PORT),
                              "still"], timeout=20, check=False).stdout.decode().strip()
        res.check(out.startswith("still|n1-p1|"),
                  "n2-p1 -> n1-p1 still served after the refusal (%s)" % out)
    finally:
        dele = args[:]
        dele[2] = "DEL"
        c.run("n1", dele, timeout=30, check=False)
        subprocess.run(["ip", "netns", "del", pns], capture_output=True)


def check_admin_out_of_reach(c):
    """Issue 8 item 7: the app cannot reach its sidecar's admin API."""
    pod = "n1-p1"
    pid = c.sidecar_pid(pod)
    p = c.run(pod, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "3",
                    "-X", "POST", "http://127.0.0.1:15000/quitquitquit"], check=False)
    res.check(p.returncode != 0 and p.stdout.decode() in ("", "000"),
              "an app in %s cannot connect to 127.0.0.1:15000 (curl exit %d, %s)" % (
                  pod, p.returncode, p.stderr.decode(errors="replace").strip()[-80:]))
    listen = c.run(pod, ["ss", "-Htln"]).stdout.decode()
    res.check(":15000 " not in listen, "nothing listens on :15000 in %s's netns" % pod)
    sock = c.sidecar_admin_sock(pod)
    st = os.stat(sock)
    res.check(oct(st.st_mode & 0o777) == "0o600",
              "the admin socket %s has mode %s (0600)" % (sock, oct(st.st_mode & 0o777)))
    g = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                        "3", "--unix-socket", sock, "http://localhost/quitquitquit"],
                       capture_output=True, text=True)
    res.check(g.stdout == "405", "GET /quitquitquit on the admin socket answers 405 (%s)"
              % g.stdout)
    time.sleep(0.5)
    res.check(os.path.exists("/proc/%d" % pid) and c.sidecar_pid(pod) == pid,
              "the sidecar of %s still runs (pid %d)" % (pod, pid))


def check_mode_option(c):
    yml = os.path.join(c.sidecar_dir("n1-p1"), "weftd.yaml")
    weftd = os.path.join(BUILD, "weftd")
    a = subprocess.run([weftd, "-t", "-c", yml], capture_output=True, text=True)
    b = subprocess.run([weftd, "-t", "--mode", "sidecar", "-c", yml], capture_output=True,
                       text=True)
    res.check(a.returncode == 0 and "(node sc-n1-p1" in a.stdout and
              b.returncode == 0 and "(sidecar sc-n1-p1" in b.stdout,
              "--mode sidecar overrides the file's mode (%s / %s)" % (a.stdout.strip(),
                                                                      b.stdout.strip()))
    bad = subprocess.run([weftd, "-t", "--mode", "bogus", "-c", yml], capture_output=True,
                         text=True)
    res.check(bad.returncode == 2, "--mode bogus is refused (exit %d)" % bad.returncode)
    # Without node_ip: required of a node, not of a sidecar (it takes its pod's).
    noip = os.path.join(c.tmp, "noip.yaml")
    with open(yml) as f, open(noip, "w") as g:
        g.write("".join(ln for ln in f if not ln.startswith("node_ip:")))
    n = subprocess.run([weftd, "-t", "-c", noip], capture_output=True, text=True)
    s = subprocess.run([weftd, "-t", "-m", "sidecar", "-c", noip], capture_output=True, text=True)
    res.check(n.returncode == 1 and "node_ip is required" in n.stderr and
              s.returncode == 0 and "the pod's IP" in s.stdout,
              "node_ip is required in node mode, optional for a sidecar (%s / %s)" % (
                  n.stderr.strip(), s.stdout.strip()))


def main():
    require_root()
    if not shutil.which("tcpdump"):
        skip("tcpdump missing (apt-get install tcpdump)")
    marker = secrets.token_hex(32)
    tmp = tempfile.mkdtemp(prefix="weft-dsc-")
    try:
        t0 = time.time()
        with SidecarCluster(NAME, nodes=2, pods=2) as c:
            c.tmp = tmp
            print("  cluster up in %.1f s" % (time.time() - t0))
            check_identities(c)
            check_traffic(c, marker)
            check_second_enrollment(c)
            check_admin_out_of_reach(c)
            check_mode_option(c)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    res.run(main)
