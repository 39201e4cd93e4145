# SPDX-License-Identifier: Apache-2.0
"""Integrity through a cross-node tunnel (issue 3 item 11).

Unmodified python3 socket apps in pods n1-p1 (client) and n2-p1 (server,
port 8080) talk by pod IP; weft captures them and carries the bytes over
the node1 -> node2 mTLS tunnel. Checked:

- slow reader: the server reads 1 MiB/s for 5 s while the client writes
  64 MiB as fast as it can; the writer is held back (it has not finished
  when the slow phase ends), weftd's RSS on both nodes grows by less than
  32 MiB over its idle baseline (flow control, not buffering), and all
  64 MiB arrive intact afterwards;
- 256 MiB one way, then 256 MiB each way at the same time, with matching
  sha256 digests on both ends (the sender hashes what it generated, the
  receiver what it read), the tunnel's byte counters covering the traffic,
  weftd's RSS bounded the same way; throughput is printed;
- half-close: the client sends 1 MiB and shutdown(SHUT_WR)s; the server
  reads to EOF, waits, replies 4 MiB and closes; the client reads the whole
  reply (length and sha256 checked);
- reset each way: the client closes with SO_LINGER 0 -> the server's recv
  fails with ECONNRESET (an EOF is a failure) within 2 s; the server
  resets -> the client's recv fails with ECONNRESET within 2 s.

Data are pseudo-random streams (SHAKE-256 over seed||counter, 1 MiB at a
time), so nothing holds 256 MiB in memory. Exit 0 pass, 1 fail, 77 skip.
"""
import json
import os
import queue
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (Cluster, Results, memory_check, require_root, rss_kib,  # noqa: E402
                        weftd_pid)

NAME = "dpb"
PORT = 8080
MiB = 1 << 20

# Shared by both apps: the deterministic stream.
GEN = r"""
import hashlib, json, socket, sys, threading, time
MiB = 1 << 20
def stream(seed, total):
    i = 0
    while total > 0:
        n = min(MiB, total)
        yield hashlib.shake_256(seed.encode() + i.to_bytes(8, "big")).digest(n)
        i += 1
        total -= n
def send_stream(s, seed, total, h=None, progress=None, chunk=256 * 1024):
    sent = 0
    for block in stream(seed, total):
        if h is not None:
            h.update(block)
        for off in range(0, len(block), chunk):
            s.sendall(block[off:off + chunk])
            sent += len(block[off:off + chunk])
            if progress is not None:
                progress.append((time.time(), sent))
    return sent
def read_all(s, h, first=b""):
    n = len(first)
    h.update(first)
    while True:
        b = s.recv(1 << 18)
        if not b:
            return n
        h.update(b)
        n += len(b)
def out(d):
    sys.stdout.write(json.dumps(d) + "\n")
    sys.stdout.flush()
def bulk(c, r, seed, nbytes, first=b""):
    # Sends nbytes of stream(seed) from a thread, then SHUT_WR, while reading
    # to EOF (first: bytes already read); the numbers go into r.
    sh = hashlib.sha256()
    def sender():
        try:
            r["sent_bytes"] = send_stream(c, seed, nbytes, sh)
            r["sent_sha"] = sh.hexdigest()
            r["t_send_done"] = time.time()
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            r["send_error"] = repr(e)
    t = threading.Thread(target=sender)
    t.start()
    rh = hashlib.sha256()
    r["recv_bytes"] = read_all(c, rh, first)
    r["recv_sha"] = rh.hexdigest()
    r["t_recv_done"] = time.time()
    t.join()
def wait_reset(c, r):
    # How the peer's abort shows here: r["outcome"] "reset" (ECONNRESET, the
    # one wanted), "eof", "data", "timeout" (5 s) or "error ...", and when.
    c.settimeout(5)
    try:
        b = c.recv(65536)
        r["outcome"] = "eof" if not b else "data"
    except ConnectionResetError:
        r["outcome"] = "reset"
    except socket.timeout:
        r["outcome"] = "timeout"
    except OSError as e:
        r["outcome"] = "error " + repr(e)
    r["t_event"] = time.time()
def linger0(c):
    # SO_LINGER on with 0 s: close() sends a RST instead of a FIN.
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
"""

