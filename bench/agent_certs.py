# SPDX-License-Identifier: Apache-2.0
"""CreateCertificate throughput of weft-agent, and its memory.

Starts a real agent (tests/integration/lib/agentlib.py), then measures:
  - certificates/s over one HTTP/2 connection (64 calls in flight),
  - certificates/s with a new TLS connection per call (8 client threads),
  - agent RSS idle, and after N certificates.
CSRs are made before the clock starts, so the client's key generation is
not counted. Run: /usr/bin/python3 bench/agent_certs.py [N]
"""
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "integration", "lib"))
from agentlib import TD, TOKENS, Agent, make_csr  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 10000
IDENT = "spiffe://%s/ns/default/sa/client" % TD


def rss_kb(pid):
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_s(pid):
    f = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def main():
    print("making %d CSRs..." % (N + 2000), flush=True)
    csrs = [make_csr(IDENT)[1] for _ in range(N + 2000)]
    with Agent() as agent:
        pid = agent.proc.pid
        time.sleep(0.5)
        idle = rss_kb(pid)

        ch = agent.channel()
        agent.create(ch, csrs[0], identity=IDENT, token=TOKENS["node1"])
        c0, t0 = cpu_s(pid), time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=64) as ex:
            futs = [ex.submit(agent.create, ch, c, IDENT, 0, TOKENS["node1"], 60)
                    for c in csrs[:N]]
            ok = sum(1 for f in futs if len(f.result()) >= 2)
        dt, dc = time.time() - t0, cpu_s(pid) - c0
        ch.close()
        after = rss_kb(pid)
        print("one HTTP/2 connection: %d certificates in %.2fs = %.0f/s; agent CPU %.0f us/cert"
              % (ok, dt, ok / dt, dc / ok * 1e6))

        m = 1000
        def fresh(csr):
            c = agent.channel()
            try:
                return agent.create(c, csr, identity=IDENT, token=TOKENS["node1"], timeout=60)
            finally:
                c.close()
        c0, t0 = cpu_s(pid), time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
            ok2 = sum(1 for r in ex.map(fresh, csrs[N:N + m]) if len(r) >= 2)
        dt, dc = time.time() - t0, cpu_s(pid) - c0
        print("new TLS connection per call: %d certificates in %.2fs = %.0f/s; agent CPU %.0f us/cert"
              % (ok2, dt, ok2 / dt, dc / ok2 * 1e6))
        time.sleep(0.5)
        print("agent RSS: idle %.1f MB, after %d certificates %.1f MB, after %d more on new "
              "connections %.1f MB" % (idle / 1024, N, after / 1024, m, rss_kb(pid) / 1024))


main()
