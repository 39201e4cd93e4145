# SPDX-License-Identifier: Apache-2.0
"""Transparent capture (issue 3 item 8): unmodified apps talk across nodes.

2 nodes x 2 pods. python3 http.server (which knows nothing about weft) serves
a distinct page in n1-p1, n2-p1 and n2-p2; curl in n1-p2 fetches it by pod IP
across nodes and 40 times by the VIP of svc-p1 (10.96.0.1:80, endpoints
n1-p1 and n2-p1); socat in n1-p2 sends a line to an echo server in n2-p1 and
half-closes at once. Checks: every request gets 200 and the page of the server
that answered, both VIP endpoints get traffic (counted from the bodies and
cross-checked with each server's own request log), one `connection complete`
line per connection on the source node with the client's identity and the
destination workload, and one tunnel (client identity -> node2) with
TLS_AES_256_GCM_SHA384 that carried exactly the cross-node connections.
The source address the server sees must be the client pod's (DESIGN's goal:
the original pod IP).
"""
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from clusterlib import ECHO_SERVER, Cluster, Results, require_root  # noqa: E402

NAME = "dpa"
TD = "spiffe://cluster.local"
CIPHER = "TLS_AES_256_GCM_SHA384"
VIP_REQUESTS = 40
SERVERS = ("n1-p1", "n2-p1", "n2-p2")
CLIENT = "n1-p2"
CLIENT_ID = TD + "/ns/default/sa/sa-" + CLIENT
# http.server's access log: '10.244.1.2 - - [date] "GET / HTTP/1.1" 200 -'
HIT = re.compile(r'^(\S+) - - \[[^\]]*\] "GET /[^"]*" (\d{3})', re.M)


def curl(c, url):
    """(http code, body) of one GET from the client pod."""
    p = c.run(CLIENT, ["curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}", url],
              check=False, timeout=15)
    out = p.stdout.decode(errors="replace")
    body, _, code = out.rpartition("\n")
    if p.returncode != 0:
        return "curl exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace").strip()), ""
    return code, body


def access_lines(log, direction):
    return [ln for ln in log.splitlines()
            if "connection complete" in ln and ("direction=%s " % direction) in ln]


def field(line, key):
    m = re.search(r"(?:^| )%s=(\S+)" % re.escape(key), line)
    return m.group(1) if m else None


