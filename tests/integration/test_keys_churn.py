# SPDX-License-Identifier: Apache-2.0
"""Keys and identities released (issue 8 item 6): 200 pods come and go on
node 1; tunnel keys and identities return to their baseline and no
certificate is asked for a departed service account.

2 nodes x 1 pod (n1-p1, n2-p1), an echo server in n2-p1. The agent signs
for TTL (10 s): every workload identity is renewed every ~5 s while it is
used. Then N pods come and go on node 1, BATCH at a time, each a real pod:
its own netns, real CNI ADD (bridge + host-local + weft-cni, as cluster.sh
runs them) and its own workload and service account (churn-<i>) in the
registry the agent watches. Each new pod makes one app connection to
n2-p1 through weftd's capture and a tunnel of its own identity
(source identity, node2) -- /tunnels shows the batch's tunnels -- then CNI
DEL, its netns deleted, its workload removed from the registry.

Afterwards node 1's weftd must be back to its baseline: the identities in
/certs (the node's and sa-n1-p1's) and the tunnel keys (the "holds" of each
identity in /certs, or -- for a weftd that does not report them -- the
sources of /tunnels) and tunnels; and over WINDOW (longer than the renewal
interval and than the first backoff steps) neither weftd's log nor the
agent's shows any CreateCertificate (issued or refused) for a churn-<i>
identity. Run time and figures are printed.
"""
import concurrent.futures
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_SERVER  # noqa: E402
from clusterlib import Cluster, Results, echo_probe, require_root  # noqa: E402

NAME = "keys"
N = int(os.environ.get("WEFT_KEYS_PODS", "200"))
BATCH = 25
FIRST = 100                 # churn pods are n1-p100 ... (cluster.sh down cleans nK-pJ)
TTL = "10s"
WINDOW = 12.0               # > renewal at half of TTL, > the first backoff steps
SETTLE = 15.0               # for keys and identities to reach the baseline
PORT = 8080
TD = "spiffe://cluster.local"
CHURN_ID = TD + "/ns/default/sa/churn-%d"
CHURN_RX = re.compile(r"churn-(\d+)\b")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CNI_EXEC = os.path.join(ROOT, "tests", "cluster", "cni_exec.py")


