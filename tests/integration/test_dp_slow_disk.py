# SPDX-License-Identifier: Apache-2.0
"""A slow disk does not slow the data path (issue 11 item 2). Both weftds run
with tests/shim/slow_fsync.so preloaded: every fsync sleeps 300 ms and is
logged with the thread that made it. 2 nodes x 1 pod; n2-p1 runs an echo
server, n1-p1 a client that sends a small message every 20 ms over one
connection and times each echo.
  (a) Five registry updates, a second apart: each makes both weftds write
      the registry snapshot (two fsyncs, 600 ms). Every fsync, those and the
      pod enrollments' at start-up, runs on the chores thread, never on the
      main thread (weftd's event loop), and the echoes keep coming: the
      slowest stays far below one fsync (a loop that waited on the disk
      would hold an echo for 300-600 ms).
  (b) New connections take their delivery sockets from the reserve the
      chores thread makes ahead in the pod's netns: of 200 connections one
      after the other, at most a handful are made in place (two setns on the
      data path).
  (c) A registry of 7,000 more workloads arrives (and goes again): weftd
      applies it on its control thread (decode, validation, indexes, a
      copy: ~20 ms, reported in /stats) and swaps it in; its event loop's
      longest turn meanwhile (/stats, loop_longest_turn_us) stays well
      below that (a loop that applied it itself would spend all of it in
      one turn), while the echoes go on.
A test_dp_* test, so it runs in the ASan+UBSan pass of make test too."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import ECHO_SERVER, Cluster, Results, echo_probe, require_root  # noqa: E402

NAME = "dpsd"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The plain build's: shims are not sanitized (the ASan pass points WEFT_BUILD
# at build-asan, which has only the binaries).
SHIM = os.path.join(ROOT, "build", "tests", "shim", "slow_fsync.so")
FSYNC_MS = 300
# Workloads in (c): the agent reads at most 100,000 YAML nodes, 13 each.
BIG = 7000
res = Results("dp slow disk")

PINGER = r"""
import socket, sys, time
ip, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
c = socket.create_connection((ip, port), timeout=10)
c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
worst, n, t_end = 0.0, 0, time.time() + secs
while time.time() < t_end:
    t0 = time.time()
    c.sendall(b"ping-%08d" % n)
    got = b""
    while len(got) < 13:
        b = c.recv(64)
        if not b:
            print("EOF", n, flush=True)
            sys.exit(1)
        got += b
    worst = max(worst, time.time() - t0)
    n += 1
    time.sleep(0.02)
print("DONE %d %.1f" % (n, worst * 1000), flush=True)
"""

CHURN = r"""
import socket, sys
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok = 0
for i in range(n):
    c = socket.create_connection((ip, port), timeout=10)
    c.sendall(b"x")
    if c.recv(16) == b"x":
        ok += 1
    c.close()
print("OK", ok, flush=True)
"""


def fsyncs(path):
    """[(pid, tid, ms)] the shim logged."""
    try:
        with open(path) as f:
            return [tuple(int(x) for x in ln.split()) for ln in f if ln.strip()]
    except OSError:
        return []


def policy(i):
    return """policies:
  - name: slow-disk-%d
    namespace: default
    scope: workload
    selector: {app: app-p1}
    action: ALLOW
    rules:
      - principals: ["*"]
