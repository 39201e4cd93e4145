# SPDX-License-Identifier: Apache-2.0
"""Faults (issue 3 item 14, third part): a long-lived stream survives three
certificate rotations without losing a byte.

2 nodes x 1 pod; the agent signs for at most 60 s (--ttl 60s) and weftd asks
for 60 s (cert_ttl: 60s), so every identity is renewed about every 30 s
(half-life). A plain python3 client in n1-p1 streams sequence-numbered
64 KiB chunks at 1 MiB/s to a plain python3 server in n2-p1, which checks
the sequence, hashes what it got and echoes it back; the client hashes what
it sent and what came back. The stream runs until node1's log shows at least
ROTATIONS renewals ("certificate for <id>: serial ...") of the client's
workload identity (sa-n1-p1) and of node1's identity, and node2's log at
least ROTATIONS of node2's identity, all after the stream started (so the
tunnel outlives the certificates it was made with). Checks: the connection
never broke (no error either side, no stall over STALL_MAX_S), sha256 of
sent = received by the server = echoed back, byte counts equal, no sequence
gap, every renewal a new serial, no certificate expired, the tunnel is the
one the stream started on, the access-log line of the stream has no error
and the full byte counts; after the rotations, a new connection on that
tunnel and a new tunnel (n2-p1 -> n1-p1, handshake on renewed certificates)
work. Renewal times and the stream's numbers are printed.
"""
import calendar
import json
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_SERVER, Lines  # noqa: E402
from clusterlib import Cluster, Results, echo_probe, require_root  # noqa: E402

NAME = "dpd2"
TTL = "60s"
RATE = 1 << 20            # bytes per second, each way
ROTATIONS = 3
STREAM_MAX_S = 130        # renewals are due every ~30 s: 3 fit in ~95 s
STALL_MAX_S = 5.0
STREAM_PORT, ECHO_PORT = 8080, 8081
TD = "spiffe://cluster.local"
CLIENT_ID = TD + "/ns/default/sa/sa-n1-p1"
SERVER_ID = TD + "/ns/default/sa/sa-n2-p1"
NODE_ID = TD + "/weft/node/node%d"
RENEWED = re.compile(r"certificate for (spiffe://\S+): serial ([0-9a-fA-F]+), valid until")

# Reads frames (u64 seq, u32 len, payload), checks the sequence, hashes and
# echoes every byte; one connection; RESULT line with its numbers at EOF.
STREAM_SERVER = r"""
import hashlib, json, socket, struct, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("LISTEN", flush=True)
c, a = s.accept()
h = hashlib.sha256()
st = {"peer": "%s:%d" % a[:2], "bytes": 0, "frames": 0, "seq_errors": 0, "err": None}
buf = bytearray(); expect = 0
try:
    while True:
        b = c.recv(262144)
        if not b:
            break
        h.update(b); st["bytes"] += len(b)
        c.sendall(b)
        buf += b
        while len(buf) >= 12:
            seq, n = struct.unpack_from("!QI", buf)
            if len(buf) < 12 + n:
                break
            if seq != expect:
                st["seq_errors"] += 1
            expect = seq + 1; st["frames"] += 1
            del buf[:12 + n]
    st["leftover"] = len(buf)
    c.shutdown(socket.SHUT_WR)
except OSError as e:
    st["err"] = repr(e)
st["sha"] = h.hexdigest()
print("RESULT " + json.dumps(st), flush=True)
"""

