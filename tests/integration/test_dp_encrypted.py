# SPDX-License-Identifier: Apache-2.0
"""The underlay carries only TLS (issue 3 item 9).

An unmodified python3 app in n1-p1 sends 1 MiB made of a random marker
(64 hex characters, repeated) to an echo server in n2-p1, which sends it
back; the same happens from n2-p1 to n1-p1. tcpdump captures the underlay
bridge (br0 in NAME-ul) from before the first byte to after the last.
Checked in the capture (parsed here, no other tools):

- it is complete (tcpdump dropped nothing) and the apps got their bytes back;
- every IPv4 packet (IGMP aside) is TCP with port 15008 (HBONE) or 15012 (agent) on one
  end, between node addresses: no pod address appears on the underlay;
- the 15008 connections opened during the capture carry at least 1 MiB
  each way, and each direction of each of them, reassembled, is a
  well-formed sequence of TLS records: handshake (0x16) first, then
  application data (0x17) that carries the bulk;
- the marker appears nowhere in the raw pcap (neither whole nor its first
  24 characters).

Control: the same traffic in the same topology without weft (--no-weft)
shows the marker in a capture taken the same way, so the check can fail.
Exit 0 pass, 1 fail, 77 skip.
"""
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import CLUSTER, ECHO_SERVER, Cluster, Results, require_root  # noqa: E402
from pcaplib import Capture, read_pcap, reassemble, tls_records  # noqa: E402

NAME = "dpb-enc"
PORT = 8080
MiB = 1 << 20
HBONE, AGENT = 15008, 15012

CLIENT = r"""
import hashlib, socket, sys, threading
marker = sys.argv[3].encode()
payload = (marker * ((1 << 20) // len(marker) + 1))[:1 << 20]
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
def send():
    c.sendall(payload)
    c.shutdown(socket.SHUT_WR)
t = threading.Thread(target=send)
t.start()
got = bytearray()
while True:
    b = c.recv(1 << 16)
    if not b:
        break
    got += b
t.join()
# The echo server appends "|<its tag>|<client ip>" after the echo.
print("ok" if bytes(got[:len(payload)]) == payload else "MISMATCH", len(got),
      bytes(got[len(payload):]).decode(errors="replace"))
"""

res = Results("data path encrypted on the underlay")


class PlainCluster(Cluster):
    """The same topology without weft: the bridge CNI plugin alone."""

    def up(self):
        import atexit
        subprocess.run([CLUSTER, "down", "--name", self.name], capture_output=True)
        atexit.register(self.down)
        self.sh("up", "--name", self.name, "--nodes", str(self.nodes), "--pods",
                str(self.pods), "--no-weft", timeout=180)
        return self


