#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""What a Prometheus scrape costs weftd (issue 9 item 1; `make bench`).

On one 2-node weft cluster (tests/cluster/cluster.sh), node 1's weftd is
given SERIES istio_tcp series for real: the registry gets SERIES/2 extra
workloads on node 2 (addresses no pod has), and the client pod n1-p1 opens
one connection to each. weftd tunnels each to node 2, which answers 400
(not a pod of that node), so node 1 keeps two series per destination
workload (the opening's, response_flags "-", and the failure's, "CONNECT"),
as it would for that many real peers. Then:

  - scrape cost at 1,000 and 10,000 series: weftd's CPU time per scrape
    (the sum of its threads' /proc/<pid>/task/*/schedstat run time, in ns,
    over SCRAPES back-to-back scrapes with curl from node 1's netns) and the
    size of the exposition;
  - the data path's latency with and without scrapes: loadgen at 1,000 RPS
    over 16 connections n1-p1 -> n2-p1 for DUR seconds, once with a curl
    scrape of node 1's 15020 every second and once without, alternated
    REPS times; medians of p50/p99/p99.9.

  bench/scrape.py [--series 1000,10000] [--reps 3] [--dur 20] [--out FILE]
"""
import argparse
import atexit
import json
import os
import signal
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as bench  # noqa: E402  (cluster helpers of the data-plane benchmark)

NAME = "bscr"
SCRAPES = 30


def schedstat_ns(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
            total += int(f.read().split()[0])
    return total


def add_workloads(n, start):
    """Append workloads x<start>..x<start+n-1> on node 2 to the registry, at
    10.77.0.0/16 + index, and wait until node 1's weftd has them."""
    path = os.path.join(bench.RUN, NAME, "registry", "registry.yaml")
    text = open(path).read()
    head, sep, tail = text.partition("\nservices:")
    extra = "".join("  - name: x%d\n    namespace: bench\n    service_account: sa-x\n"
                    "    node: node2\n    ips: [10.77.%d.%d]\n" % (i, i // 250, 1 + i % 250)
                    for i in range(start, start + n))
    with open(path + ".new", "w") as f:
        f.write(head.rstrip("\n") + "\n" + extra + sep + tail)
    before = admin_stats()["registry_version"]
    os.rename(path + ".new", path)
    deadline = time.monotonic() + 60
    while admin_stats()["registry_version"] <= before:
        if time.monotonic() > deadline:
            raise RuntimeError("node 1 did not get the registry with %d more workloads" % n)
        time.sleep(0.2)


def admin_stats():
    p = bench.run_in(NAME, "n1", ["curl", "-sS", "--max-time", "5",
                                  "http://127.0.0.1:15000/stats"])
    return json.loads(p.stdout)


CONNECT_ALL = r"""
import select, socket, sys
start, n = int(sys.argv[1]), int(sys.argv[2])
addrs = [("10.77.%d.%d" % (i // 250, 1 + i % 250), 9000) for i in range(start, start + n)]
done = 0
while addrs:
    batch, addrs = addrs[:64], addrs[64:]
    socks = []
    for a in batch:
        s = socket.socket(); s.setblocking(False)
        try:
            s.connect(a)
        except BlockingIOError:
            pass
        socks.append(s)
    for s in socks:
        # weftd accepts, tunnels, gets the 400 and closes: wait for that end.
        select.select([s], [], [], 5)
        try:
            s.recv(1)
        except OSError:
            pass
        s.close()
        done += 1
print(done)
"""


def grow_series(want, made):
    """Make node 1 hold about `want` series; `made` extra workloads exist.
    Each failed connection to a new destination makes two: its opening's
    (response_flags "-") and its failure's ("CONNECT"). Returns the new
    number of extra workloads."""
    n = (want - series_now()) // 2
    if n <= 0:
        return made
    add_workloads(n, made)
    p = bench.run_in(NAME, "n1-p1", ["/usr/bin/python3", "-c", CONNECT_ALL, str(made), str(n)],
                     timeout=600)
    bench.log("  %s connections to new destinations done" % p.stdout.strip())
    time.sleep(1.0)
    return made + n


def scrape_once(addr="172.30.0.1:15020"):
    p = bench.run_in(NAME, "n1", ["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w",
                                  "%{size_download}", "http://%s/metrics" % addr])
    return int(p.stdout)


def series_now():
    p = bench.run_in(NAME, "n1", ["sh", "-c", "curl -sS --max-time 10 "
                                  "http://172.30.0.1:15020/metrics | "
                                  "grep '^weft_metrics_series '"])
    return int(float(p.stdout.split()[-1]))


def scrape_cost(pid):
    sizes, cpu = [], []
    for _ in range(SCRAPES):
        t0 = schedstat_ns(pid)
        sizes.append(scrape_once())
        cpu.append((schedstat_ns(pid) - t0) / 1e6)
    return {"scrapes": SCRAPES, "bytes": statistics.median(sizes),
            "cpu_ms_median": statistics.median(cpu), "cpu_ms_max": max(cpu)}


class Scraper(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.n = 0

    def run(self):
        while not self.stop.is_set():
            t = time.monotonic()
            scrape_once()
            self.n += 1
            self.stop.wait(max(0.0, 1.0 - (time.monotonic() - t)))


def loadgen(server_ip, dur):
    cmd = [bench.LOADGEN, "rr", "--http", "-d", str(dur), "-w", "2", "--drain", "0.5", "-c",
           "16", "-R", "1000", "%s:%d" % (server_ip, bench.APP_PORT)]
    p = bench.run_in(NAME, "n1-p1", cmd, timeout=dur + 60)
    r = json.loads(p.stdout)
    r.pop("histogram_us", None)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--series", default="1000,10000")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dur", type=float, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    targets = [int(x) for x in a.series.split(",")]
    out = {"series": {}, "latency": {}}
    try:
        bench.cluster_up(NAME, 2, True)
        ips = dict((p, ip) for p, _, ip in bench.pods_of(NAME))
        logf = open(os.devnull, "wb")
        bench.spawn_in(NAME, "n2-p1", [bench.LOADGEN, "server", "-p", str(bench.APP_PORT)],
                       logf)
        bench.wait_listen(NAME, "n2-p1", bench.APP_PORT)
        pid = int(open(os.path.join(bench.RUN, NAME, "n1", "weftd.pid")).read().split()[0])
        loadgen(ips["n2-p1"], 1)        # the tunnel and the app's series
        made = 0
        for want in targets:
            made = grow_series(want, made)
            got = series_now()
            r = scrape_cost(pid)
            r["series_held"] = got
            out["series"][str(want)] = r
            bench.log("%d series (weftd holds %d): a scrape is %.1f MB, weftd CPU %.2f ms "
                      "median, %.2f ms max of %d" % (want, got, r["bytes"] / 1e6,
                                                     r["cpu_ms_median"], r["cpu_ms_max"],
                                                     SCRAPES))
        lat = {"without": [], "with": []}
        for rep in range(a.reps):
            for mode in (("without", "with") if rep % 2 == 0 else ("with", "without")):
                sc = None
                if mode == "with":
                    sc = Scraper()
                    sc.start()
                r = loadgen(ips["n2-p1"], a.dur)
                if sc:
                    sc.stop.set()
                    sc.join()
                    r["scrapes"] = sc.n
                lat[mode].append(r)
                lu = r["latency_us"]
                bench.log("rep %d %s scrapes: p50 %.0f p99 %.0f p99.9 %.0f us%s" % (
                    rep, mode, lu["p50"], lu["p99"], lu["p999"],
                    " (%d scrapes)" % sc.n if sc else ""))
        for mode, rs in lat.items():
            out["latency"][mode] = {k: statistics.median(r["latency_us"][k] for r in rs)
                                    for k in ("p50", "p99", "p999")}
            out["latency"][mode]["runs"] = rs
        out["latency"]["series"] = series_now()
    finally:
        bench._cleanup()
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    print(json.dumps({"series": out["series"],
                      "latency": {m: {k: v for k, v in d.items() if k != "runs"}
                                  for m, d in out["latency"].items() if isinstance(d, dict)}},
                     indent=1))


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    atexit.register(bench._cleanup)
    signal.signal(signal.SIGTERM, bench._on_signal)
    signal.signal(signal.SIGINT, bench._on_signal)
    main()
