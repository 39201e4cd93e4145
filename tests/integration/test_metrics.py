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
    CONNECT's traceparent);
  - the agent's 15014 exposition passes promtool too;
  - a real Prometheus server (Debian's), started before the traffic in
    node 1's netns and scraping both nodes and the agent every second,
    answers PromQL over its HTTP API with the same facts: the apps' exact
    byte sums per source/destination workload from both reporters, opened
    == closed, the DENY series, each node's handshake histogram count equal
    to its tunnels opened, certificates issued and Watch streams on the
    agent, and every node on the agent's registry version."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (ECHO_SERVER, Cluster, Results, deny_policy,  # noqa: E402
                        netns_socket, require_root)

NAME = "met"
TD = "cluster.local"
AGENT_METRICS = "172.30.0.250:15014"
PROM = "127.0.0.1:19090"     # in node 1's netns
# A registry string with the characters the exposition format escapes (the
# registry takes any printable text without spaces for a node's cluster):
# node 2's workloads carry it as destination_cluster.
ODD_CLUSTER = 'we"st\\x'
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


def scrape(c, k, path="/metrics", method="GET", addr=None):
    addr = addr or "172.30.0.%d:15020" % k
    p = c.run("n%d" % k, ["curl", "-sS", "--max-time", "5", "-X", method, "-w",
                          "\n%{http_code}", "http://%s%s" % (addr, path)],
              check=False)
    body, _, code = p.stdout.decode().rpartition("\n")
    return code, body


def promtool(text):
    p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                       capture_output=True, timeout=30)
    return p.returncode == 0, (p.stdout + p.stderr).decode().strip()[-300:] or "clean"


