#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""The data-plane benchmark of DESIGN §8/§10 (`make bench`, issue 4).

Measures, side by side in one run and on the same simulated cluster topology
(tests/cluster/cluster.sh: client pod n1-p1 on node 1, server pod n2-p1 on
node 2), these data planes:

  nomesh  no mesh                         cluster.sh up --no-weft
  relay   plain relay pair                HAProxy TCP mode, one per pod, no TLS
  weft    weft node daemons               cluster.sh up --weftd
  wsc     weft per-pod sidecars           cluster.sh up --weftd-sidecar
  hamtls  HAProxy mTLS sidecars           the relay pair plus TLS 1.3 mutual auth

Each (repetition, data plane) block builds its cluster from scratch under
its own name and tears it down afterwards, also on failure or a signal; the
data planes are interleaved, in a rotated order per repetition.

Workloads per block, all driven by build/bench/loadgen (HTTP/1.1, 1 KB
request, 1 KB response) and iperf3 from the client pod: fixed-rate open loop
at 1,000 RPS over 16 connections, a rate sweep, closed-loop req/s, connection
churn (a new connection per request, 8 concurrent), bulk (iperf3 1 and 8
streams), and the mesh processes' CPU (utime+stime from /proc) and RSS.
A separate phase measures the idle RSS of the mesh processes against pods per
node. Output: bench/results/<timestamp>/{results.json,report.md,*.png}
(report.py writes the report and charts, and can redo them from results.json).

  bench/run.py [--quick] [--reps N] [--planes nomesh,relay,weft,wsc,hamtls]
               [--scale 2,20,100] [--out DIR] [--no-charts]