""" % i


def main():
    require_root()
    if not res.check(os.path.exists(SHIM), "the fsync shim is built (%s)" % SHIM):
        return
    tmp = tempfile.mkdtemp(prefix="weft-slowdisk-")
    log = os.path.join(tmp, "fsync.log")
    os.environ["WEFT_TEST_WEFTD_PRELOAD"] = "n1=%s n2=%s" % (SHIM, SHIM)
    os.environ["WEFT_TEST_FSYNC_MS"] = str(FSYNC_MS)
    os.environ["WEFT_TEST_FSYNC_LOG"] = log
    try:
        with Cluster(NAME, nodes=2, pods=1) as c:
            run(c, log)
    finally:
        for k in ("WEFT_TEST_WEFTD_PRELOAD", "WEFT_TEST_FSYNC_MS", "WEFT_TEST_FSYNC_LOG"):
            os.environ.pop(k, None)
        try:
            os.unlink(log)
        except OSError:
            pass
        os.rmdir(tmp)


def run(c, log):
    ip = c.ip("n2-p1")
    c.py("n2-p1", ECHO_SERVER, ["8080"])
    c.wait_port("n2-p1", "127.0.0.1", 8080)
    res.check(echo_probe(c.netns("n1-p1"), ip, 8080) is None, "warm-up: n1-p1 -> n2-p1 served")

    # (a) registry updates while the pinger runs.
    before = len(fsyncs(log))
    p = c.py("n1-p1", PINGER, [ip, "8080", "9"], stdout=subprocess.PIPE, text=True)
    time.sleep(1.0)
    for i in range(5):
        res.check(c.set_policies(policy(i), timeout=15),
                  "(a) registry update %d reached both nodes" % (i + 1))
        time.sleep(1.0)
    out, _ = p.communicate(timeout=60)
    # Let the last snapshot writes land.
    deadline = time.time() + 10
    while time.time() < deadline and len(fsyncs(log)) - before < 4:
        time.sleep(0.2)
    calls = fsyncs(log)
    during = calls[before:]
    on_loop = [x for x in calls if x[0] == x[1]]
    res.check(len(during) >= 4 and all(x[2] == FSYNC_MS for x in during),
              "(a) the registry snapshots went through the slow disk: %d fsyncs of %d ms "
              "during the updates" % (len(during), FSYNC_MS))
    res.check(not on_loop and len(calls) >= len(during),
              "(a) no fsync on weftd's main thread (event loop): %d of %d (enrollments at "
              "start-up included)" % (len(on_loop), len(calls)))
    words = out.split()
    done = len(words) == 3 and words[0] == "DONE"
    n, worst = (int(words[1]), float(words[2])) if done else (0, 1e9)
    res.check(done and n >= 200, "(a) the echoes kept coming: %s" % out.strip())
    res.check(done and worst < FSYNC_MS / 2,
              "(a) slowest echo %.1f ms, below half an fsync (%d ms)" % (worst, FSYNC_MS // 2))

    # (b) the delivery socket reserve, once the disk is quiet.
    time.sleep(1.0)
    s0 = c.admin(2, "/stats")
    r = c.run("n1-p1", ["/usr/bin/python3", "-c", CHURN, ip, "8080", "200"], timeout=120)
    s1 = c.admin(2, "/stats")
    ahead = s1["pod_sockets_ahead"] - s0["pod_sockets_ahead"]
    in_place = s1["pod_sockets_in_place"] - s0["pod_sockets_in_place"]
    res.check(r.stdout.decode().split() == ["OK", "200"],
              "(b) 200 new connections echoed: %s" % r.stdout.decode().strip())
    res.check(ahead + in_place >= 200 and in_place <= 8,
              "(b) delivery sockets: %d from the reserve, %d made in place (two setns each)"
              % (ahead, in_place))

    # (c) a big registry update, applied off the loop.
    big_update(c)


def big_registry(path, n):
    """The cluster's registry.yaml with n more workloads on an extra node
    (rename-replaced: the agent watches the file)."""
    base = open(path).read()
    head, rest = base.split("\nworkloads:\n", 1)
    extra = ["  - {name: big-%d, namespace: big, service_account: sa-big, node: node9, "
             "ips: [10.%d.%d.%d]}\n" % (i, 100 + i // 65536, (i // 256) % 256, i % 256)
             for i in range(n)]
    text = (head + "\n  - name: node9\n    address: 172.30.0.99\nworkloads:\n" +
            "".join(extra) + rest)
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)
    return base


def replace_file(path, text):
    with open(path + ".new", "w") as f:
        f.write(text)
    os.rename(path + ".new", path)


def wait_version(c, k, above, turns, timeout=60):
    """/stats of node k once its registry is newer than above and nothing is
    pending; appends each poll's longest loop turn (us) to turns."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = c.admin(k, "/stats")
        turns.append(st.get("loop_longest_turn_us", 0))
        if st["registry_version"] > above and st.get("registry_updates_pending", 0) == 0:
            return st
        time.sleep(0.1)
    return None


def big_update(c):
    ip = c.ip("n2-p1")
    path = os.path.join(c.dir, "registry", "registry.yaml")
    v0 = c.admin(1, "/stats")["registry_version"]     # also starts a fresh turn maximum
    p = c.py("n1-p1", PINGER, [ip, "8080", "6"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    turns = []
    base = big_registry(path, BIG)
    st = wait_version(c, 1, v0, turns)
    out, _ = p.communicate(timeout=90)
    replace_file(path, base)
    wait_version(c, 1, st["registry_version"] if st else v0, [])
    ms = st["registry_apply_ms"] if st else 0
    worst = max(turns) / 1000.0 if turns else 1e9
    res.check(st is not None and ms >= 10,
              "(c) %d more workloads applied on node 1's control thread in %.1f ms (at least "
              "10, to tell)" % (BIG, ms))
    res.check(worst < ms / 2,
              "(c) node 1's longest event-loop turn meanwhile %.2f ms, below half of that "
              "(a loop that applied it itself would take all of it in one turn)" % worst)
    res.check(out.split()[:1] == ["DONE"], "(c) the echoes kept coming: %s" % out.strip())


if __name__ == "__main__":
    res.run(main)
