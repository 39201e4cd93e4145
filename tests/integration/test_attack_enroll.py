# SPDX-License-Identifier: Apache-2.0
"""Enrollment attacks on weftd's CNI socket (issue 8 item 7, DESIGN §5.1 "one
enrollment per address").

Cluster atke (2 nodes x 2 pods): a tagged echo server in the victim pod n1-p2.
Two hostile netns "atke-evil" and "atke-evil2" each hold the victim's IP on lo
and run their own echo server (tagged EVIL, EVIL2), then claim that IP:

  (a1) weft-cni ADD run directly as a runtime would (CNI env, chained config
       with a prevResult naming the victim's IP): it must fail with a CNI
       error JSON whose msg names the IP and the pod holding it;
  (a2) a hand-made AddWorkload (python3-protobuf stubs from proto/cni.proto,
       SOCK_SEQPACKET, the netns fd as SCM_RIGHTS) straight to cni.sock: the
       Ack must carry the same reason;
  after each, the victim alone holds its IP in /workloads, and app
  connections to it from the same node (n1-p1) and from the other node
  (n2-p1) are still answered by the victim, never by EVIL. Re-enrolling the
  victim under its own uid (a CNI ADD retry, same netns) is still accepted
  and it keeps answering.

  (b) cni.sock is a root-owned 0600 socket; a process running as nobody
      (setpriv) gets EACCES; a nobody process that gets past the file mode
      (ambient CAP_DAC_OVERRIDE, i.e. a misconfigured mode) is turned away by
      the SO_PEERCRED check: no Hello, its DelWorkload of the victim has no
      effect, and weftd logs one line naming its pid and uid.
"""
import atexit
import json
import os
import shutil
import secrets
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from apps import ECHO_CLIENT, ECHO_SERVER  # noqa: E402
from clusterlib import BUILD, ROOT, Cluster, Results, require_root, wait_log  # noqa: E402

NAME = "atke"
VICTIM, LOCAL, REMOTE = "n1-p2", "n1-p1", "n2-p1"
EVIL_NS, EVIL2_NS = NAME + "-evil", NAME + "-evil2"
EVIL_UID, EVIL2_UID = "default/evil", "default/evil2"
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
DAC = ["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]

# Runs as nobody: connect to cni.sock, wait for Hello, send the given request
# (hex), print what came back. Plain sockets only.
NOBODY_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(3)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("CONNECT-ERR", e.errno); sys.exit(0)
try:
    hello = s.recv(1024)
except OSError as e:
    print("RECV-ERR", e.errno); sys.exit(0)
if not hello:
    print("CLOSED"); sys.exit(0)
try:
    s.send(bytes.fromhex(sys.argv[2]))
    ack = s.recv(1024)
except OSError as e:
    print("HELLO", hello.hex(), "SEND-ERR", e.errno); sys.exit(0)
print("HELLO", hello.hex(), "ACK", ack.hex())
"""


def cni_stubs():
    """cni_pb2 generated from proto/cni.proto into a temp dir."""
    d = tempfile.mkdtemp(prefix="atke-pb-")
    atexit.register(shutil.rmtree, d, True)
    subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
                    "--python_out=" + d, os.path.join(ROOT, "proto", "cni.proto")], check=True)
    sys.path.insert(0, d)
    import cni_pb2
    return cni_pb2


def raw_request(pb, path, req, fd=None):
    """One WorkloadRequest over a fresh connection to cni.sock: Hello, the
    request (fd as SCM_RIGHTS), the response. Returns the WorkloadResponse."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(5)
    try:
        s.connect(path)
        hello = pb.WorkloadResponse.FromString(s.recv(1024))
        if hello.WhichOneof("payload") != "hello":
            raise RuntimeError("no Hello from weftd: %r" % hello)
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fd.to_bytes(4, sys.byteorder))] \
            if fd is not None else []
        s.sendmsg([req.SerializeToString()], anc)
        return pb.WorkloadResponse.FromString(s.recv(4096))
    finally:
        s.close()


def who(c, src, ip):
    """Tag of the echo server that answers an app connection src -> ip:8080."""
    marker = "atke-" + secrets.token_hex(4)
    p = c.run(src, ["/usr/bin/python3", "-c", ECHO_CLIENT, ip, "8080", marker],
              check=False, timeout=20)
    out = p.stdout.decode(errors="replace").strip()
    if p.returncode or not out.startswith(marker + "|"):
        return "error rc=%d out=%r err=%r" % (p.returncode, out[:100],
                                             p.stderr.decode(errors="replace")[-200:])
    return out.split("|")[1]