# Sends frames at argv[3] bytes/s until a line on stdin, then half-closes and
# reads the echo to its end; progress lines "P <time> <sent> <echoed>".
STREAM_CLIENT = r"""
import hashlib, json, os, socket, struct, sys, threading, time
ip, port, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
CH = 64 * 1024
c = socket.create_connection((ip, port), timeout=10); c.settimeout(None)
st = {"local": "%s:%d" % c.getsockname()[:2], "sent": 0, "recv": 0, "frames": 0,
      "werr": None, "rerr": None}
stop = threading.Event(); done = threading.Event(); out = threading.Lock()
def say(line):
    with out:
        sys.stdout.write(line + "\n"); sys.stdout.flush()
def reader():
    h = hashlib.sha256()
    try:
        while True:
            b = c.recv(262144)
            if not b:
                break
            h.update(b); st["recv"] += len(b)
    except OSError as e:
        st["rerr"] = repr(e)
    st["sha_rx"] = h.hexdigest()
def progress():
    while not done.is_set():
        say("P %.3f %d %d" % (time.time(), st["sent"], st["recv"]))
        done.wait(0.5)
def stdin_watch():
    sys.stdin.readline(); stop.set()
threading.Thread(target=stdin_watch, daemon=True).start()
say("UP " + st["local"])
rt = threading.Thread(target=reader); rt.start()
threading.Thread(target=progress, daemon=True).start()
h = hashlib.sha256(); t0 = time.monotonic(); seq = 0
try:
    while not stop.is_set():
        wait = t0 + st["sent"] / rate - time.monotonic()
        if wait > 0:
            time.sleep(min(wait, 0.1))
            continue
        payload = os.urandom(CH - 12)
        frame = struct.pack("!QI", seq, len(payload)) + payload
        c.sendall(frame)
        h.update(frame); st["sent"] += len(frame); seq += 1
    c.shutdown(socket.SHUT_WR)
except OSError as e:
    st["werr"] = repr(e)
st["frames"] = seq; st["sha_tx"] = h.hexdigest()
rt.join(60)
st["reader_alive"] = rt.is_alive()
done.set()
say("RESULT " + json.dumps(st))
"""

def iso_time(s):
    """Seconds since the epoch of '2026-11-25T13:28:18Z', or None."""
    try:
        return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))
    except (TypeError, ValueError):
        return None


def renewals(log, ident, skip=None):
    """[(serial, line)] of the certificates ident got, in log order, but for
    the one with serial skip."""
    out = []
    for line in log.splitlines():
        m = RENEWED.search(line)
        if m and m.group(1) == ident and m.group(2) != skip:
            out.append((m.group(2), line))
    return out