class Churn:
    """Pods n1-p<FIRST+i> with service account churn-<i>, made and removed the
    way cluster.sh makes the cluster's own pods."""

    def __init__(self, c):
        self.c = c
        self.reg = os.path.join(c.dir, "registry", "registry.yaml")
        head, tail = open(self.reg).read().split("\nservices:", 1)
        self.head, self.tail = head.rstrip("\n") + "\n", "services:" + tail
        self.live = {}              # i -> ip ("" until ADD gave one)
        build = os.environ.get("WEFT_BUILD") or os.path.join(ROOT, "build")
        self.cni_path = "/usr/lib/cni:" + build

    def pod(self, i):
        return "n1-p%d" % (FIRST + i)

    def netns(self, i):
        return "%s-%s" % (NAME, self.pod(i))

    def cache(self, i):
        return os.path.join(self.c.dir, "n1", "pods", self.pod(i) + ".json")

    def write_registry(self):
        text = self.head
        for i, ip in sorted(self.live.items()):
            text += ("  - name: %s\n    namespace: default\n    service_account: churn-%d\n"
                     "    node: node1\n" % (self.pod(i), i))
            if ip:
                text += "    ips: [%s]\n" % ip
            text += "    labels: {app: churn}\n"
        with open(self.reg + ".new", "w") as f:
            f.write(text + self.tail)
        os.rename(self.reg + ".new", self.reg)

    def registry_version(self, k):
        return self.c.admin(k, "/stats")["registry_version"]

    def wait_registry(self, before, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if all(self.registry_version(k) > before[k] for k in (1, 2)):
                return True
            time.sleep(0.05)
        return False

    def cni(self, cmd, i):
        pns = self.netns(i)
        p = subprocess.run(
            ["ip", "netns", "exec", "%s-n1" % NAME, "/usr/bin/python3", CNI_EXEC, cmd,
             "--conflist", os.path.join(self.c.dir, "n1", "cni.conflist"),
             "--netns", "/var/run/netns/" + pns, "--containerid", pns, "--ifname", "eth0",
             "--args", "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=%s;"
             "K8S_POD_INFRA_CONTAINER_ID=%s" % (self.pod(i), pns),
             "--cni-path", self.cni_path, "--cache", self.cache(i), "--timeout", "10"],
            capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("CNI %s of %s: %s" % (cmd, self.pod(i), p.stderr[-1000:]))

    def add(self, i):
        pns = self.netns(i)
        subprocess.run(["ip", "netns", "add", pns], check=True)
        subprocess.run(["ip", "-n", pns, "link", "set", "lo", "up"], check=True)
        self.cni("ADD", i)
        p = subprocess.run(["/usr/bin/python3", CNI_EXEC, "ips", "--cache", self.cache(i)],
                           capture_output=True, text=True, check=True)
        return [a for a in p.stdout.split() if ":" not in a][0]

    def delete(self, i):
        self.cni("DEL", i)
        subprocess.run(["ip", "netns", "del", self.netns(i)], check=True)


def churn_counts(text):
    """How many lines of text name a churn identity, and which ones."""
    ids = set()
    n = 0
    for ln in text.splitlines():
        m = CHURN_RX.search(ln)
        if m:
            n += 1
            ids.add(int(m.group(1)))
    return n, ids


def node1_state(c):
    """(identities, tunnel keys, tunnels, reported) of node 1's weftd."""
    certs = c.admin(1, "/certs")
    tunnels = c.admin(1, "/tunnels")
    reported = all("holds" in x for x in certs)
    keys = (sum(x["holds"] for x in certs) if reported
            else len({(t["source"], t["node"]) for t in tunnels}))
    return [x["identity"] for x in certs], keys, len(tunnels), reported


r = Results("test_keys_churn")


def main():
    require_root()
    t_start = time.time()
    with Cluster(NAME, nodes=2, pods=1, ttl=TTL, conf=("cert_ttl: %s" % TTL,)) as c:
        c.py("n2-p1", ECHO_SERVER, ["%d" % PORT])
        r.check(c.wait_port("n2-p1", "127.0.0.1", PORT), "echo server listens in n2-p1")
        dst = c.ip("n2-p1")
        base_ids, base_keys, base_tun, reported = node1_state(c)
        print("  info baseline node1: %d identities %s, %d tunnel keys, %d tunnels%s" % (
            len(base_ids), base_ids, base_keys, base_tun,
            "" if reported else " (this weftd reports no key holds: keys from /tunnels)"))
        r.check(len(base_ids) == 2 and base_keys == 0 and base_tun == 0,
                "baseline: node1 has its node and sa-n1-p1 identities, no key, no tunnel")

        ch = Churn(c)
        pool = concurrent.futures.ThreadPoolExecutor(8)
        failed_probes, peak_ids, peak_tun = [], 0, 0
        t0 = time.time()
        for b0 in range(0, N, BATCH):
            batch = list(range(b0, min(N, b0 + BATCH)))
            v = {k: ch.registry_version(k) for k in (1, 2)}
            for i in batch:
                ch.live[i] = ""
            ch.write_registry()      # as cluster.sh: workloads first, IPs after ADD
            ch.wait_registry(v)
            for i, ip in zip(batch, pool.map(ch.add, batch)):
                ch.live[i] = ip
            v = {k: ch.registry_version(k) for k in (1, 2)}
            ch.write_registry()
            if not ch.wait_registry(v):
                r.check(False, "batch %d: both nodes got the new pods' IPs" % (b0 // BATCH))
            errs = list(pool.map(lambda i: echo_probe(ch.netns(i), dst, PORT, timeout=10),
                                 batch))
            failed_probes += [(ch.pod(i), e) for i, e in zip(batch, errs) if e]
            ids, _, _, _ = node1_state(c)
            tunnels = c.admin(1, "/tunnels")
            srcs = {t["source"] for t in tunnels}
            peak_ids = max(peak_ids, len(ids))
            peak_tun = max(peak_tun, sum(1 for i in batch if CHURN_ID % i in srcs))
            list(pool.map(ch.delete, batch))
            v = {k: ch.registry_version(k) for k in (1, 2)}
            for i in batch:
                del ch.live[i]
            ch.write_registry()
            ch.wait_registry(v)
        t_churn = time.time() - t0
        pool.shutdown()
        print("  info %d pods created, connected and deleted in %.1f s (peak %d identities, "
              "%d churn tunnels in one batch)" % (N, t_churn, peak_ids, peak_tun))
        r.check(not failed_probes, "all %d churn pods reached n2-p1 through weftd (%d failed%s)"
                % (N, len(failed_probes), ": %s" % failed_probes[:3] if failed_probes else ""))
        r.check(peak_tun == min(BATCH, N),
                "each pod of a batch had its own tunnel key on node1 (%d of %d in /tunnels)" % (
                    peak_tun, min(BATCH, N)))

        # --- back to the baseline --------------------------------------------------
        deadline = time.time() + SETTLE
        while True:
            ids, keys, ntun, _ = node1_state(c)
            if (sorted(ids) == sorted(base_ids) and keys == base_keys and ntun == base_tun) \
                    or time.time() > deadline:
                break
            time.sleep(0.5)
        t_settle = time.time() - t0 - t_churn
        print("  info after the churn (+%.1f s): %d identities, %d tunnel keys, %d tunnels" % (
            t_settle, len(ids), keys, ntun))
        r.check(sorted(ids) == sorted(base_ids),
                "node1 identities back to the baseline %d: %d" % (len(base_ids), len(ids)))
        r.check(keys == base_keys, "node1 tunnel keys back to the baseline %d: %d" % (
            base_keys, keys))
        r.check(ntun == base_tun, "node1 tunnels back to the baseline %d: %d" % (base_tun, ntun))

        # --- no renewal for a departed service account -------------------------------
        w_log, a_log = len(c.weftd_log(1)), len(c.agent_log())
        time.sleep(WINDOW)
        n_w, ids_w = churn_counts(c.weftd_log(1)[w_log:])
        n_a, ids_a = churn_counts(c.agent_log()[a_log:])
        print("  info over %.0f s after the churn: %d weftd log lines on %d departed "
              "identities, %d agent log lines (CreateCertificate) on %d" % (
                  WINDOW, n_w, len(ids_w), n_a, len(ids_a)))
        r.check(n_a == 0, "the agent got no CreateCertificate for a departed service account "
                "in %.0f s (%d lines, e.g. churn-%s)" % (WINDOW, n_a, sorted(ids_a)[:5]))
        r.check(n_w == 0, "weftd logged no certificate activity for a departed service account "
                "in %.0f s (%d lines)" % (WINDOW, n_w))
        alive = [x for x in c.admin(1, "/certs") if x["identity"] in base_ids]
        r.check(len(alive) == 2 and all(x["state"] == "ready" for x in alive),
                "the identities still in use keep renewing (%s)" % [
                    (x["identity"], x["state"]) for x in alive])
    print("  info run time %.1f s" % (time.time() - t_start))


if __name__ == "__main__":
    r.run(main)