"""
import argparse
import atexit
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import report  # noqa: E402

BUILD = os.environ.get("WEFT_BUILD", os.path.join(ROOT, "build"))
CLUSTER = os.path.join(ROOT, "tests", "cluster", "cluster.sh")
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
DATAPLANES = os.path.join(HERE, "dataplanes")
RUN = os.environ.get("WEFT_TEST_RUN", "/run/weft-test")

APP_PORT = 9000
IPERF_PORT = 5201
CLK_TCK = os.sysconf("SC_CLK_TCK")
# "Idle" memory is read this long after the last traffic: weftd gives its
# ECC point cache, receive pool and free heap back to the kernel after 2-4 s
# without handshakes or input (daemon/main.c, WEFTD_TRIM_MS). HAProxy keeps
# what it has allocated; waiting longer changes nothing there.
IDLE_S = 4.5
IDLE_HAPROXY_S = 0.5
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# Data planes in their canonical order; the cluster name is theirs alone so a
# leftover of one can never be mistaken for another.
# "sidecar": weftd runs in every pod (`weftd --mode sidecar`), not per node;
# "scale_cluster": the cluster name of its RSS-against-pods phase; "scale_max":
# the most pods per node it is scaled to (200 sidecar weftds take ~3 minutes
# to start, beyond the full run's 20: its memory is linear in pods anyway).
PLANES = [
    {"key": "nomesh", "name": "no mesh", "cluster": "bnm", "weft": False, "haproxy": None},
    {"key": "relay", "name": "plain relay pair (HAProxy TCP)", "cluster": "brp", "weft": False,
     "haproxy": "plain"},
    {"key": "weft", "name": "weft node daemons", "cluster": "bwn", "weft": True, "haproxy": None,
     "scale_cluster": "bsw"},
    {"key": "wsc", "name": "weft per-pod sidecars", "cluster": "bsc", "weft": True,
     "sidecar": True, "haproxy": None, "scale_cluster": "bscs", "scale_max": 20},
    {"key": "hamtls", "name": "HAProxy mTLS sidecars", "cluster": "bhm", "weft": False,
     "haproxy": "mtls"},
]
NOT_MEASURED = []

# Durations in seconds. quick: one repetition, < 3 minutes in all; full: three
# repetitions, the 20 s at 1,000 RPS, < 20 minutes.
PROFILES = {
    "quick": {"reps": 1, "warmup": 0.5, "rr_s": 2, "sweep": [1000, 8000], "sweep_s": 1,
              "max_s": 1.5, "churn_s": 1.5, "iperf_s": 1, "conns": 1000, "conns_s": 1,
              "scale": [2, 20], "crosscheck_s": 1.5},
    "full": {"reps": 3, "warmup": 0.5, "rr_s": 20, "sweep": [500, 2000, 4000, 8000],
             "sweep_s": 3, "max_s": 3, "churn_s": 3, "iperf_s": 2, "conns": 1000, "conns_s": 2,
             "scale": [2, 20, 100], "crosscheck_s": 4},
}


def log(*a):
    print("bench:", *a, file=sys.stderr, flush=True)


# --- cleanup: clusters and processes we made, also after a failure or signal -----
_live_clusters = set()
_live_procs = []


def _cleanup():
    for p in list(_live_procs):
        stop_proc(p)
    for name in list(_live_clusters):
        cluster_down(name)


def _on_signal(sig, _frame):
    log("signal %d: tearing down" % sig)
    _cleanup()
    sys.exit(128 + sig)


def stop_proc(p, timeout=3):
    if p in _live_procs:
        _live_procs.remove(p)
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# --- cluster -----------------------------------------------------------------------
def cluster_sh(*args, timeout=300, check=True):
    p = subprocess.run([CLUSTER] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("cluster.sh %s failed (%d):\n%s%s" % (
            " ".join(map(str, args)), p.returncode, p.stdout[-2000:], p.stderr[-3000:]))
    return p.stdout


def cluster_up(name, pods, weft, sidecar=False):
    cluster_down(name)     # a leftover of a killed run
    _live_clusters.add(name)
    t = time.monotonic()
    cluster_sh("up", "--name", name, "--nodes", 2, "--pods", pods,
               ("--weftd-sidecar" if sidecar else "--weftd") if weft else "--no-weft",
               timeout=600)
    return time.monotonic() - t


def cluster_down(name):
    _live_clusters.discard(name)
    subprocess.run([CLUSTER, "down", "--name", name], capture_output=True, timeout=300)


def netns(cluster, target):
    return "%s-%s" % (cluster, target)


def pods_of(cluster):
    """[(pod, node number, ip)] from the cluster's pods.tsv."""
    out = []
    with open(os.path.join(RUN, cluster, "pods.tsv")) as f:
        for line in f:
            c = line.rstrip("\n").split("\t")
            m = re.fullmatch(r"n(\d+)-p\d+", c[1]) if len(c) >= 4 else None
            if m:
                out.append((c[1], int(m.group(1)), c[3]))
    return out