def holders(c, ip):
    return [w.get("uid") for w in c.admin(1, "/workloads") if w.get("ip") == ip]


def cni_add(c, sock, ip):
    """weft-cni ADD for pod default/evil in EVIL_NS, prevResult claiming ip,
    run in node1's netns like a runtime. (rc, stdout)."""
    prev = {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:00:00:02",
                            "sandbox": "/run/netns/" + EVIL_NS}],
            "ips": [{"interface": 0, "address": ip + "/24", "gateway": "10.244.1.1"}],
            "routes": [], "dns": {}}
    conf = {"cniVersion": "1.0.0", "name": "atke", "type": "weft-cni", "socket": sock,
            "log_file": os.path.join(c.dir, "n1", "weft-cni-atke.log"), "prevResult": prev}
    env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="ctr-evil",
               CNI_NETNS="/run/netns/" + EVIL_NS, CNI_IFNAME="eth0", CNI_PATH=BUILD,
               CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=evil")
    p = subprocess.run(["ip", "netns", "exec", c.netns("n1"), os.path.join(BUILD, "weft-cni")],
                       input=json.dumps(conf).encode(), env=env, capture_output=True,
                       timeout=30)
    return p.returncode, p.stdout.decode(errors="replace")


def evil_netns(c, ns, ip, tag):
    """A hostile netns ns holding ip on lo, with an echo server tagged tag."""
    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "-n", ns, "addr", "add", ip + "/32", "dev", "lo"], check=True)
    target = ns[len(NAME) + 1:]
    c.spawn(target, ["/usr/bin/python3", "-c", ECHO_SERVER, "8080", tag])
    if not c.wait_port(target, ip, 8080):
        raise RuntimeError("%s echo server did not listen" % tag)


def not_taken(c, r, label, ip, victim_uid):
    h = holders(c, ip)
    r.check(h == [victim_uid], "%s: /workloads: %s is held by %s only (%s)" % (
        label, ip, victim_uid, h))
    tags = [who(c, LOCAL, ip), who(c, REMOTE, ip)]
    r.check(tags == [VICTIM, VICTIM],
            "%s: app connections to %s:8080 from %s (same node) and %s (other node) are "
            "answered by %s, not the claimant (%s)" % (label, ip, LOCAL, REMOTE, VICTIM, tags))


def takeover(c, r, pb, sock):
    ip = c.ip(VICTIM)
    c.py(VICTIM, ECHO_SERVER, ["8080", VICTIM])
    if not c.wait_port(VICTIM, "127.0.0.1", 8080):
        raise RuntimeError("echo server in %s did not listen" % VICTIM)
    r.check(who(c, LOCAL, ip) == VICTIM and who(c, REMOTE, ip) == VICTIM,
            "baseline: %s (%s:8080) answers %s and %s" % (VICTIM, ip, LOCAL, REMOTE))
    evil_netns(c, EVIL_NS, ip, "EVIL")
    evil_netns(c, EVIL2_NS, ip, "EVIL2")
    victim_uid = "default/" + VICTIM

    # (a1) weft-cni ADD claiming the victim's IP.
    rc, out = cni_add(c, sock, ip)
    try:
        err = json.loads(out)
    except ValueError:
        err = {}
    msg = str(err.get("msg", ""))
    print("  info weft-cni ADD: rc %d stdout %s" % (rc, out.strip()[:400]))
    r.check(rc != 0 and ip in msg and victim_uid in msg,
            "(a1) weft-cni ADD of %s claiming %s fails, its CNI error JSON names the IP and "
            "%s (rc %d, msg %r)" % (EVIL_UID, ip, victim_uid, rc, msg[:200]))
    not_taken(c, r, "(a1)", ip, victim_uid)

    # (a2) hand-made AddWorkload straight to cni.sock.
    req = pb.WorkloadRequest()
    req.add.uid = EVIL2_UID
    req.add.name = "evil2"
    req.add.namespace = "default"
    req.add.ips.append(ip + "/24")
    req.add.netns_path = "/run/netns/" + EVIL2_NS
    fd = os.open("/run/netns/" + EVIL2_NS, os.O_RDONLY)
    try:
        resp = raw_request(pb, sock, req, fd)
    finally:
        os.close(fd)
    aerr = resp.ack.error if resp.WhichOneof("payload") == "ack" else "(no Ack: %r)" % resp
    print("  info raw AddWorkload Ack error: %r" % aerr)
    r.check(ip in aerr and victim_uid in aerr,
            "(a2) raw AddWorkload of %s claiming %s is refused, the Ack names the IP and %s "
            "(%r)" % (EVIL2_UID, ip, victim_uid, aerr))
    line = wait_log(c, 1, r"enrolling default/evil2 failed: .*%s" % ip.replace(".", r"\."), 3)
    r.check(line is not None, "(a2) weftd logs the refusal (%r)" % line)
    not_taken(c, r, "(a2)", ip, victim_uid)

    # Re-enrollment under the victim's own uid stays allowed.
    req = pb.WorkloadRequest()
    req.add.uid = victim_uid
    req.add.name = VICTIM
    req.add.namespace = "default"
    req.add.service_account = "sa-" + VICTIM
    req.add.ips.append(ip + "/24")
    req.add.netns_path = "/run/netns/" + c.netns(VICTIM)
    fd = os.open("/run/netns/" + c.netns(VICTIM), os.O_RDONLY)
    try:
        resp = raw_request(pb, sock, req, fd)
    finally:
        os.close(fd)
    r.check(resp.WhichOneof("payload") == "ack" and resp.ack.error == "",
            "(a) re-enrolling %s under its own uid is accepted (%r)" % (
                victim_uid, resp.ack.error))
    not_taken(c, r, "(a) after re-enrollment", ip, victim_uid)
    return ip, victim_uid


