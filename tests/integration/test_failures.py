# SPDX-License-Identifier: Apache-2.0
"""Classic failures, each built for real and each told the same way by four
signals (issue 9 item 5): the access-log line in words, its response_flags,
an istio_tcp_connections_failed_total increment with that flag, and
`weftctl explain` / `why` naming the cause. 2 nodes x 2 pods,
unknown_destination: deny, connect_timeout: 2s.
  (a) denied by policy: a DENY policy for n2-p2 against n1-p1's identity;
  (b) unknown destination with unknown_destination: deny (10.9.9.9:80;
      weftd resets it inside the pod's netns, nothing leaves);
  (c) nothing listens on the destination port (n2-p1:9);
  (d) the source pod has no certificate because the agent was down when
      its weftd started (agent stopped, node 1's weftd restarted);
  (e) the destination node is unreachable (node 2's weftd stopped);
  (f) a peer of a trust domain that is not accepted (a second cluster whose
      weftds accept only other.local)."""
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CLUSTER, ECHO_SERVER, Cluster, Results, deny_policy,  # noqa: E402
                        echo_probe, require_root)

NAME = "six"
TD = "cluster.local"
BUILD = os.environ.get("WEFT_BUILD") or os.path.join(os.path.dirname(__file__), "..", "..",
                                                     "build")
WEFTCTL = os.path.join(BUILD, "weftctl")
res = Results("failures")


def ctl(c, node, *args):
    p = subprocess.run(["ip", "netns", "exec", c.netns(node), WEFTCTL] + list(args),
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def failed_metric(c, k, flag, **want):
    p = c.run("n%d" % k, ["curl", "-sS", "--max-time", "5",
                          "http://172.30.0.%d:15020/metrics" % k], check=False)
    total = 0
    for line in p.stdout.decode().splitlines():
        if not line.startswith("istio_tcp_connections_failed_total{"):
            continue
        if 'response_flags="%s"' % flag not in line:
            continue
        if all('%s="%s"' % kv in line for kv in want.items()):
            total += int(line.rsplit(" ", 1)[1])
    return total


def last_failure(c, k, flag, dst_prefix):
    rc, out, _ = ctl(c, "n%d" % k, "-o", "json", "why")
    for f in json.loads(out) if rc == 0 else []:
        if f["response_flags"] == flag and f["dst"].startswith(dst_prefix):
            return f
    return None


def log_line(c, k, trace):
    for line in c.weftd_log(k).splitlines():
        if "connection complete" in line and "trace_id=%s" % trace in line:
            return line
    return None


def show(what, out):
    """weftctl explain's answer in the test's output, as an operator sees it."""
    print("  info %s: weftctl explain:" % what)
    for ln in out.rstrip().splitlines():
        print("  |   " + ln)


def four_signals(c, what, k, flag, dst_prefix, words, explain_args, explain_words,
                 metric_labels):
    """The access-log line (words), its flag, the metric and explain agree."""
    f = last_failure(c, k, flag, dst_prefix)
    res.check(f is not None and words in f["error"],
              "%s: weftctl why on node %d names it [%s] %r" % (
                  what, k, flag, f["error"][:120] if f else None))
    line = log_line(c, k, f["trace_id"]) if f else None
    res.check(line is not None and "response_flags=%s" % flag in line and words in line,
              "%s: the access-log line of that trace id says response_flags=%s and why" %
              (what, flag))
    n = failed_metric(c, k, flag, **metric_labels)
    res.check(n >= 1, "%s: istio_tcp_connections_failed_total{response_flags=\"%s\"} on node "
              "%d counts it (%d)" % (what, flag, k, n))
    if explain_args:
        rc, out, _ = ctl(c, "n1", "explain", *explain_args)
        show(what, out)
        res.check(rc == 1 and explain_words in out,
                  "%s: weftctl explain says so, exit 1 (%r)" % (
                      what, out.strip().splitlines()[-1][:160] if out.strip() else ""))


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=2,
                 conf=["unknown_destination: deny", "connect_timeout: 2s"]) as c:
        for pod in ("n2-p1", "n2-p2"):
            c.py(pod, ECHO_SERVER, ["8080"])
            c.wait_port(pod, "127.0.0.1", 8080)
        src = c.ip("n1-p1")
        res.check(echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 8080) is None, "warm-up")

        # (a) denied by policy
        c.set_policies("policies:\n" + deny_policy("deny-n1p1", "app-p2",
                                                   "spiffe://%s/ns/default/sa/sa-n1-p1" % TD))
        err = echo_probe(c.netns("n1-p1"), c.ip("n2-p2"), 8080)
        res.check(err is not None, "(a) n1-p1 -> n2-p2 is refused (%s)" % err)
        time.sleep(0.3)
        four_signals(c, "(a) policy", 2, "DENY", c.ip("n2-p2"), "deny-n1p1",
                     (src, "%s:8080" % c.ip("n2-p2")), "deny-n1p1",
                     {"reporter": "destination", "destination_workload": "n2-p2"})

        # (b) unknown destination, unknown_destination: deny
        err = echo_probe(c.netns("n1-p1"), "10.9.9.9", 80, timeout=3)
        res.check(err is not None, "(b) n1-p1 -> 10.9.9.9:80 is refused (%s)" % err)
        time.sleep(0.3)
        four_signals(c, "(b) unknown destination", 1, "NO_ROUTE", "10.9.9.9",
                     "unknown_destination is deny", (src, "10.9.9.9:80"),
                     "unknown_destination is deny",
                     {"reporter": "source", "destination_workload": "unknown"})

        # (c) nothing listens on the destination port
        err = echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 9)
        res.check(err is not None, "(c) n1-p1 -> n2-p1:9 fails (%s)" % err)
        time.sleep(0.3)
        four_signals(c, "(c) nothing listens", 1, "CONNECT", "%s:9" % c.ip("n2-p1"),
                     "503", None, None, {"reporter": "source"})
        rc, out, _ = ctl(c, "n1", "explain", src, "%s:9" % c.ip("n2-p1"))
        show("(c) nothing listens", out)
        res.check("only node2 knows" in out and "[CONNECT]" in out,
                  "(c) explain: only node2 knows whether anything listens, and the last "
                  "attempt there failed [CONNECT] (exit %d)" % rc)
        res.check(failed_metric(c, 2, "CONNECT", reporter="destination") >= 1,
                  "(c) node 2's reporter=destination counts its CONNECT failure too")

        # (e) the destination node is unreachable: node 2's weftd stopped
        subprocess.run([CLUSTER, "stop", "--name", NAME, "weftd", "--node", "2"],
                       capture_output=True, timeout=60)
        err = echo_probe(c.netns("n1-p2"), c.ip("n2-p1"), 8080, timeout=8)
        res.check(err is not None, "(e) with node 2's weftd stopped, n1-p2 -> n2-p1 fails "
                  "(%s)" % err)
        time.sleep(0.3)
        four_signals(c, "(e) node unreachable", 1, "CONNECT", c.ip("n2-p1"),
                     "tunnel to node node2", (c.ip("n1-p2"), "%s:8080" % c.ip("n2-p1")),
                     "tunnel to node node2",
                     {"reporter": "source", "destination_workload": "n2-p1"})
        subprocess.run([CLUSTER, "start", "--name", NAME, "weftd", "--node", "2"],
                       capture_output=True, timeout=60)

        # (d) no certificate: the agent down when node 1's weftd starts
        subprocess.run([CLUSTER, "stop", "--name", NAME, "agent"], capture_output=True,
                       timeout=60)
        subprocess.run([CLUSTER, "stop", "--name", NAME, "weftd", "--node", "1"],
                       capture_output=True, timeout=60)
        subprocess.run([CLUSTER, "start", "--name", NAME, "weftd", "--node", "1"],
                       capture_output=True, timeout=60)
        time.sleep(1.0)
        err = echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 8080, timeout=6)
        res.check(err is not None, "(d) with the agent down since node 1's weftd started, "
                  "n1-p1 -> n2-p1 fails (%s)" % err)
        time.sleep(0.3)
        four_signals(c, "(d) no certificate", 1, "IDENTITY_ERROR", c.ip("n2-p1"),
                     "certificate", (src, "%s:8080" % c.ip("n2-p1")), "certificate",
                     {"reporter": "source"})
        subprocess.run([CLUSTER, "start", "--name", NAME, "agent"], capture_output=True,
                       timeout=60)
    untrusted_domain()