SERVER = GEN + r"""
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("0.0.0.0", int(sys.argv[1])))
ls.listen(128)

def header(c):
    buf = b""
    while b"\n" not in buf:
        b = c.recv(256)
        if not b:
            return None, b""
        buf += b
        if len(buf) > 512:
            return None, b""
    line, rest = buf.split(b"\n", 1)
    return line.decode().split(), rest

def serve(c, peer):
    r = {"peer": peer[0]}
    try:
        hdr, rest = header(c)
        if not hdr:
            return
        mode, tag = hdr[0], hdr[1]
        r.update(mode=mode, tag=tag)
        if mode == "BULK":
            bulk(c, r, hdr[2], int(hdr[3]), rest)
        elif mode == "HALF":
            seed, nbytes = hdr[2], int(hdr[3])
            rh = hashlib.sha256()
            r["recv_bytes"] = read_all(c, rh, rest)
            r["recv_sha"] = rh.hexdigest()
            time.sleep(0.5)    # stay half-closed for a while
            sh = hashlib.sha256()
            r["sent_bytes"] = send_stream(c, seed, nbytes, sh)
            r["sent_sha"] = sh.hexdigest()
            # plain close (no shutdown first): the FIN follows the data
        elif mode == "CRST":
            c.sendall(b"A")
            wait_reset(c, r)
        elif mode == "SRST":
            c.sendall(b"A")
            time.sleep(0.3)
            linger0(c)
            r["t_reset"] = time.time()
            c.close()
        elif mode == "SLOW":
            rate, secs = int(hdr[2]), float(hdr[3])
            rh = hashlib.sha256()
            rh.update(rest)
            n = len(rest)
            r["t_slow_start"] = time.time()
            end = r["t_slow_start"] + secs
            step = max(1, rate // 10)
            eof = False
            while time.time() < end:
                b = c.recv(step)
                if not b:
                    eof = True
                    break
                rh.update(b)
                n += len(b)
                time.sleep(0.1)
            r["t_slow_end"] = time.time()
            r["slow_bytes"] = n
            if not eof:
                n += read_all(c, rh)
            r["recv_bytes"] = n
            r["recv_sha"] = rh.hexdigest()
    except OSError as e:
        r["error"] = repr(e)
    finally:
        try:
            c.close()
        except OSError:
            pass
        if "mode" in r:
            out(r)

out({"listening": True})
while True:
    c, a = ls.accept()
    threading.Thread(target=serve, args=(c, a), daemon=True).start()
"""

CLIENT = GEN + r"""
mode, ip, port, tag = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
a = sys.argv[5:]
r = {"mode": mode, "tag": tag}
c = socket.create_connection((ip, port), timeout=10)
c.settimeout(120)
try:
    if mode == "BULK":
        seed_c, n_c, seed_s, n_s = a[0], int(a[1]), a[2], int(a[3])
        c.sendall(("BULK %s %s %d\n" % (tag, seed_s, n_s)).encode())
        r["t_start"] = time.time()
        bulk(c, r, seed_c, n_c)
    elif mode == "HALF":
        seed_c, n_c, seed_s, n_s = a[0], int(a[1]), a[2], int(a[3])
        c.sendall(("HALF %s %s %d\n" % (tag, seed_s, n_s)).encode())
        sh = hashlib.sha256()
        r["sent_bytes"] = send_stream(c, seed_c, n_c, sh)
        r["sent_sha"] = sh.hexdigest()
        c.shutdown(socket.SHUT_WR)
        rh = hashlib.sha256()
        r["recv_bytes"] = read_all(c, rh)
        r["recv_sha"] = rh.hexdigest()
        eh = hashlib.sha256()
        for b in stream(seed_s, n_s):
            eh.update(b)
        r["expect_sha"] = eh.hexdigest()
    elif mode == "CRST":
        c.sendall(("CRST %s\n" % tag).encode())
        r["ack"] = c.recv(1).decode()
        linger0(c)
        r["t_close"] = time.time()
        c.close()
    elif mode == "SRST":
        c.sendall(("SRST %s\n" % tag).encode())
        r["ack"] = c.recv(1).decode()
        wait_reset(c, r)
    elif mode == "SLOW":
        seed, n, rate, secs = a[0], int(a[1]), int(a[2]), a[3]
        c.sendall(("SLOW %s %d %s\n" % (tag, rate, secs)).encode())
        sh = hashlib.sha256()
        prog = []
        r["t_start"] = time.time()
        r["sent_bytes"] = send_stream(c, seed, n, sh, prog)
        r["sent_sha"] = sh.hexdigest()
        r["t_send_done"] = time.time()
        c.shutdown(socket.SHUT_WR)
        r["tail"] = len(c.recv(1))   # the server closes once it read it all
        r["progress"] = prog
except OSError as e:
    r["error"] = repr(e)
out(r)
"""