def run_in(cluster, target, cmd, timeout=60, check=True):
    p = subprocess.run(["ip", "netns", "exec", netns(cluster, target)] + cmd,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("%s in %s: exit %d: %s" % (" ".join(cmd), target, p.returncode,
                                                      (p.stderr or p.stdout)[-1500:]))
    return p


def spawn_in(cluster, target, cmd, logfile):
    # `ip netns exec` execs the command, so the pid is the program's own.
    p = subprocess.Popen(["ip", "netns", "exec", netns(cluster, target)] + cmd,
                         stdout=logfile, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    _live_procs.append(p)
    return p


def wait_listen(cluster, target, port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = run_in(cluster, target, ["ss", "-Htln", "sport = :%d" % port], check=False)
        if p.stdout.strip():
            return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on %s:%d after %ds" % (target, port, timeout))


# --- /proc: CPU and RSS of the mesh processes ------------------------------------------
def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK     # utime, stime (fields 14, 15)


def rss_kb(pid):
    with open("/proc/%d/statm" % pid) as f:
        return int(f.read().split()[1]) * PAGE_KB


def cpu_sample(mesh):
    return {str(pid): cpu_s(pid) for pid, _ in mesh}


def cpu_delta(mesh, before):
    """Per node: CPU seconds used since before."""
    after = cpu_sample(mesh)
    per_node = {}
    for pid, node in mesh:
        per_node[node] = per_node.get(node, 0.0) + after[str(pid)] - before[str(pid)]
    return per_node


def pss_per_node(mesh):
    """Proportional set size: shared pages (libc, libssl) split between the
    processes that map them, so a sum over many sidecars does not count them
    once per process as summed RSS does."""
    per_node = {}
    for pid, node in mesh:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    per_node[node] = per_node.get(node, 0) + int(line.split()[1])
                    break
    return per_node


def rss_per_node(mesh):
    per_node = {}
    for pid, node in mesh:
        per_node[node] = per_node.get(node, 0) + rss_kb(pid)
    return per_node


class RssSampler:
    """Peak summed RSS of the mesh processes while a workload runs."""

    def __init__(self, mesh, every=0.1):
        self.mesh, self.every, self.peak = mesh, every, 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, sum(rss_per_node(self.mesh).values()))
            except OSError:
                pass
            self._stop.wait(self.every)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()


# --- data planes ---------------------------------------------------------------------------
class Block:
    """One data plane on its own fresh cluster: setup, workloads, teardown."""

    def __init__(self, plane, prof, outdir, pods=2, name=None):
        self.plane, self.prof, self.outdir, self.pods = plane, prof, outdir, pods
        self.name = name or plane["cluster"]
        self.procs = []
        self.mesh = []          # [(pid, node)]
        self.logdir = os.path.join(outdir, "logs", self.name)
        os.makedirs(self.logdir, exist_ok=True)

    def log(self, what):
        return open(os.path.join(self.logdir, what + ".log"), "ab")

    def up(self):
        self.up_s = cluster_up(self.name, self.pods, self.plane["weft"],
                               self.plane.get("sidecar", False))
        self.pods_list = pods_of(self.name)
        self.ips = dict((p, ip) for p, _, ip in self.pods_list)
        self.server_ip = self.ips["n2-p1"]
        for path, k in weftd_files(self.name, "weftd.pid"):
            with open(path) as f:
                self.mesh.append((int(f.read().split()[0]), k))
        if self.plane["haproxy"]:
            self.start_haproxy(self.plane["haproxy"])
        return self

    def down(self):
        for src, _ in weftd_files(self.name, "weftd.log"):
            rel = os.path.relpath(os.path.dirname(src), os.path.join(RUN, self.name))
            shutil.copy(src, os.path.join(self.logdir, "weftd-%s.log" % rel.replace("/", "-")))
        for p in self.procs:
            stop_proc(p)
        self.procs = []
        cluster_down(self.name)

    def start_haproxy(self, mode):
        """One HAProxy per pod in its netns, and the capture rules (capture.nft)."""
        d = os.path.join(self.outdir, "haproxy")
        os.makedirs(d, exist_ok=True)
        certs = os.path.join(d, "certs")
        if mode == "mtls" and not os.path.exists(os.path.join(certs, "server.pem")):
            subprocess.run([os.path.join(DATAPLANES, "mkcerts.sh"), certs], check=True)
        tls_c = tls_s = ""
        if mode == "mtls":
            tls_c = "ssl crt %s/client.pem ca-file %s/ca.pem verify required" % (certs, certs)
            tls_s = "ssl crt %s/server.pem ca-file %s/ca.pem verify required" % (certs, certs)
        cfg = os.path.join(d, "%s.cfg" % mode)
        with open(os.path.join(DATAPLANES, "haproxy-sidecar.cfg")) as f:
            text = (f.read().replace("@NBTHREAD@", "1").replace("@CLIENT_TLS@", tls_c)
                    .replace("@SERVER_TLS@", tls_s))
        with open(cfg, "w") as f:
            f.write(text)
        nft = os.path.join(d, "capture.nft")
        with open(os.path.join(DATAPLANES, "capture.nft")) as f:
            text = f.read().replace("@UID@", str(haproxy_uid()))
        with open(nft, "w") as f:
            f.write(text)
        started = []
        for pod, node, _ in self.pods_list:
            run_in(self.name, pod, ["nft", "-f", nft])
            p = spawn_in(self.name, pod, ["haproxy", "-db", "-f", cfg], self.log("haproxy-" + pod))
            self.procs.append(p)
            started.append((p, node, pod))
        for p, node, pod in started:
            wait_listen(self.name, pod, 15006)
            if p.poll() is not None:
                raise RuntimeError("haproxy in %s exited (%d); see %s" % (pod, p.returncode,
                                                                          self.logdir))
            self.mesh.append((p.pid, node))

    def stop_haproxy(self):
        for p in self.procs:
            stop_proc(p)
        self.procs, self.mesh = [], []
        for pod, _, _ in self.pods_list:
            run_in(self.name, pod, ["nft", "delete", "table", "ip", "bench_capture"], check=False)

    def start_apps(self):
        self.procs.append(spawn_in(self.name, "n2-p1", [LOADGEN, "server", "-p", str(APP_PORT)],
                                   self.log("app-server")))
        # A server on node 1 too, for tunnels in the other direction.
        self.procs.append(spawn_in(self.name, "n1-p1", [LOADGEN, "server", "-p", str(APP_PORT)],
                                   self.log("app-server-n1")))
        self.procs.append(spawn_in(self.name, "n2-p1", ["iperf3", "-s", "-p", str(IPERF_PORT)],
                                   self.log("iperf3-server")))
        wait_listen(self.name, "n2-p1", APP_PORT)
        wait_listen(self.name, "n2-p1", IPERF_PORT)

    # --- workloads --------------------------------------------------------------------
    def loadgen(self, mode, *opts, dur=1.0, warm=None):
        warm = self.prof["warmup"] if warm is None else warm
        # 0.5 s drain: an answer later than that is far past any p99.9 here.
        cmd = [LOADGEN, mode, "--http", "-d", str(dur), "-w", str(warm), "--drain", "0.5"] + \
            [str(o) for o in opts] + ["%s:%d" % (self.server_ip, APP_PORT)]
        before = cpu_sample(self.mesh)
        t = time.monotonic()
        with RssSampler(self.mesh) as rs:
            p = run_in(self.name, "n1-p1", cmd, timeout=dur + warm + 30, check=False)
        wall = time.monotonic() - t
        if p.returncode != 0:
            raise RuntimeError("loadgen %s: exit %d: %s" % (mode, p.returncode, p.stderr[-800:]))
        r = json.loads(p.stdout)
        r.pop("histogram_us", None)
        cpu = cpu_delta(self.mesh, before)
        r["mesh"] = {"cpu_s": sum(cpu.values()), "cpu_s_per_node": cpu, "wall_s": wall,
                     "rss_peak_kb": rs.peak}
        return r

    def probe(self, timeout=15):
        """The first connections through a fresh data plane (a weft tunnel is set up
        by the first one): retried until the path works."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.loadgen("churn", "-c", 1, "-R", 20, dur=0.5, warm=0)
            except RuntimeError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("data plane %s does not carry traffic: %s" % (
                        self.plane["key"], e))
                time.sleep(0.2)

    def tunnels(self):
        """Tunnel set-up times from weftd's log: the probe's tunnel (the
        first of a fresh cluster), then three more opened one after the other
        by other identities (n1-p2 -> node 2, n2-pJ -> node 1), by when
        wolfSSL's ECC tables are warm. In the order they came up."""
        for src, dst in (("n1-p2", "n2-p1"), ("n2-p1", "n1-p1"), ("n2-p2", "n1-p1")):
            cmd = [LOADGEN, "churn", "--http", "-c", "1", "-R", "20", "-d", "0.2", "-w", "0",
                   "--drain", "0.5", "%s:%d" % (self.ips[dst], APP_PORT)]
            p = run_in(self.name, src, cmd, timeout=30, check=False)
            if p.returncode != 0:
                log("tunnel probe %s -> %s: exit %d" % (src, dst, p.returncode))
            time.sleep(0.1)
        return weft_handshake_ms(self.name)

    def iperf(self, streams):
        p = run_in(self.name, "n1-p1", ["iperf3", "-c", self.server_ip, "-p", str(IPERF_PORT),
                                        "-t", str(self.prof["iperf_s"]), "-P", str(streams),
                                        "-J"], timeout=self.prof["iperf_s"] + 30, check=False)
        try:
            j = json.loads(p.stdout)
        except ValueError:
            raise RuntimeError("iperf3: %s" % (p.stderr or p.stdout)[-800:])
        if "error" in j:
            raise RuntimeError("iperf3: %s" % j["error"])
        return {"gbps": j["end"]["sum_received"]["bits_per_second"] / 1e9,
                "retransmits": j["end"]["sum_sent"].get("retransmits")}

    def workloads(self):
        pr = self.prof
        res = {"up_s": self.up_s, "mesh_pids": len(self.mesh)}
        time.sleep(0.3)
        res["probe"] = self.probe()
        res["handshake_ms"] = self.tunnels() if self.plane["weft"] else None
        time.sleep(IDLE_S if self.plane["weft"] else IDLE_HAPROXY_S)
        res["rss_idle_kb"] = rss_per_node(self.mesh)
        res["rr"] = self.loadgen("rr", "-c", 16, "-R", 1000, dur=pr["rr_s"])
        res["sweep"] = {}
        for rate in pr["sweep"]:
            res["sweep"][str(rate)] = self.loadgen("rr", "-c", 16, "-R", rate, dur=pr["sweep_s"])
        res["max"] = self.loadgen("max", "-c", 16, dur=pr["max_s"])
        res["churn"] = self.loadgen("churn", "-c", 8, dur=pr["churn_s"])
        res["bulk1"] = self.iperf(1)
        res["bulk8"] = self.iperf(8)
        # Open connections: many mostly idle persistent connections, RSS at its peak.
        idle = sum(rss_per_node(self.mesh).values())
        c = self.loadgen("rr", "-c", pr["conns"], "-R", pr["conns"], dur=pr["conns_s"])
        c["rss_before_kb"] = idle
        res["conns"] = c
        return res


_haproxy_uid = None


def haproxy_uid():
    global _haproxy_uid
    if _haproxy_uid is None:
        import pwd
        _haproxy_uid = pwd.getpwnam("haproxy").pw_uid
    return _haproxy_uid


def weftd_files(cluster, what):
    """[(path, node number)] of what (weftd.pid, weftd.log) of every weftd in
    the cluster: one per node (nK/), or one per pod (sidecars, nK/sc/pJ/)."""
    out = []
    base = os.path.join(RUN, cluster)
    for d in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        m = re.fullmatch(r"n(\d+)", d)
        if not m:
            continue
        k = int(m.group(1))
        if os.path.exists(os.path.join(base, d, what)):
            out.append((os.path.join(base, d, what), k))
        sc = os.path.join(base, d, "sc")
        for p in sorted(os.listdir(sc)) if os.path.isdir(sc) else []:
            if re.fullmatch(r"p\d+", p) and os.path.exists(os.path.join(sc, p, what)):
                out.append((os.path.join(sc, p, what), k))
    return out


def weft_handshake_ms(cluster):
    """Tunnel set-up times weftd logged ('tunnel ... up: CIPHER, N us'), in ms,
    in the order they came up across every weftd of the cluster."""
    out = []
    for path, _ in weftd_files(cluster, "weftd.log"):
        try:
            with open(path, errors="replace") as f:
                for line in f:
                    m = re.search(r"^(\S+) .*tunnel .* up: .*?(\d+) us$", line.rstrip())
                    if m:
                        out.append((m.group(1), int(m.group(2)) / 1000.0))
        except OSError:
            pass
    return [ms for _, ms in sorted(out)]


def run_block(plane, prof, outdir, rep):
    b = Block(plane, prof, outdir)
    t = time.monotonic()
    try:
        b.up()
        b.start_apps()
        res = b.workloads()
        res.update({"rep": rep, "plane": plane["key"], "ok": True})
    except Exception as e:     # a failed block is reported, the others still run
        log("%s rep %d FAILED: %s" % (plane["key"], rep, e))
        res = {"rep": rep, "plane": plane["key"], "ok": False, "error": str(e)[-2000:]}
    finally:
        b.down()
    res["block_s"] = time.monotonic() - t
    return res


def crosscheck(prof, outdir):
    """loadgen `max --http` against wrk (an independent tool), same server, same
    connections, no mesh: req/s and median latency."""
    plane = PLANES[0]
    b = Block(plane, prof, outdir, name="bxc")
    out = {}
    try:
        b.up()
        b.start_apps()
        d = prof["crosscheck_s"]
        lg = b.loadgen("max", "-c", 16, "-q", 16, "-s", 1024, dur=d)
        url = "http://%s:%d/1024" % (b.server_ip, APP_PORT)
        p = run_in(b.name, "n1-p1", ["wrk", "-t1", "-c16", "-d%ds" % max(1, round(d)),
                                     "--latency", url], timeout=d + 30)
        w = parse_wrk(p.stdout)
        out = {"loadgen": {"req_s": lg["rate_achieved"], "p50_us": lg["latency_us"]["p50"],
                           "p99_us": lg["latency_us"]["p99"], "req_bytes": lg["req_bytes"]},
               "wrk": w, "wrk_raw": p.stdout[-2000:]}
    except Exception as e:
        log("cross-check FAILED: %s" % e)
        out = {"error": str(e)[-1000:]}
    finally:
        b.down()
    return out


def parse_wrk(text):
    def us(v, unit):
        return float(v) * {"us": 1, "ms": 1e3, "s": 1e6}[unit]
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    r["req_s"] = float(m.group(1)) if m else None
    for pct, key in (("50", "p50_us"), ("99", "p99_us")):
        m = re.search(r"^\s+%s%%\s+([\d.]+)(us|ms|s)\s*$" % pct, text, re.M)
        r[key] = us(m.group(1), m.group(2)) if m else None
    return r


def scale_phase(prof, outdir, planes):
    """Idle summed RSS of the mesh processes per node against pods per node."""
    out = []
    for pods in prof["scale"]:
        if any(p["haproxy"] for p in planes):
            # One no-mesh cluster for both HAProxy variants: each variant's
            # processes are started from scratch and stopped before the next.
            b = Block(PLANES[0], prof, outdir, pods=pods, name="bsh")
            try:
                b.up()
                for plane in planes:
                    if not plane["haproxy"]:
                        continue
                    t = time.monotonic()
                    b.start_haproxy(plane["haproxy"])
                    start_s = time.monotonic() - t
                    time.sleep(IDLE_HAPROXY_S)
                    out.append({"plane": plane["key"], "pods": pods, "up_s": b.up_s,
                                "start_s": start_s, "procs": len(b.mesh),
                                "rss_kb": rss_per_node(b.mesh),
                                "pss_kb": pss_per_node(b.mesh)})
                    b.stop_haproxy()
            except Exception as e:
                log("scale %d pods (haproxy) FAILED: %s" % (pods, e))
                out.append({"plane": "haproxy", "pods": pods, "error": str(e)[-1000:]})
            finally:
                b.down()
        for plane in planes:
            if not plane["weft"] or pods > plane.get("scale_max", pods):
                continue
            # Sidecars: every weftd of a node summed, like HAProxy's.
            b = Block(plane, prof, outdir, pods=pods, name=plane["scale_cluster"])
            try:
                b.up()
                time.sleep(IDLE_S)
                out.append({"plane": plane["key"], "pods": pods, "up_s": b.up_s,
                            "procs": len(b.mesh), "rss_kb": rss_per_node(b.mesh),
                            "pss_kb": pss_per_node(b.mesh)})
            except Exception as e:
                log("scale %d pods (%s) FAILED: %s" % (pods, plane["key"], e))
                out.append({"plane": plane["key"], "pods": pods, "error": str(e)[-1000:]})
            finally:
                b.down()
        log("scale: %d pods per node done" % pods)
    return out


# --- machine and versions --------------------------------------------------------------------
def sh(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10,
                              shell=isinstance(cmd, str)).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def dpkg_version(pkg):
    return sh(["dpkg-query", "-W", "-f=${Version}", pkg]) or None


def machine():
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = ""
    with open("/proc/meminfo") as f:
        mem = f.readline().split()[1]
    rev = sh(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    dirty = sh(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"])
    return {
        "nproc": os.cpu_count(), "cpu_model": model, "kernel": platform.release(),
        "mem_gib": round(int(mem) / 1048576, 1), "os": sh("sed -n 's/^PRETTY_NAME=//p' "
                                                          "/etc/os-release").strip('"'),
        "versions": {
            "weft": rev + ("-dirty" if dirty else ""),
            "haproxy": (sh(["haproxy", "-v"]).splitlines() or [""])[0],
            "wolfssl": dpkg_version("libwolfssl-dev"),
            "liburing": dpkg_version("liburing-dev"),
            "openssl (HAProxy's TLS)": dpkg_version("libssl3"),
            "iperf3": dpkg_version("iperf3"),
            "wrk": dpkg_version("wrk"),
            "python3": platform.python_version(),
        },
    }


# --- main -----------------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 repetition, short runs (< 3 min)")
    ap.add_argument("--reps", type=int, help="repetitions (default: quick 1, full 3)")
    ap.add_argument("--planes", help="comma list of %s" % ",".join(p["key"] for p in PLANES))
    ap.add_argument("--scale", help="pods per node for the RSS phase, e.g. 2,20,100 "
                    "(empty: skip)")
    ap.add_argument("--out", help="output directory (default bench/results/<timestamp>)")
    ap.add_argument("--no-charts", action="store_true")
    a = ap.parse_args()

    if os.geteuid() != 0:
        sys.exit("bench: needs root (network namespaces)")
    for f in (LOADGEN, os.path.join(BUILD, "weftd"), os.path.join(BUILD, "weft-cni")):
        if not os.path.exists(f):
            sys.exit("bench: %s missing: run make all" % f)
    for tool in ("haproxy", "iperf3", "nft"):
        if not shutil.which(tool):
            sys.exit("bench: %s missing: run make bench (installs the bench packages)" % tool)

    profile = "quick" if a.quick else "full"
    prof = dict(PROFILES[profile])
    if a.reps:
        prof["reps"] = a.reps
    if a.scale is not None:
        prof["scale"] = [int(x) for x in a.scale.split(",") if x]
    planes = PLANES
    if a.planes:
        keys = a.planes.split(",")
        planes = [p for p in PLANES if p["key"] in keys]
        if len(planes) != len(keys):
            sys.exit("bench: unknown data plane in %s" % a.planes)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    outdir = os.path.abspath(a.out or os.path.join(HERE, "results", stamp))
    os.makedirs(outdir, exist_ok=True)
    atexit.register(_cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    log("profile %s, %d repetition(s), data planes %s -> %s" % (
        profile, prof["reps"], ",".join(p["key"] for p in planes), outdir))

    t0 = time.monotonic()
    results = {"profile": profile, "params": prof, "started": stamp, "machine": machine(),
               "planes": [{k: p[k] for k in ("key", "name")} for p in planes],
               "not_measured": NOT_MEASURED,
               "setup": {"topology": "client pod n1-p1 (node 1) -> server pod n2-p1 (node 2)",
                         "app": "build/bench/loadgen server (HTTP/1.1); iperf3 -s",
                         "haproxy": "1 thread per sidecar, TCP mode; mTLS: TLS 1.3, "
                                    "ECDSA P-256 certificates from the openssl CLI"},
               "runs": []}
    for rep in range(prof["reps"]):
        k = rep % len(planes)
        for plane in planes[k:] + planes[:k]:
            log("rep %d/%d: %s" % (rep + 1, prof["reps"], plane["name"]))
            results["runs"].append(run_block(plane, prof, outdir, rep))
    log("cross-check against wrk")
    results["crosscheck"] = crosscheck(prof, outdir)
    if prof["scale"]:
        log("RSS against pods per node: %s" % prof["scale"])
        results["scale"] = scale_phase(prof, outdir, planes)
    results["duration_s"] = time.monotonic() - t0
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    report.write(outdir, results, charts=not a.no_charts)
    log("done in %.0f s: %s" % (results["duration_s"], os.path.join(outdir, "report.md")))
    failed = [r for r in results["runs"] if not r["ok"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
