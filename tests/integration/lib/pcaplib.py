# SPDX-License-Identifier: Apache-2.0
"""Packet captures for the tests that prove what is on the wire: tcpdump in
a cluster's netns, a pcap reader, TCP reassembly and a TLS record walker
(no dependency beyond the standard library)."""
import signal
import struct
import subprocess
import time


class Capture:
    """tcpdump -i iface in one of the cluster's netns (default: br0 of its
    underlay), to a pcap file."""

    def __init__(self, cluster, path, target="ul", iface="br0"):
        self.c = cluster
        self.path = path
        self.err = path + ".err"
        self.p = None
        self.target, self.iface = target, iface

    def start(self):
        self.errf = open(self.err, "w+")
        # --immediate-mode: otherwise libpcap hands packets over a ring
        # block at a time, and a block not handed over yet when tcpdump gets
        # SIGINT is lost: the tail of the traffic would miss the capture.
        self.p = self.c.spawn(self.target, ["tcpdump", "-i", self.iface, "--immediate-mode",
                                            "-U", "-n", "-s", "0", "-B", "32768", "-Z", "root",
                                            "-w", self.path],
                              stdout=subprocess.DEVNULL, stderr=self.errf)
        deadline = time.time() + 10
        while time.time() < deadline:
            if "listening on" in open(self.err).read():
                return True
            if self.p.poll() is not None:
                break
            time.sleep(0.05)
        return False

    def stop(self):
        time.sleep(0.5)     # let the last ACKs and FINs pass
        if self.p and self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        text = open(self.err).read()
        dropped = None
        for line in text.splitlines():
            if "dropped by kernel" in line:
                dropped = int(line.split()[0])
        return dropped, text


def read_pcap(path):
    """Yields (ip_src, ip_dst, proto, sport, dport, flags, seq, payload) per
    IPv4 packet; ('non-ip', ethertype) tuples are skipped except IPv6."""
    data = open(path, "rb").read()
    if len(data) < 24:
        return
    magic = struct.unpack("<I", data[:4])[0]
    if magic in (0xa1b2c3d4, 0xa1b23c4d):
        e = "<"
    else:
        e = ">"
    linktype = struct.unpack(e + "I", data[20:24])[0]
    if linktype != 1:
        raise ValueError("link type %d, expected Ethernet" % linktype)
    off = 24
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(e + "IIII", data[off:off + 16])
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(pkt) < 14:
            continue
        etype = struct.unpack(">H", pkt[12:14])[0]
        if etype == 0x86DD:
            yield ("ipv6",)
            continue
        if etype != 0x0800:
            continue    # ARP and the like
        ip = pkt[14:]
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        proto = ip[9]
        src = ".".join(str(b) for b in ip[12:16])
        dst = ".".join(str(b) for b in ip[16:20])
        l4 = ip[ihl:total]
        if proto == 6 and len(l4) >= 20:
            sport, dport, seq = struct.unpack(">HHI", l4[:8])
            thl = (l4[12] >> 4) * 4
            flags = l4[13]
            yield (src, dst, 6, sport, dport, flags, seq, bytes(l4[thl:]))
        else:
            yield (src, dst, proto, 0, 0, 0, 0, b"")


def reassemble(segs, isn):
    """Byte stream of one TCP direction from its SYN; stops at a gap."""
    out = bytearray()
    nxt = (isn + 1) & 0xFFFFFFFF
    pending = {}
    for seq, data in segs:
        if data:
            pending.setdefault(seq, data)
    gap = False
    while pending:
        if nxt in pending:
            d = pending.pop(nxt)
            out += d
            nxt = (nxt + len(d)) & 0xFFFFFFFF
            continue
        # Retransmits / overlaps: a segment that covers nxt.
        hit = None
        for seq, d in pending.items():
            rel = (nxt - seq) & 0xFFFFFFFF
            if rel < len(d):
                hit = seq
                break
            if rel < 1 << 31:   # entirely before nxt: old duplicate
                hit = seq
                break
        if hit is None:
            gap = True
            break
        d = pending.pop(hit)
        rel = (nxt - hit) & 0xFFFFFFFF
        if rel < len(d):
            out += d[rel:]
            nxt = (nxt + len(d) - rel) & 0xFFFFFFFF
    return bytes(out), gap


def tls_records(stream):
    """Walks TLS records: (list of (type, length), error or None, bytes left)."""
    recs = []
    off = 0
    while off + 5 <= len(stream):
        typ = stream[off]
        ver = struct.unpack(">H", stream[off + 1:off + 3])[0]
        ln = struct.unpack(">H", stream[off + 3:off + 5])[0]
        if typ not in (20, 21, 22, 23) or ver not in (0x0301, 0x0303) or ln > 16384 + 256:
            return recs, "bad record header %s at offset %d" % (stream[off:off + 5].hex(), off), 0
        if off + 5 + ln > len(stream):
            break       # cut by the end of the capture
        recs.append((typ, ln))
        off += 5 + ln
    return recs, None, len(stream) - off


def tls_flows(path, port):
    """The TCP connections to or from port in the capture at path, each
    direction reassembled from its SYN: (number of connections seen,
    [(direction, why)] of those that are not TLS records only)."""
    flows, syn = {}, {}
    for p in read_pcap(path):
        if p[0] == "ipv6" or p[2] != 6 or port not in (p[3], p[4]):
            continue
        k = (p[0], p[3], p[1], p[4])
        if p[5] & 0x02:
            syn[k] = p[6]
        flows.setdefault(k, []).append((p[6], p[7]))
    bad = []
    for k, segs in flows.items():
        if k not in syn:
            continue
        recs, err, _ = tls_records(reassemble(segs, syn[k])[0])
        if err or not recs:
            bad.append((k, err or "no records"))
    return len({frozenset(((k[0], k[1]), (k[2], k[3]))) for k in flows}), bad
