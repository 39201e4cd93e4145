#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Minimal ICMP echo (IPv4) for the simulated cluster: iputils-ping is not
a dependency of the project. Needs root (raw socket).

  ping.py DST [-c COUNT] [-W TIMEOUT_S]

Prints one line per reply; exits 0 when every echo was answered, 1 if not.
Stdlib only.
"""
import argparse
import os
import select
import socket
import struct
import sys
import time


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dst")
    ap.add_argument("-c", type=int, default=1)
    ap.add_argument("-W", type=float, default=2.0)
    a = ap.parse_args()
    dst = socket.gethostbyname(a.dst)
    ident = os.getpid() & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ok = 0
    for seq in range(1, a.c + 1):
        payload = b"weft-cluster-ping" + struct.pack("!d", time.monotonic())
        hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr + payload), ident, seq) + payload
        t0 = time.monotonic()
        s.sendto(pkt, (dst, 0))
        deadline = t0 + a.W
        got = False
        while not got:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            data, addr = s.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            typ, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if typ == 0 and rid == ident and rseq == seq and addr[0] == dst:
                got = True
                print("reply from %s seq=%d time=%.3f ms" %
                      (dst, seq, (time.monotonic() - t0) * 1000))
        if got:
            ok += 1
        else:
            print("no reply from %s seq=%d within %.1fs" % (dst, seq, a.W))
        if seq < a.c:
            time.sleep(0.05)
    return 0 if ok == a.c else 1


if __name__ == "__main__":
    sys.exit(main())