class Prometheus:
    """Debian's Prometheus server in node 1's netns, scraping both nodes'
    15020 and the agent's 15014 every second."""

    def __init__(self, c):
        self.c = c
        self.dir = tempfile.mkdtemp(prefix="weft-prom-")
        with open(os.path.join(self.dir, "prometheus.yml"), "w") as f:
            f.write("global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
                    "scrape_configs:\n"
                    "  - job_name: weftd\n"
                    "    static_configs: [{targets: ['172.30.0.1:15020', "
                    "'172.30.0.2:15020']}]\n"
                    "  - job_name: weft-agent\n"
                    "    static_configs: [{targets: ['%s']}]\n" % AGENT_METRICS)
        self.log = open(os.path.join(self.dir, "prometheus.log"), "wb")
        self.proc = c.spawn("n1", [
            "prometheus", "--config.file=" + os.path.join(self.dir, "prometheus.yml"),
            "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
            "--web.listen-address=" + PROM, "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT)

    def get(self, path, **params):
        cmd = ["curl", "-sS", "--max-time", "5", "-G", "http://%s%s" % (PROM, path)]
        for k, v in params.items():
            cmd += ["--data-urlencode", "%s=%s" % (k, v)]
        p = self.c.run("n1", cmd, check=False)
        return p.stdout.decode(errors="replace")

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return False
            if "Ready" in self.get("/-/ready"):
                return True
            time.sleep(0.2)
        return False

    def query(self, q):
        """{frozenset(labels): value} of an instant vector, or a scalar."""
        try:
            r = json.loads(self.get("/api/v1/query", query=q))
        except ValueError:
            return None
        if r.get("status") != "success":
            return None
        d = r["data"]
        if d["resultType"] == "scalar":
            return float(d["result"][1])
        return {frozenset(e["metric"].items()): float(e["value"][1]) for e in d["result"]}

    def wait_scraped_after(self, t, timeout=15):
        """True once every target has been scraped after wall time t."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            v = self.query("min(timestamp(up)) > %f and count(up == 1) == 3" % t)
            if v:
                return True
            time.sleep(0.3)
        return False

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def by(result, label):
    """{label value: sample value} of an instant vector."""
    return {dict(k).get(label): v for k, v in (result or {}).items()}


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
        prom = Prometheus(c)
        try:
            traffic_and_checks(c, prom)
        finally:
            prom.stop()


def set_cluster_name(c, k, value):
    """Give node k a `cluster:` in the registry (rename-replaced; True once
    every node has the new version). YAML single quotes: a backslash is
    itself, a quote inside is doubled."""
    path = os.path.join(c.dir, "registry", "registry.yaml")
    text = open(path).read()
    at = "    address: 172.30.0.%d\n" % k
    ver = {n: c.admin(n, "/stats")["registry_version"] for n in (1, 2)}
    with open(path + ".new", "w") as f:
        f.write(text.replace(at, at + "    cluster: '%s'\n" % value.replace("'", "''"), 1))
    os.rename(path + ".new", path)
    deadline = time.time() + 10
    while time.time() < deadline:
        if all(c.admin(n, "/stats")["registry_version"] > v for n, v in ver.items()):
            return True
        time.sleep(0.1)
    return False


def unescape(v):
    return re.sub(r'\\(.)', lambda m: "\n" if m.group(1) == "n" else m.group(1), v)


def traffic_and_checks(c, prom):
    res.check(prom.wait_ready(), "a Prometheus server runs in node 1's netns (%s)" % PROM)
    res.check(set_cluster_name(c, 2, ODD_CLUSTER), "node 2's registry entry has cluster: %r" %
              ODD_CLUSTER)
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
    t_end = time.time()

    texts = {}
    for k in (1, 2):
        code, body = scrape(c, k)
        texts[k] = body
        res.check(code == "200" and "istio_tcp_connections_opened_total" in body,
                  "node %d: GET :15020/metrics answers 200 with istio_tcp_* (%s, %d "
                  "bytes)" % (k, code, len(body)))
        ok, why = promtool(body)
        res.check(ok, "node %d: promtool check metrics accepts it (%s)" % (k, why))
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
    odd = {unescape(lab.get("destination_cluster", "")) for n, lab, v in s1
           if n == "istio_tcp_connections_opened_total" and
           lab.get("destination_workload") == "n2-p1"}
    res.check(odd == {ODD_CLUSTER}, "a quote and a backslash in the registry (node 2's "
              "cluster %r) are escaped in destination_cluster and read back the same (%s); "
              "promtool accepted the exposition above" % (ODD_CLUSTER, odd))
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
    agent_metrics(c)
    promql(c, prom, t_end)


def agent_metrics(c):
    """The agent's own exposition on 15014."""
    code, body = scrape(c, 1, addr=AGENT_METRICS)
    res.check(code == "200" and "weft_agent_certificates_issued_total" in body,
              "the agent answers GET :15014/metrics (%s, %d bytes)" % (code, len(body)))
    ok, why = promtool(body)
    res.check(ok, "agent: promtool check metrics accepts it (%s)" % why)
    s = parse(body)
    # 2 nodes and 4 pods: at least one node SVID and one workload SVID each.
    res.check(value(s, "weft_agent_certificates_issued_total") >= 6,
              "agent: weft_agent_certificates_issued_total counts the SVIDs it signed (%d)" %
              value(s, "weft_agent_certificates_issued_total"))
    res.check(value(s, "weft_agent_watch_streams") == 2,
              "agent: weft_agent_watch_streams is 2, one per node (%d)" %
              value(s, "weft_agent_watch_streams"))
    for name in ("weft_agent_certificates_refused_total", "weft_agent_registry_version",
                 "weft_agent_build_info", "weft_agent_ca_certificate_expiry_timestamp_seconds",
                 "process_open_fds"):
        res.check(any(n == name for n, _, _ in s), "agent exports %s" % name)
    res.check(scrape(c, 1, "/nothing", addr=AGENT_METRICS)[0] == "404",
              "agent: other paths answer 404")


def promql(c, prom, t_end):
    """The same facts through a real Prometheus server's HTTP API."""
    res.check(prom.wait_scraped_after(t_end),
              "Prometheus scraped node 1, node 2 and the agent (up == 1) after the traffic")
    pair = 'source_workload="n1-p1",destination_workload="n2-p1"'
    for m in ("received_bytes_total", "sent_bytes_total"):
        got = by(prom.query('sum by (reporter) (istio_tcp_%s{%s})' % (m, pair)), "reporter")
        res.check(got == {"source": CONNS * REQ, "destination": CONNS * REQ},
                  "PromQL: sum by (reporter) (istio_tcp_%s{n1-p1 -> n2-p1}) is %d from both "
                  "reporters (%s)" % (m, CONNS * REQ, got))
    opened = by(prom.query('sum by (reporter) (istio_tcp_connections_opened_total{%s})' % pair),
                "reporter")
    closed = by(prom.query('sum by (reporter) (istio_tcp_connections_closed_total{%s})' % pair),
                "reporter")
    res.check(opened == closed == {"source": CONNS, "destination": CONNS},
              "PromQL: opened = closed = %d per reporter after the apps finished (%s, %s)" %
              (CONNS, opened, closed))
    deny = prom.query('istio_tcp_connections_failed_total{response_flags="DENY",'
                      'destination_workload="n2-p2",reporter="destination"}')
    res.check(deny is not None and list(deny.values()) == [1.0],
              "PromQL: one DENY series for the denied pair, value 1 (%s)" %
              list((deny or {}).values()))
    hs = by(prom.query('weft_tunnel_handshake_seconds_count{job="weftd"}'), "instance")
    ok = by(prom.query('sum by (instance) (weft_tunnels_opened_total{result="ok"})'),
            "instance")
    res.check(hs and hs == ok and hs.get("172.30.0.1:15020", 0) >= 1,
              "PromQL: each node's handshake histogram count equals its tunnels opened "
              "(%s vs %s)" % (hs, ok))
    issued = prom.query('weft_agent_certificates_issued_total')
    watches = prom.query('weft_agent_watch_streams')
    res.check(bool(issued) and list(issued.values())[0] >= 6 and bool(watches) and
              list(watches.values()) == [2.0],
              "PromQL: the agent's certificates issued (%s) and Watch streams (%s)" %
              (list((issued or {}).values()), list((watches or {}).values())))
    lag = prom.query('weft_registry_version{job="weftd"} - on() group_left '
                     'weft_agent_registry_version')
    res.check(bool(lag) and set(lag.values()) == {0.0} and len(lag) == 2,
              "PromQL: both nodes are on the agent's registry version (%s)" %
              sorted((lag or {}).values()))


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