def main():
    require_root()
    r = Results("test_dp_transparent")
    tmp = tempfile.mkdtemp(prefix="weft-dp-transparent-")
    try:
        with Cluster(NAME, nodes=2, pods=2) as c:
            ip = {p: c.ip(p) for p in SERVERS + (CLIENT,)}
            print("pods:", ip)

            # One distinct page per server; http.server logs each request to stderr.
            pages, logs = {}, {}
            for pod in SERVERS:
                d = os.path.join(tmp, pod)
                os.mkdir(d)
                pages[pod] = "weft transparent test: served by %s %s\n" % (
                    pod, secrets.token_hex(8))
                with open(os.path.join(d, "index.html"), "w") as f:
                    f.write(pages[pod])
                logs[pod] = os.path.join(tmp, pod + ".log")
                with open(logs[pod], "wb") as lf:
                    c.spawn(pod, ["/usr/bin/python3", "-u", "-m", "http.server", "8080",
                                  "--bind", "0.0.0.0", "--directory", d],
                            stdout=lf, stderr=subprocess.STDOUT)
            # A plain echo server next to n2-p1's http.server, for socat.
            c.py("n2-p1", ECHO_SERVER, ["9090", "n2-p1"])
            for pod in SERVERS:
                # Loopback is not captured: this probe never reaches weftd.
                r.check(c.wait_port(pod, "127.0.0.1", 8080), "http.server listens in %s" % pod)
            r.check(c.wait_port("n2-p1", "127.0.0.1", 9090), "echo server listens in n2-p1:9090")
            log1_start = len(c.weftd_log(1))
            log2_start = len(c.weftd_log(2))

            # --- by pod IP, across nodes ----------------------------------------
            for pod in ("n2-p1", "n2-p2"):
                code, body = curl(c, "http://%s:8080/" % ip[pod])
                r.check(code == "200", "%s -> %s:8080 by pod IP: HTTP %s" % (CLIENT, ip[pod],
                                                                             code))
                r.check(body == pages[pod], "%s -> %s: the body is %s's page (%r)" % (
                    CLIENT, pod, pod, body[:80]))

            # socat sends its input, half-closes (FIN right behind the data, before
            # the tunnel stream is even open) and prints the reply.
            marker = "weft-socat-%s" % secrets.token_hex(6)
            p = c.run(CLIENT, ["socat", "-t", "5", "-T", "10", "-",
                               "TCP:%s:9090" % ip["n2-p1"]], input=marker.encode(),
                      check=False, timeout=20)
            out = p.stdout.decode(errors="replace")
            r.check(p.returncode == 0 and out.startswith(marker + "|n2-p1|"),
                    "socat in %s -> %s:9090: data, half-close, the whole echo back (%r)" % (
                        CLIENT, ip["n2-p1"], out[:80]))

            # The app sees the client pod's own address (transparent delivery).
            time.sleep(0.2)
            seen = HIT.findall(open(logs["n2-p1"], errors="replace").read())
            src_seen = seen[0][0] if seen else None
            r.check(src_seen == ip[CLIENT], "n2-p1 saw the connection from the client pod's IP "
                    "%s (saw %s)" % (ip[CLIENT], src_seen))
            r.check(len(seen) == 1, "n2-p1's http.server logged exactly one request so far "
                    "(%d)" % len(seen))

            # --- by service VIP: svc-p1 = n1-p1 + n2-p1 ---------------------------
            by_body = {pages[p]: p for p in SERVERS}
            served = {p: 0 for p in SERVERS}
            bad = []
            for i in range(VIP_REQUESTS):
                code, body = curl(c, "http://10.96.0.1/")
                who = by_body.get(body)
                if code != "200" or who not in ("n1-p1", "n2-p1"):
                    bad.append((i, code, body[:80]))
                    continue
                served[who] += 1
            r.check(not bad, "%d/%d requests to 10.96.0.1:80 got 200 and a svc-p1 page%s" % (
                VIP_REQUESTS - len(bad), VIP_REQUESTS, (": failures %s" % bad[:5]) if bad
                else ""))
            print("  info VIP endpoints served: n1-p1 %d, n2-p1 %d, n2-p2 %d" % (
                served["n1-p1"], served["n2-p1"], served["n2-p2"]))
            r.check(served["n1-p1"] > 0 and served["n2-p1"] > 0,
                    "both svc-p1 endpoints got traffic (n1-p1 %d, n2-p1 %d)" % (
                        served["n1-p1"], served["n2-p1"]))
            # Round-robin over two endpoints: neither may be starved.
            r.check(min(served["n1-p1"], served["n2-p1"]) >= VIP_REQUESTS // 4,
                    "round-robin: each endpoint got at least a quarter of %d" % VIP_REQUESTS)

            # The servers' own logs agree with the bodies (the app really served them).
            time.sleep(0.3)
            hits = {p: HIT.findall(open(logs[p], errors="replace").read()) for p in SERVERS}
            expect = {"n1-p1": served["n1-p1"], "n2-p1": 1 + served["n2-p1"], "n2-p2": 1}
            for pod in SERVERS:
                r.check(len(hits[pod]) == expect[pod] and
                        all(code == "200" for _, code in hits[pod]),
                        "%s's http.server log has %d requests, all 200 (expected %d)" % (
                            pod, len(hits[pod]), expect[pod]))
            srcs = sorted({a for p in SERVERS for a, _ in hits[p]})
            r.check(srcs == [ip[CLIENT]], "every server (cross-node and same-node) saw only "
                    "the client pod's IP: %s" % ", ".join(srcs))

            # --- access log on the source node ------------------------------------
            total = 3 + VIP_REQUESTS
            deadline = time.time() + 3
            while True:
                out1 = [ln for ln in access_lines(c.weftd_log(1)[log1_start:], "outbound")
                        if field(ln, "src_identity") == CLIENT_ID]
                if len(out1) >= total or time.time() > deadline:
                    break
                time.sleep(0.1)
            r.check(len(out1) == total, "node1 logged one outbound `connection complete` per "
                    "connection from %s: %d of %d" % (CLIENT, len(out1), total))
            per_dst = {}
            for ln in out1:
                per_dst[field(ln, "dst_workload")] = per_dst.get(field(ln, "dst_workload"), 0) + 1
            print("  info node1 access log, per dst_workload: %s" % per_dst)
            want = {"default/n2-p1": 2 + served["n2-p1"], "default/n2-p2": 1,
                    "default/n1-p1": served["n1-p1"]}
            r.check(per_dst == want, "access-log dst_workload counts match the servers %s" % want)
            r.check(all((field(ln, "src") or "").startswith(ip[CLIENT] + ":") for ln in out1),
                    "every such line has src=%s:<port>" % ip[CLIENT])
            r.check(all(field(ln, "response_flags") == "-" and "error=" not in ln
                        for ln in out1), "none of them has response_flags or an error")
            r.check(all(int(field(ln, "bytes_received") or 0) >= len(pages["n2-p1"])
                        for ln in out1 if ":9090 " not in ln),
                    "every HTTP line counts at least the page size received")
            r.check([field(ln, "bytes_sent") for ln in out1 if ":9090 " in ln] ==
                    [str(len(marker))], "the socat line counts its %d bytes sent" % len(marker))
            if out1:
                print("  info e.g.:", out1[0].split("weftd: ", 1)[-1])

            # The destination node logs the inbound side of each cross-node connection.
            cross = 3 + served["n2-p1"]
            deadline = time.time() + 3
            while True:
                in2 = [ln for ln in access_lines(c.weftd_log(2)[log2_start:], "inbound")
                       if field(ln, "src_identity") == CLIENT_ID]
                if len(in2) >= cross or time.time() > deadline:
                    break
                time.sleep(0.1)
            r.check(len(in2) == cross, "node2 logged one inbound `connection complete` per "
                    "cross-node connection: %d of %d" % (len(in2), cross))
            r.check(all(re.fullmatch(re.escape(ip[CLIENT]) + r":\d+", field(ln, "src") or "")
                        for ln in in2),
                    "node2's inbound lines give the client address as src=%s:<port> (%s)" % (
                        ip[CLIENT], field(in2[0], "src") if in2 else None))

            # --- tunnels ----------------------------------------------------------
            tunnels = c.admin(1, "/tunnels")
            print("  info node1 /tunnels:", tunnels)
            mine = [t for t in tunnels if t.get("source") == CLIENT_ID]
            r.check(len(mine) == 1, "node1 has exactly one tunnel keyed by %s (%d)" % (
                CLIENT_ID, len(mine)))
            t = mine[0] if mine else {}
            r.check(t.get("node") == "node2" and t.get("peer") == "172.30.0.2:15008",
                    "that tunnel goes to node2 at 172.30.0.2:15008 (%s, %s)" % (
                        t.get("node"), t.get("peer")))
            r.check(t.get("cipher") == CIPHER, "that tunnel uses %s (%r)" % (
                CIPHER, t.get("cipher")))
            r.check(t.get("state") == "ready", "that tunnel is ready (%r)" % t.get("state"))
            r.check(t.get("streams_total") == cross,
                    "it carried every cross-node connection as a stream: %s of %d" % (
                        t.get("streams_total"), cross))
            r.check(not [x for x in tunnels if x.get("node") == "node1"],
                    "no tunnel to node1 itself (same-node traffic takes the fast path)")
            up = [ln for ln in c.weftd_log(1)[log1_start:].splitlines()
                  if re.search(r"tunnel %s -> node node2 .* up: " % re.escape(CLIENT_ID), ln)]
            r.check(len(up) == 1, "node1 logged exactly one tunnel handshake for that key "
                    "(%d)" % len(up))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    r.done()


if __name__ == "__main__":
    main()