def run_traffic(c, marker):
    """Echo servers in n1-p1 and n2-p1; 1 MiB of marker each way, both ways."""
    ips = {p: c.ip(p) for p in ("n1-p1", "n2-p1")}
    for p in ips:
        c.py(p, ECHO_SERVER, [str(PORT), p], stdout=subprocess.DEVNULL,
             stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    outs = []
    for src, dst in (("n1-p1", "n2-p1"), ("n2-p1", "n1-p1")):
        p = c.run(src, ["/usr/bin/python3", "-c", CLIENT, ips[dst], str(PORT), marker],
                  timeout=60, check=False)
        outs.append((src, dst, p.stdout.decode(errors="replace").strip(),
                     p.stderr.decode(errors="replace")[-500:]))
    return ips, outs


def echoed(out, dst):
    """The client's line says the 1 MiB came back intact, then dst's tag."""
    f = out.split(" ", 2)
    return (len(f) == 3 and f[0] == "ok" and f[1].isdigit() and f[2].startswith("|%s|" % dst)
            and int(f[1]) == MiB + len(f[2]))


def marker_hits(path, marker):
    data = open(path, "rb").read()
    return data.count(marker.encode()), data.count(marker[:24].encode())


def captured_traffic(c, path, marker, what):
    """run_traffic under a capture of the underlay to path: (outs, packets
    dropped, tcpdump's stderr), or None when tcpdump did not start."""
    cap = Capture(c, path)
    if not res.check(cap.start(), what):
        return None
    _, outs = run_traffic(c, marker)
    dropped, errtext = cap.stop()
    return outs, dropped, errtext


def control(tmp, marker):
    """Without weft the same capture shows the marker."""
    path = os.path.join(tmp, "plain.pcap")
    with PlainCluster(NAME, nodes=2, pods=1) as c:
        got = captured_traffic(c, path, marker, "control: tcpdump listening on br0")
        if got is None:
            return
        outs = got[0]
    res.check(all(echoed(o[2], o[1]) for o in outs),
              "control (no weft): both echoes complete (%s)" % [o[2][:40] for o in outs])
    full, part = marker_hits(path, marker)
    res.check(full > 0, "control (no weft): the marker is in the capture (%d times)" % full)
    pod_ips = sum(1 for pk in read_pcap(path) if pk[0] != "ipv6" and pk[2] == 6 and
                  (pk[0].startswith("10.244.") or pk[1].startswith("10.244.")))
    res.check(pod_ips > 0, "control (no weft): pod addresses on the underlay (%d packets)" %
              pod_ips)


def main():
    require_root()
    if not shutil.which("tcpdump"):
        from clusterlib import skip
        skip("tcpdump missing (apt-get install tcpdump)")
    marker = secrets.token_hex(32)
    tmp = tempfile.mkdtemp(prefix="weft-dpb-enc-")
    try:
        control(tmp, marker)
        path = os.path.join(tmp, "weft.pcap")
        with Cluster(NAME, nodes=2, pods=1) as c:
            got = captured_traffic(c, path, marker,
                                   "tcpdump listening on br0 before any app traffic")
            if got is None:
                return
            outs, dropped, _ = got
            tunnels = [t for k in (1, 2) for t in c.admin(k, "/tunnels")]
        for src, dst, out, err in outs:
            res.check(echoed(out, dst),
                      "%s -> %s: 1 MiB of marker echoed back intact (%s%s)" % (
                          src, dst, out[:60], err))
        res.check(dropped == 0, "the capture is complete (%s packets dropped by kernel)" %
                  dropped)
        res.check({t.get("node") for t in tunnels} == {"node1", "node2"},
                  "a tunnel was used each way (%s)" % [
                      (t.get("source"), t.get("node")) for t in tunnels])

        pkts = list(read_pcap(path))
        ipv6 = sum(1 for p in pkts if p[0] == "ipv6")
        ip4 = [p for p in pkts if p[0] != "ipv6"]
        # IGMP membership reports (0.0.0.0 -> 224.0.0.22) are the kernel's
        # own multicast bookkeeping on the bridge, not traffic of anyone's.
        igmp = [p for p in ip4 if p[2] == 2]
        ip4 = [p for p in ip4 if p[2] != 2]
        not_tcp = [p[:3] for p in ip4 if p[2] != 6]
        tcp = [p for p in ip4 if p[2] == 6]
        other = sorted({(p[0], p[3], p[1], p[4]) for p in tcp
                        if HBONE not in (p[3], p[4]) and AGENT not in (p[3], p[4])})
        pods = sorted({(p[0], p[1]) for p in ip4 if p[0].startswith("10.244.") or
                       p[1].startswith("10.244.")})
        nodes = {"172.30.0.1", "172.30.0.2", "172.30.0.250"}
        foreign = sorted({a for p in ip4 for a in p[:2] if a not in nodes})
        print("  capture: %d packets (%d IPv4 TCP, %d IPv4 other, %d IGMP, %d IPv6), %d bytes" % (
            len(pkts), len(tcp), len(not_tcp), len(igmp), ipv6, os.path.getsize(path)))
        res.check(len(tcp) > 0, "the capture holds TCP packets (%d)" % len(tcp))
        res.check(not not_tcp and not ipv6, "every IP packet on the underlay is TCP, "
                  "IGMP aside (other: %s, IPv6: %d)" % (not_tcp[:5], ipv6))
        res.check(not other, "every TCP packet is to or from port %d or %d (others: %s)" % (
            HBONE, AGENT, other[:5]))
        res.check(not pods and not foreign,
                  "only node addresses on the underlay, no pod address (%s)" % (
                      pods[:5] or foreign[:5]))

        # The HBONE connections, per direction.
        flows = {}
        syn = {}
        for (src, dst, _, sp, dp, flags, seq, data) in tcp:
            if HBONE not in (sp, dp):
                continue
            k = (src, sp, dst, dp)
            flows.setdefault(k, []).append((seq, data))
            if flags & 0x02:    # SYN (and SYN-ACK)
                syn[k] = seq
        up = sum(len(d) for k, segs in flows.items() if k[3] == HBONE for _, d in segs)
        down = sum(len(d) for k, segs in flows.items() if k[1] == HBONE for _, d in segs)
        res.check(up >= 2 * MiB and down >= 2 * MiB,
                  "port %d carried the traffic: %d bytes to it, %d from it (>= 2 MiB each)" % (
                      HBONE, up, down))
        opened = [k for k in syn if k[3] == HBONE]
        res.check(len(opened) >= 2, "%d HBONE connections opened during the capture "
                  "(one tunnel each way)" % len(opened))
        app_bytes = 0
        for k in sorted(syn):
            stream, gap = reassemble(flows.get(k, []), syn[k])
            recs, err, left = tls_records(stream)
            types = {}
            for typ, ln in recs:
                types[typ] = types.get(typ, 0) + ln
            app_bytes += types.get(23, 0)
            what = "%s:%d -> %s:%d" % k
            res.check(not gap and err is None and left == 0 and recs and recs[0][0] == 22,
                      "%s: %d bytes = %d TLS records, handshake first (bytes by type %s)%s%s" %
                      (what, len(stream), len(recs), types, " GAP" if gap else "",
                       " " + err if err else ""))
            res.check(types.get(23, 0) >= 0.9 * len(stream) if len(stream) > MiB else True,
                      "%s: the bulk is TLS application data (0x17)" % what)
        res.check(app_bytes >= 4 * MiB,
                  "TLS application data on the HBONE connections: %d bytes (>= 4 MiB: two "
                  "1 MiB echoes)" % app_bytes)
        full, part = marker_hits(path, marker)
        res.check(full == 0 and part == 0,
                  "the marker never appears in the capture (%d whole, %d prefix)" % (full, part))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    res.run(main)