def untrusted_domain():
    """(f) a peer of a trust domain that is not accepted: node 2's weftd is
    restarted accepting only peers of other.local (trust_domains), so it
    refuses node 1's workload identities of cluster.local."""
    with Cluster(NAME + "f", nodes=2, pods=1, conf=["connect_timeout: 2s"]) as c:
        conf = os.path.join(c.dir, "n2", "weftd.yaml")
        with open(conf, "a") as f:
            f.write("trust_domains: [other.local]\n")
        subprocess.run([CLUSTER, "stop", "--name", NAME + "f", "weftd", "--node", "2"],
                       capture_output=True, timeout=60)
        subprocess.run([CLUSTER, "start", "--name", NAME + "f", "weftd", "--node", "2"],
                       capture_output=True, timeout=60)
        c.py("n2-p1", ECHO_SERVER, ["8080"])
        c.wait_port("n2-p1", "127.0.0.1", 8080)
        err = echo_probe(c.netns("n1-p1"), c.ip("n2-p1"), 8080, timeout=6)
        res.check(err is not None, "(f) n1-p1 -> n2-p1 with cluster.local not accepted: "
                  "fails (%s)" % err)
        time.sleep(0.3)
        f = None
        f = last_failure(c, 1, "CONNECT", c.ip("n2-p1"))
        res.check(f is not None and "did not accept this source identity" in f["error"],
                  "(f) weftctl why on node 1: [%s] %r" % (
                      f["response_flags"] if f else "-", f["error"] if f else None))
        node2 = [ln for ln in c.weftd_log(2).splitlines() if "HBONE connection from" in ln and
                 "IDENTITY_ERROR" in ln]
        res.check(bool(node2), "(f) node 2 logs why it refused the peer (%s)" %
                  (node2[-1].split("weftd: ", 1)[-1][:140] if node2 else "no line"))
        if f:
            res.check(failed_metric(c, 1, f["response_flags"], reporter="source") >= 1,
                      "(f) node 1 counts it in istio_tcp_connections_failed_total")
            rc, out, _ = ctl(c, "n1", "explain", c.ip("n1-p1"), "%s:8080" % c.ip("n2-p1"))
            show("(f) trust domain not accepted", out)
            res.check(rc == 1 and "did not accept this source identity" in out and
                      "its log says which" in out,
                      "(f) weftctl explain says the destination did not accept the identity "
                      "(%r)" %
                      (out.strip().splitlines()[-1][:160] if out.strip() else ""))


res.run(main)
