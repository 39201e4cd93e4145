# SPDX-License-Identifier: Apache-2.0
"""Prometheus metrics on 15020 (issue 9 item 1, DESIGN §7). 2 nodes x 2 pods.
Known traffic: n1-p1 opens CONNS connections to n2-p1:8080 through the
tunnel, each sending REQ bytes and reading the echo back (REQ bytes), then
one same-node connection n1-p1 -> n1-p2, then a connection n1-p1 -> n2-p2
that a DENY policy refuses. Scraped from both nodes over plain HTTP from the
underlay (curl; the scrape is what Prometheus would fetch):
  - promtool check metrics accepts both expositions;
  - reporter="source" on node 1 and reporter="destination" on node 2 carry
    the pair's exact bytes (istio_tcp_received_bytes_total = what the client
    app sent, istio_tcp_sent_bytes_total = what it got back), opened ==
    closed == CONNS, with the workload, namespace, principal and app labels
    of both sides and connection_security_policy="mutual_tls";
  - the same-node connection says connection_security_policy="none";
  - the denied pair has a response_flags="DENY" series on node 2 with
    istio_tcp_connections_failed_total 1, and weft_policy_denied_total;
  - weft_* and process_* are there; /stats/prometheus is the same
    exposition; other paths answer 404 and POST is refused;
  - with access_log_format: json, each of the CONNS connections has one
    JSON line on each node with the same trace id (carried in the
    CONNECT's traceparent)."""
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (ECHO_SERVER, Cluster, Results, deny_policy,  # noqa: E402
                        netns_socket, require_root)