def peercred(c, r, pb, sock, ip, victim_uid):
    st = os.stat(sock)
    r.check(st.st_uid == 0 and (st.st_mode & 0o077) == 0,
            "(b) %s is owned by root with no group/other access (mode %o)" % (
                sock, st.st_mode & 0o777))
    req = pb.WorkloadRequest()
    getattr(req, "del").uid = victim_uid    # the field is named del, a Python keyword
    hexreq = req.SerializeToString().hex()

    p = subprocess.run(NOBODY + ["/usr/bin/python3", "-c", NOBODY_CLIENT, sock, hexreq],
                       capture_output=True, timeout=20)
    out = p.stdout.decode(errors="replace").strip()
    r.check(out == "CONNECT-ERR 13", "(b) a process running as nobody cannot connect: "
            "EACCES (%r)" % out)

    start = len(c.weftd_log(1))
    p = subprocess.Popen(NOBODY + DAC + ["/usr/bin/python3", "-c", NOBODY_CLIENT, sock, hexreq],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pout, perr = p.communicate(timeout=20)
    out = pout.decode(errors="replace").strip()
    print("  info nobody+CAP_DAC_OVERRIDE client (pid %d): %r %r" % (
        p.pid, out, perr.decode(errors="replace")[-200:]))
    r.check(out in ("CLOSED", "RECV-ERR 104"),
            "(b) nobody past the file mode (CAP_DAC_OVERRIDE) gets no Hello: the connection "
            "is closed at once (%r)" % out)
    line = wait_log(c, 1, r"cni\.sock: .*pid %d.*uid 65534" % p.pid, 3, start)
    r.check(line is not None, "(b) weftd logs the refusal naming pid %d and uid 65534 (%r)" % (
        p.pid, line))
    time.sleep(0.3)
    h = holders(c, ip)
    r.check(h == [victim_uid], "(b) %s is still enrolled after nobody's DelWorkload (%s)" % (
        victim_uid, h))
    r.check(who(c, REMOTE, ip) == VICTIM, "(b) %s still answers %s" % (VICTIM, REMOTE))


def main():
    require_root()
    r = Results("test_attack_enroll")
    pb = cni_stubs()

    def run():
        with Cluster(NAME, nodes=2, pods=2) as c:
            try:
                sock = os.path.join(c.dir, "n1", "cni.sock")
                ip, victim_uid = takeover(c, r, pb, sock)
                peercred(c, r, pb, sock, ip, victim_uid)
            finally:
                for ns in (EVIL_NS, EVIL2_NS):
                    subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    r.run(run)


if __name__ == "__main__":
    main()