def main():
    require_root()
    r = Results("test_dp_rotation")
    with Cluster(NAME, nodes=2, pods=1, ttl=TTL, conf=["cert_ttl: %s" % TTL]) as c:
        ip = {p: c.ip(p) for p in ("n1-p1", "n2-p1")}
        certs = {x["identity"]: x for x in c.admin(1, "/certs")}
        cc = certs.get(CLIENT_ID, {})
        nc2 = {x["identity"]: x for x in c.admin(2, "/certs")}.get(NODE_ID % 2, {})
        for what, x in (("client", cc), ("node2", nc2)):
            print("%s certificate at start: serial %s %s .. %s" % (
                what, x.get("serial"), x.get("not_before"), x.get("not_after")))
        for pod in ip:
            c.py(pod, ECHO_SERVER, [str(ECHO_PORT)])
        srv = Lines(c.py("n2-p1", STREAM_SERVER, [str(STREAM_PORT)], stdout=subprocess.PIPE,
                         text=True))
        if not r.check(srv.expect("LISTEN", 10) is not None, "stream server listening"):
            r.done()
        # Wait for the echo servers without traffic: the tunnels of this test
        # are made by the stream and by the last check.
        for pod in ip:
            deadline = time.time() + 10
            while time.time() < deadline and not c.run(
                    pod, ["ss", "-Hltn", "sport = :%d" % ECHO_PORT]).stdout.strip():
                time.sleep(0.1)

        # Renewals are counted from here: the log from this offset, serials
        # other than the ones in use now.
        watch = ((1, CLIENT_ID), (1, NODE_ID % 1), (2, NODE_ID % 2))
        first = {}
        for k, ident in watch + ((2, SERVER_ID),):
            x = {y["identity"]: y for y in c.admin(k, "/certs")}.get(ident, {})
            r.check(x.get("state") == "ready", "node%d holds a certificate for %s (%s)" % (
                k, ident, x.get("state")))
            first[ident] = x.get("serial")
        start = {k: len(c.weftd_log(k)) for k in (1, 2)}
        t0 = time.time()
        cli_p = c.py("n1-p1", STREAM_CLIENT, [ip["n2-p1"], str(STREAM_PORT), str(RATE)],
                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        cli = Lines(cli_p)
        up = cli.expect("UP ", 10)
        if not r.check(up is not None, "stream n1-p1 -> n2-p1 connected (%s)" % up):
            r.done()
        local = up.split()[1]
        tun0 = {(t["source"], t["node"]): t for t in c.admin(1, "/tunnels")}.get(
            (CLIENT_ID, "node2"))
        print("stream %s -> %s:%d at %d B/s; tunnel %s" % (local, ip["n2-p1"], STREAM_PORT,
                                                           RATE, tun0))

        # Stream until every watched identity was renewed ROTATIONS times.
        progress, ended, reached = [], None, None
        while time.time() - t0 < STREAM_MAX_S:
            line = cli.get(0.5)
            if line is None or line.startswith("RESULT"):
                ended = line or "the client exited"
                break
            if line.startswith("P "):
                _, t, sent, recv = line.split()
                progress.append((float(t), int(sent), int(recv)))
            got = {w: renewals(c.weftd_log(w[0])[start[w[0]]:], w[1], first[w[1]])
                   for w in watch}
            if all(len(v) >= ROTATIONS for v in got.values()):
                if reached is None:
                    reached = time.time()
                if time.time() - reached >= 3:   # keep streaming across the last one
                    break
        t_stop = time.time()
        r.check(ended is None, "the client was still streaming after %.1f s (%s)" % (
            t_stop - t0, ended))
        result = ended if ended and ended.startswith("RESULT") else None
        if ended is None:
            cli_p.stdin.write("stop\n")
            cli_p.stdin.flush()
        deadline = time.time() + 60
        while result is None and time.time() < deadline:
            line = cli.get(deadline - time.time())
            if line is None:
                break
            if line.startswith("P "):
                _, t, sent, recv = line.split()
                progress.append((float(t), int(sent), int(recv)))
            elif line.startswith("RESULT"):
                result = line
        cres = json.loads(result[7:]) if result else None
        sline = srv.expect("RESULT", 30)
        sres = json.loads(sline[7:]) if sline else None
        r.check(cres is not None and sres is not None,
                "both ends reported (client %s, server %s)" % (cres is not None,
                                                              sres is not None))
        if cres is None or sres is None:
            r.done()
        dur = t_stop - t0
        print("stream ran %.1f s: sent %d bytes in %d frames (%.2f MiB/s), echoed %d" % (
            dur, cres["sent"], cres["frames"], cres["sent"] / dur / (1 << 20), cres["recv"]))
        print("client %s\nserver %s" % (cres, sres))

        r.check(not cres["werr"] and not cres["rerr"] and not sres["err"] and
                not cres.get("reader_alive"),
                "the connection never broke (client write %s, read %s; server %s)" % (
                    cres["werr"], cres["rerr"], sres["err"]))
        r.check(cres["sent"] == sres["bytes"] == cres["recv"],
                "byte counts match: sent %d, server got %d, echoed back %d" % (
                    cres["sent"], sres["bytes"], cres["recv"]))
        r.check(cres["sha_tx"] == sres["sha"] == cres["sha_rx"],
                "sha256 matches: sent %s, server %s, echoed %s" % (
                    cres["sha_tx"][:16], sres["sha"][:16], cres["sha_rx"][:16]))
        r.check(sres["seq_errors"] == 0 and sres["frames"] == cres["frames"] and
                sres.get("leftover") == 0,
                "server saw every frame in sequence (%d of %d, %d gaps, %s bytes left over)" % (
                    sres["frames"], cres["frames"], sres["seq_errors"], sres.get("leftover")))
        r.check(cres["sent"] >= 0.8 * RATE * dur,
                "data flowed at the rate the whole time (%d bytes in %.1f s)" % (
                    cres["sent"], dur))
        stall, last_t, last_v = 0.0, t0, -1
        for t, _, recv in progress:
            if t > t_stop:
                break
            if recv != last_v:
                stall = max(stall, t - last_t)
                last_t, last_v = t, recv
        stall = max(stall, min(t_stop, progress[-1][0] if progress else t0) - last_t)
        r.check(stall <= STALL_MAX_S, "longest time the echo made no progress: %.1f s "
                "(bound %.0f s)" % (stall, STALL_MAX_S))

        # Renewals during the stream.
        for k, ident in watch + ((2, SERVER_ID),):
            rs = renewals(c.weftd_log(k)[start[k]:], ident, first[ident])
            times = [ln[:23] for _, ln in rs]
            print("node%d %s: %d renewals during the stream at %s" % (k, ident, len(rs), times))
            if ident == SERVER_ID:
                continue
            serials = [s for s, _ in rs]
            r.check(len(rs) >= ROTATIONS and len(set(serials)) == len(serials),
                    "node%d renewed %s %d times during the stream (>= %d), each a new serial"
                    % (k, ident, len(rs), ROTATIONS))
        for k in (1, 2):
            bad = [ln for ln in c.weftd_log(k).splitlines()
                   if "certificate for" in ln and ("expired" in ln or "retrying" in ln)]
            r.check(not bad, "node%d: no certificate expired or failed to renew %s" % (
                k, bad[:2]))
        certs = {x["identity"]: x for x in c.admin(1, "/certs")}
        cc2 = certs.get(CLIENT_ID, {})
        r.check(cc2.get("state") == "ready" and cc2.get("serial") != cc.get("serial") and
                cc2.get("issued", 0) >= ROTATIONS + 1,
                "node1 /certs: client identity ready, issued %s times, serial %s -> %s" % (
                    cc2.get("issued"), cc.get("serial"), cc2.get("serial")))

        # The tunnel is the one the stream started on, now past its certs' life.
        for what, x in (("client", cc), ("node2", nc2)):
            na = iso_time(x.get("not_after"))
            r.check(na is not None and na < t_stop,
                    "the %s certificate the stream's tunnel was made with expired during the "
                    "stream (not_after %s, %.0f s before the stream ended)" % (
                        what, x.get("not_after"), t_stop - (na or t_stop)))
        tun1 = {(t["source"], t["node"]): t for t in c.admin(1, "/tunnels")}.get(
            (CLIENT_ID, "node2"))
        r.check(tun0 is not None and tun1 is not None and
                tun1["age_ms"] >= tun0["age_ms"] + (time.time() - t0 - 1) * 1000,
                "tunnel sa-n1-p1 -> node2 lived through the stream (age %s -> %s ms)" % (
                    tun0 and tun0["age_ms"], tun1 and tun1["age_ms"]))
        deadline = time.time() + 5
        while True:
            done = [ln for ln in c.weftd_log(1)[start[1]:].splitlines()
                    if "connection complete" in ln and ("src=%s " % local) in ln]
            if done or time.time() > deadline:
                break
            time.sleep(0.1)
        ok = (len(done) == 1 and "error=" not in done[0] and "response_flags=- " in done[0] + " "
              and ("bytes_sent=%d " % cres["sent"]) in done[0] + " "
              and ("bytes_received=%d " % cres["recv"]) in done[0] + " ")
        r.check(ok, "node1 logged the stream as complete without error and with its bytes: %s"
                % (done[0] if done else None))

        # After the rotations: a new stream on the old tunnel, a new tunnel.
        err = echo_probe("%s-n1-p1" % NAME, ip["n2-p1"], ECHO_PORT, timeout=5.0)
        r.check(err is None, "new connection n1-p1 -> n2-p1 after the rotations: %s" % (
            err or "ok"))
        t_new = time.time()
        err = echo_probe("%s-n2-p1" % NAME, ip["n1-p1"], ECHO_PORT, timeout=5.0)
        new = {(t["source"], t["node"]): t for t in c.admin(2, "/tunnels")}.get(
            (SERVER_ID, "node1"))
        r.check(err is None and new is not None and
                new["age_ms"] <= (time.time() - t_new) * 1000 + 50,
                "new tunnel n2-p1 -> n1-p1, handshake on renewed certificates, works: %s "
                "(tunnel age %s ms)" % (err or "ok", new and new.get("age_ms")))
        if r.failed:
            for k in (1, 2):
                sys.stderr.write("---- weftd node%d log (tail) ----\n%s\n" % (
                    k, c.weftd_log(k)[-3000:]))
    r.done()


if __name__ == "__main__":
    main()