NAME = "met"
TD = "cluster.local"
CONNS = 5
REQ = 12345
res = Results("metrics")

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """[(name, {label: value}, float)] of the exposition's samples."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            raise ValueError("not a sample: %r" % line)
        labels = {k: v for k, v in LABEL.findall(m.group(3) or "")}
        out.append((m.group(1), labels, float(m.group(4))))
    return out


def scrape(c, k, path="/metrics", method="GET"):
    p = c.run("n%d" % k, ["curl", "-sS", "--max-time", "5", "-X", method, "-w",
                          "\n%{http_code}", "http://172.30.0.%d:15020%s" % (k, path)],
              check=False)
    body, _, code = p.stdout.decode().rpartition("\n")
    return code, body


def value(samples, name, **want):
    return sum(v for n, lab, v in samples
               if n == name and all(lab.get(k) == x for k, x in want.items()))


def transfer(c, src, dst_ip, port=8080, n=REQ):
    """One app connection: send n bytes, half-close, read the echo to EOF.
    Returns the bytes read back."""
    s = netns_socket(c.netns(src))
    s.settimeout(10)
    s.connect((dst_ip, port))
    s.sendall(b"m" * n)
    s.shutdown(socket.SHUT_WR)
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
    s.close()
    return got


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=2, conf=["access_log_format: json"]) as c:
        for pod in ("n2-p1", "n2-p2", "n1-p2"):
            c.py(pod, ECHO_SERVER, ["8080"])
        for pod in ("n2-p1", "n2-p2", "n1-p2"):
            c.wait_port(pod, "127.0.0.1", 8080)
        got = [transfer(c, "n1-p1", c.ip("n2-p1")) for _ in range(CONNS)]
        res.check(got == [REQ] * CONNS, "%d connections n1-p1 -> n2-p1 echoed %d bytes each "
                  "(%s)" % (CONNS, REQ, got))
        same = transfer(c, "n1-p1", c.ip("n1-p2"), n=100)
        res.check(same == 100, "same-node n1-p1 -> n1-p2 echoed (%d)" % same)
        ok = c.set_policies("policies:\n" + deny_policy(
            "deny-n1p1", "app-p2", "spiffe://%s/ns/default/sa/sa-n1-p1" % TD))
        res.check(ok, "DENY policy reached both nodes")
        try:
            denied = transfer(c, "n1-p1", c.ip("n2-p2"), n=10)
        except OSError as e:
            denied = "%s" % e
        res.check(denied == 0 or isinstance(denied, str),
                  "n1-p1 -> n2-p2 is denied (%s)" % denied)
        time.sleep(0.5)     # the relays' ends are counted a loop round later

        texts = {}
        for k in (1, 2):
            code, body = scrape(c, k)
            texts[k] = body
            res.check(code == "200" and "istio_tcp_connections_opened_total" in body,
                      "node %d: GET :15020/metrics answers 200 with istio_tcp_* (%s, %d "
                      "bytes)" % (k, code, len(body)))
            p = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                               capture_output=True, timeout=30)
            res.check(p.returncode == 0, "node %d: promtool check metrics accepts it (%s)" %
                      (k, (p.stdout + p.stderr).decode().strip()[-300:] or "clean"))
        s1, s2 = parse(texts[1]), parse(texts[2])
        pair = dict(source_workload="n1-p1", source_workload_namespace="default",
                    destination_workload="n2-p1", destination_workload_namespace="default",
                    source_principal="spiffe://%s/ns/default/sa/sa-n1-p1" % TD,
                    destination_principal="spiffe://%s/ns/default/sa/sa-n2-p1" % TD,
                    request_protocol="tcp", connection_security_policy="mutual_tls")
        for k, smp, rep in ((1, s1, "source"), (2, s2, "destination")):
            lab = dict(pair, reporter=rep)
            got = {m: value(smp, "istio_tcp_%s" % m, **lab) for m in (
                "connections_opened_total", "connections_closed_total",
                "received_bytes_total", "sent_bytes_total")}
            res.check(got == {"connections_opened_total": CONNS,
                              "connections_closed_total": CONNS,
                              "received_bytes_total": CONNS * REQ,
                              "sent_bytes_total": CONNS * REQ},
                      "node %d reporter=%s: n1-p1 -> n2-p1 opened = closed = %d, bytes exactly "
                      "%d each way (%s)" % (k, rep, CONNS, CONNS * REQ, got))
        apps = [lab.get("destination_app") for n, lab, v in s1
                if n == "istio_tcp_connections_opened_total" and
                lab.get("destination_workload") == "n2-p1"]
        res.check(apps and all(a == "app-p1" for a in apps),
                  "the destination_app label is the workload's app label (%s)" % apps)
        same_sec = {lab.get("connection_security_policy") for n, lab, v in s1
                    if n == "istio_tcp_connections_closed_total" and
                    lab.get("destination_workload") == "n1-p2"}
        res.check(same_sec == {"none"}, "same-node fast path: connection_security_policy="
                  "\"none\" (%s)" % same_sec)
        deny = value(s2, "istio_tcp_connections_failed_total", reporter="destination",
                     destination_workload="n2-p2", response_flags="DENY",
                     source_principal="spiffe://%s/ns/default/sa/sa-n1-p1" % TD)
        res.check(deny == 1, "node 2: the denied pair has a DENY series, failed_total 1 (%s)" %
                  deny)
        res.check(value(s2, "weft_policy_denies_total", policy="default/deny-n1p1",
                        rule="0") == 1,
                  "node 2: weft_policy_denies_total names the policy and rule that decided")
        res.check(value(s2, "weft_policy_denied_total") >= 1,
                  "node 2: weft_policy_denied_total counts it (%s)" %
                  value(s2, "weft_policy_denied_total"))
        for name in ("weft_build_info", "weft_tunnels_open", "weft_connections_live",
                     "weft_certificate_expiry_timestamp_seconds", "process_cpu_seconds_total",
                     "process_resident_memory_bytes", "process_open_fds"):
            res.check(any(n == name for n, _, _ in s1), "node 1 exports %s" % name)
        res.check(value(s1, "weft_tunnels_open") >= 1, "node 1: weft_tunnels_open >= 1")
        ups = sum(1 for ln in c.weftd_log(1).splitlines()
                  if " tunnel " in ln and ") up: TLS" in ln)
        hs = value(s1, "weft_tunnel_handshake_seconds_count")
        ok_ = value(s1, "weft_tunnels_opened_total", result="ok")
        res.check(ups >= 1 and hs == ok_ == ups,
                  "node 1: the handshake histogram counts every tunnel opened (%d), as "
                  "weft_tunnels_opened_total{result=\"ok\"} (%d) and the log's 'up' lines (%d)" %
                  (hs, ok_, ups))
        code, body = scrape(c, 1, "/stats/prometheus")
        res.check(code == "200" and "istio_tcp_sent_bytes_total" in body,
                  "/stats/prometheus answers the exposition too (%s)" % code)
        res.check(scrape(c, 1, "/config_dump")[0] == "404", "15020 serves no admin paths (404)")
        res.check(scrape(c, 1, "/metrics", "POST")[0] == "404", "POST /metrics is refused")
        access_log_joins(c)


def access_lines(c, k, direction, dst_ip):
    """node k's JSON access-log lines of direction toward dst_ip."""
    out = []
    for line in c.weftd_log(k).splitlines():
        i = line.find('{"msg":"connection complete"')
        if i < 0:
            continue
        e = json.loads(line[i:])
        if e["direction"] == direction and e["dst"].startswith(dst_ip + ":"):
            out.append(e)
    return out


def access_log_joins(c):
    """access_log_format: json, and one trace id per connection on both nodes."""
    src = access_lines(c, 1, "outbound", c.ip("n2-p1"))
    dst = access_lines(c, 2, "inbound", c.ip("n2-p1"))
    res.check(len(src) == CONNS and len(dst) == CONNS,
              "JSON access log: %d outbound lines on node 1 and %d inbound on node 2 for the "
              "%d connections" % (len(src), len(dst), CONNS))
    ids = {e["trace_id"] for e in src}
    res.check(len(ids) == CONNS and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids),
              "each connection has its own 32-digit trace id (%d distinct)" % len(ids))
    res.check(ids == {e["trace_id"] for e in dst},
              "node 2's lines carry the same trace ids as node 1's (the traceparent of the "
              "CONNECT): the two sides of each connection join")
    by_id = {e["trace_id"]: e for e in dst}
    res.check(all(by_id.get(e["trace_id"], {}).get("bytes_sent") == e["bytes_sent"] == REQ
                  for e in src),
              "joined by trace id, both lines count the %d bytes the client sent" % REQ)


res.run(main)