res = Results("data path integrity")


class Rss:
    """Samples VmRSS (KiB) of the weftd of each node while running."""

    def __init__(self, cluster, nodes):
        self.pids = {k: weftd_pid(cluster, k) for k in nodes}
        self.peak = {}
        self.stop = threading.Event()
        self.thread = None

    def now(self):
        out = {}
        for k, pid in self.pids.items():
            try:
                out[k] = rss_kib(pid)
            except (OSError, RuntimeError):
                out[k] = -1
        return out

    def _run(self):
        while not self.stop.is_set():
            for k, v in self.now().items():
                self.peak[k] = max(self.peak.get(k, 0), v)
            self.stop.wait(0.05)

    def __enter__(self):
        self.peak = self.now()
        self.stop.clear()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main():
    require_root()
    with Cluster(NAME, nodes=2, pods=1) as c:
        srv_ip = c.ip("n2-p1")
        server = c.py("n2-p1", SERVER, [str(PORT)], stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE)
        lines = queue.Queue()

        def pump():
            for line in server.stdout:
                try:
                    lines.put(json.loads(line))
                except ValueError:
                    pass

        threading.Thread(target=pump, daemon=True).start()
        try:
            first = lines.get(timeout=10)
        except queue.Empty:
            first = {}
        if not res.check(first.get("listening"), "server listening in n2-p1:%d" % PORT):
            return
        server_results = {}

        def server_result(tag, timeout=30):
            deadline = time.time() + timeout
            while tag not in server_results and time.time() < deadline:
                try:
                    d = lines.get(timeout=max(0.01, deadline - time.time()))
                except queue.Empty:
                    break
                server_results[d.get("tag")] = d
            return server_results.get(tag, {})

        def client(mode, tag, args, timeout=150):
            p = c.py("n1-p1", CLIENT, [mode, srv_ip, str(PORT), tag] + [str(x) for x in args],
                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                print("  client %s timed out after %ds" % (tag, timeout))
            try:
                r = json.loads(out.decode().strip().splitlines()[-1])
            except (ValueError, IndexError):
                print("  client %s said: %s %s" % (tag, out[-500:], err[-1500:]))
                r = {}
            if r.get("error") or r.get("send_error"):
                print("  client %s error: %s %s" % (tag, r.get("error"), r.get("send_error")))
            return r

        def tunnel_bytes():
            tun = [t for t in c.admin(1, "/tunnels") if t.get("node") == "node2"]
            return (sum(t.get("bytes_sent", 0) for t in tun),
                    sum(t.get("bytes_received", 0) for t in tun), tun)

        # Warm up: the tunnel and both identities exist before the baseline.
        w = client("HALF", "warm", ["w1", 1000, "w2", 1000], timeout=30)
        res.check(w.get("recv_sha") == w.get("expect_sha") and w.get("recv_bytes") == 1000,
                  "warm-up exchange through the tunnel")
        time.sleep(0.5)
        rss = Rss(c, (1, 2))
        base = rss.now()
        print("  weftd RSS idle: node1 %d KiB, node2 %d KiB" % (base[1], base[2]))
        limit_kib = 32 * 1024

        # --- slow reader -------------------------------------------------------
        n = 64 * MiB
        with rss as m:
            cr = client("SLOW", "slow", ["slow-seed", n, MiB, 5], timeout=120)
        sr = server_result("slow")
        grow = {k: m.peak[k] - base[k] for k in base}
        print("  slow reader: weftd RSS peak growth node1 %d KiB, node2 %d KiB" %
              (grow[1], grow[2]))
        memory_check(res, all(g < limit_kib for g in grow.values()),
                     "slow reader: weftd RSS grows < 32 MiB on both nodes (%s KiB)" % grow)
        t_end = sr.get("t_slow_end")
        prog = cr.get("progress") or []
        ahead = None
        if t_end and prog:
            sent_at_end = max([s for (t, s) in prog if t <= t_end] or [0])
            ahead = sent_at_end - sr.get("slow_bytes", 0)
            print("  slow reader: read %.1f MiB in %.1f s; the writer had sent %.1f MiB "
                  "(%.1f MiB ahead, held in socket buffers and windows); writer done %.1f s "
                  "after the slow phase" % (
                      sr.get("slow_bytes", 0) / MiB, t_end - sr["t_slow_start"],
                      sent_at_end / MiB, ahead / MiB, cr.get("t_send_done", 0) - t_end))
        res.check(t_end is not None and cr.get("t_send_done", 0) > t_end and
                  ahead is not None and ahead < n - MiB,
                  "slow reader: the writer was held back (not done when the slow phase ended)")
        res.check(cr.get("sent_bytes") == n and sr.get("recv_bytes") == n and
                  sr.get("recv_sha") == cr.get("sent_sha") and cr.get("tail") == 0,
                  "slow reader: all 64 MiB arrived intact afterwards (%s/%s bytes)" % (
                      sr.get("recv_bytes"), cr.get("sent_bytes")))

        # --- 256 MiB one way ---------------------------------------------------
        n = 256 * MiB
        tx0, rx0, _ = tunnel_bytes()
        cr = client("BULK", "oneway", ["one-c", n, "one-s", 0])
        sr = server_result("oneway")
        dt = cr.get("t_recv_done", 0) - cr.get("t_start", 0)
        if cr.get("t_send_done") and sr.get("t_recv_done"):
            dt = sr["t_recv_done"] - cr["t_start"]
            print("  THROUGHPUT one way n1-p1 -> n2-p1: 256 MiB in %.2f s = %.0f MiB/s "
                  "(%.0f Mbit/s)" % (dt, n / MiB / dt, n * 8 / 1e6 / dt))
        res.check(cr.get("sent_bytes") == n and sr.get("recv_bytes") == n and
                  cr.get("sent_sha") == sr.get("recv_sha"),
                  "256 MiB one way: byte count and sha256 match (%s)" % (sr.get("recv_sha"),))
        res.check(cr.get("recv_bytes") == 0 and sr.get("sent_bytes") == 0,
                  "256 MiB one way: nothing came back")
        tx1, rx1, _ = tunnel_bytes()
        res.check(tx1 - tx0 >= n, "one way: the node1 -> node2 tunnel carried it "
                  "(+%d bytes sent)" % (tx1 - tx0))

        # --- 256 MiB each way at the same time --------------------------------
        tx0, rx0, _ = tunnel_bytes()
        with rss as m:
            cr = client("BULK", "bidi", ["bidi-c", n, "bidi-s", n])
        sr = server_result("bidi")
        if cr.get("t_start") and sr.get("t_recv_done") and cr.get("t_recv_done"):
            up = sr["t_recv_done"] - cr["t_start"]
            down = cr["t_recv_done"] - cr["t_start"]
            both = max(up, down)
            print("  THROUGHPUT both ways at once: n1->n2 256 MiB in %.2f s = %.0f MiB/s, "
                  "n2->n1 256 MiB in %.2f s = %.0f MiB/s, aggregate %.0f MiB/s (%.0f Mbit/s)" % (
                      up, n / MiB / up, down, n / MiB / down, 2 * n / MiB / both,
                      2 * n * 8 / 1e6 / both))
        res.check(cr.get("sent_bytes") == n and sr.get("recv_bytes") == n and
                  cr.get("sent_sha") == sr.get("recv_sha"),
                  "256 MiB client -> server: count and sha256 match (%s / %s)" % (
                      cr.get("sent_sha"), sr.get("recv_sha")))
        res.check(sr.get("sent_bytes") == n and cr.get("recv_bytes") == n and
                  sr.get("sent_sha") == cr.get("recv_sha"),
                  "256 MiB server -> client: count and sha256 match (%s / %s)" % (
                      sr.get("sent_sha"), cr.get("recv_sha")))
        res.check(cr.get("sent_sha") != cr.get("recv_sha"),
                  "the two directions carried different data")
        tx1, rx1, tun = tunnel_bytes()
        res.check(tx1 - tx0 >= n and rx1 - rx0 >= n,
                  "both ways: the tunnel carried both directions (+%d sent, +%d received)" % (
                      tx1 - tx0, rx1 - rx0))
        res.check(len(tun) >= 1 and all(t.get("cipher") == "TLS_AES_256_GCM_SHA384"
                                        for t in tun),
                  "the tunnel is TLS_AES_256_GCM_SHA384 (%s)" % [t.get("cipher") for t in tun])
        grow = {k: m.peak[k] - base[k] for k in base}
        print("  both ways: weftd RSS peak growth node1 %d KiB, node2 %d KiB" %
              (grow[1], grow[2]))
        memory_check(res, all(g < limit_kib for g in grow.values()),
                     "both ways: weftd RSS grows < 32 MiB on both nodes (%s KiB)" % grow)

        # --- half-close ------------------------------------------------------
        cr = client("HALF", "half", ["half-c", MiB, "half-s", 4 * MiB], timeout=60)
        sr = server_result("half")
        res.check(sr.get("recv_bytes") == MiB and sr.get("recv_sha") == cr.get("sent_sha"),
                  "half-close: the server read the client's 1 MiB to EOF (%s bytes)" %
                  sr.get("recv_bytes"))
        res.check(cr.get("recv_bytes") == 4 * MiB and cr.get("recv_sha") == cr.get("expect_sha")
                  and sr.get("sent_sha") == cr.get("expect_sha"),
                  "half-close: after SHUT_WR the client read the full 4 MiB reply "
                  "(%s bytes)" % cr.get("recv_bytes"))

        def check_reset(mode, by, to):
            """`by` (client or server) aborts with SO_LINGER 0; `to` must see
            ECONNRESET, within 2 s."""
            side = {"client": client(mode, mode.lower(), [], timeout=30),
                    "server": server_result(mode.lower(), timeout=15)}
            t_abort = side[by].get("t_close" if by == "client" else "t_reset")
            seen = side[to]
            lat = (seen.get("t_event", 0) - t_abort) if t_abort else None
            print("  %s reset: %s saw %s after %s s" % (
                by, to, seen.get("outcome"), "%.3f" % lat if lat is not None else "?"))
            res.check(side["client"].get("ack") == "A" and seen.get("outcome") == "reset",
                      "%s SO_LINGER 0 close: the %s's recv gets ECONNRESET (got %s)" % (
                          by, to, seen.get("outcome")))
            res.check(lat is not None and seen.get("outcome") == "reset" and lat < 2.0,
                      "%s reset reaches the %s within 2 s" % (by, to))

        check_reset("CRST", "client", "server")
        check_reset("SRST", "server", "client")

        # weftd is still serving and no connection leaked.
        w = client("HALF", "after", ["a1", 1000, "a2", 1000], timeout=30)
        res.check(w.get("recv_sha") == w.get("expect_sha") and w.get("recv_bytes") == 1000,
                  "a new connection still works afterwards")
        time.sleep(0.5)
        live = [c.admin(k, "/stats").get("live_connections") for k in (1, 2)]
        res.check(live == [0, 0], "no live connections left on either node (%s)" % live)
        log1 = c.weftd_log(1)
        res.check("connection complete" in log1 and "dst=%s:%d" % (srv_ip, PORT) in log1,
                  "node1 logged the connections as complete")


if __name__ == "__main__":
    res.run(main)
