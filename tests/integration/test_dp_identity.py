# SPDX-License-Identifier: Apache-2.0
"""Identity refused (issue 3 item 12). Tunnel clients with bad identities
against node 2's HBONE listener (172.30.0.2:15008, dialled from node 1's
netns): a certificate from another CA; an SVID of another trust domain
(signed by another CA, and by the cluster's own CA); a self-signed
certificate; node 1's node SVID (issued by the agent for node 1's token)
used as a client identity; an expired SVID signed by the cluster CA. Each
must fail before any CONNECT succeeds, and node 2's weftd.log must name
why on a line about that very connection (matched by the client's port).
Then a server whose node identity does not match the registry: the
registry is edited so node2's address is node 1's own IP, a pod on node 1
dials a pod on node 2, reaches node 1's listener (node 1's certificate):
the app's connection fails and node 1's log says it got node1 while node2
was expected; with the registry restored the same connection works.
A real workload SVID (from the agent, node 1's token + ImpersonatedIdentity)
succeeds before and after, proving the harness can succeed."""
import datetime
import importlib.util
import os
import re
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CHAT_CLIENT, ECHO_SERVER, Cluster, HboneClient,  # noqa: E402
                        HboneError, Results, agent_svid, load_ca, make_ca, make_svid,
                        require_root, skip, wait_log)

NAME = "dpc"
TD = "cluster.local"
N2 = "172.30.0.2"
NODE1_ID = "spiffe://%s/weft/node/node1" % TD
NODE2_ID = "spiffe://%s/weft/node/node2" % TD
GOOD_ID = "spiffe://%s/ns/default/sa/sa-n1-p1" % TD

res = Results("dp identity")


def peer_uri(der):
    from cryptography import x509
    cert = x509.load_der_x509_certificate(der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [u for u in san.get_values_for_type(x509.UniformResourceIdentifier)]


def good_request(c, good, what):
    """A real workload SVID must get through node 2's listener."""
    bundle = open(os.path.join(c.dir, "agent", "ca", "root-cert.pem"), "rb").read()
    h = HboneClient(c.netns("n1"), key_pem=good[0], chain_pem=good[1], bundle=bundle)
    try:
        h.connect()
        uris = peer_uri(h.peer_cert())
        status, data = h.roundtrip("10.244.2.2:8080", b"good-" + what.encode(), timeout=10)
    except (ssl.SSLError, OSError, HboneError) as e:
        return res.check(False, "good client (%s): %s" % (what, e))
    finally:
        h.close()
    res.check(uris == [NODE2_ID], "good client (%s): server is %s (got %s)" %
              (what, NODE2_ID, uris))
    return res.check(status == 200 and data.startswith(b"good-" + what.encode() + b"|n2p1|"),
                     "good client (%s): CONNECT 200 and echo through node 2 (got %s %r)" %
                     (what, status, data[:80]))


def bad_client(c, what, key_pem, chain_pem, reason, flag=None):
    """Dial node 2's HBONE listener with this identity and try a CONNECT to a
    live pod: the connection must end without a 200 (and not hang), and node
    2's log must have a line about this connection that matches reason. With
    flag, every [FLAG] on this connection's lines must be that flag."""
    off = len(c.weftd_log(2))
    inbound_before = c.admin(2, "/stats")["inbound"]
    h = HboneClient(c.netns("n1"), key_pem=key_pem, chain_pem=chain_pem, timeout=5)
    status, ended = None, None
    try:
        h.tcp()     # weftd not listening at all: the test errors out here
        try:
            h.connect()
            sid = h.open("10.244.2.2:8080")
            h.send(sid, b"should never arrive")
            h.status(sid, timeout=5)
            status = h.streams[sid]["status"]
            ended = h.closed
        except (ssl.SSLError, OSError, HboneError) as e:
            ended = "handshake: %s" % e
    finally:
        h.close()
    res.check(status is None and ended is not None,
              "%s: refused before any CONNECT (status %s, connection %s)" %
              (what, status, ended or "still open after 5 s"))
    peer = re.escape(h.local)
    line = wait_log(c, 2, r"from %s\b.*(%s)" % (peer, reason), timeout=5, start=off)
    res.check(line is not None, "%s: node 2 logs why, /%s/ (%s)" % (
        what, reason, line.split("weftd: ", 1)[-1] if line else
        "no such line; lines for this connection: %s" % [
            ln.split("weftd: ", 1)[-1] for ln in c.weftd_log(2)[off:].splitlines()
            if h.local in ln]))
    if flag:
        flags = [f for ln in c.weftd_log(2)[off:].splitlines() if h.local in ln
                 for f in re.findall(r"\[([A-Z_]+)\]", ln)]
        res.check(flags and all(f == flag for f in flags),
                  "%s: logged as [%s] consistently (flags on its lines: %s)" %
                  (what, flag, flags))
    inbound_after = c.admin(2, "/stats")["inbound"]
    res.check(inbound_after == inbound_before,
              "%s: no CONNECT reached node 2's stream handling (inbound %d -> %d)" %
              (what, inbound_before, inbound_after))


def replace_file(path, text):
    tmp = path + ".dpc-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


def wait_registry(c, k, after, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = c.admin(k, "/stats")["registry_version"]
        if v > after:
            return v
        time.sleep(0.1)
    return None


def echo(c, src, dst_ip, msg, timeout=15):
    p = c.run(src, ["/usr/bin/python3", "-c", CHAT_CLIENT, dst_ip, "8080", msg],
              timeout=timeout, check=False)
    return p.returncode, p.stdout.decode(errors="replace").strip(), \
        p.stderr.decode(errors="replace").strip().splitlines()[-1:]


def server_mismatch(c):
    """(f) The registry sends node 1 to its own listener for node2's pods."""
    reg = os.path.join(c.dir, "registry", "registry.yaml")
    orig = open(reg).read()
    bad = re.sub(r"(- name: node2\n\s+address: )172\.30\.0\.2\b", r"\g<1>172.30.0.1", orig)
    if not res.check(bad != orig, "registry: node2's address found and rewritten"):
        return
    rc, out, _ = echo(c, "n1-p1", "10.244.2.3", "before")
    res.check(rc == 0 and out.startswith("before|n2p2|"),
              "n1-p1 -> n2-p2 works before the registry edit (got %r)" % out)
    v0 = c.admin(1, "/stats")["registry_version"]
    off = len(c.weftd_log(1))
    replace_file(reg, bad)
    v1 = wait_registry(c, 1, v0)
    if not res.check(v1 is not None, "node 1 applied the edited registry (version %s -> %s)" %
                     (v0, v1)):
        replace_file(reg, orig)
        return
    # n1-p2 has no tunnel to node2 yet: it must dial the address the registry names.
    t0 = time.time()
    rc, out, err = echo(c, "n1-p2", "10.244.2.3", "mismatch")
    took = time.time() - t0
    res.check(not (rc == 0 and "|n2p2|" in out),
              "n1-p2 -> n2-p2 with node2 at node 1's address fails (rc %d, out %r, %s)" %
              (rc, out, err))
    res.check(took < 5 and not any("timed out" in e for e in err),
              "the app is told promptly (reset/close in %.1f s, not a hang)" % took)
    line = wait_log(c, 1, r"%s.*expected.*%s" % (re.escape(NODE1_ID), re.escape(NODE2_ID)),
                    timeout=5, start=off)
    res.check(line is not None, "node 1 logs that the peer was node1 while node2 was "
              "expected (%s)" % (line.split("weftd: ", 1)[-1] if line else
                                 "no such line in: %s" % c.weftd_log(1)[off:][-1500:]))
    v2 = c.admin(1, "/stats")["registry_version"]
    replace_file(reg, orig)
    v3 = wait_registry(c, 1, v2)
    res.check(v3 is not None, "node 1 applied the restored registry (version %s -> %s)" %
              (v2, v3))
    deadline, rc, out = time.time() + 10, -1, ""
    while time.time() < deadline:
        rc, out, err = echo(c, "n1-p2", "10.244.2.3", "restored")
        if rc == 0 and out.startswith("restored|n2p2|"):
            break
        time.sleep(0.5)
    res.check(rc == 0 and out.startswith("restored|n2p2|"),
              "n1-p2 -> n2-p2 works again with the registry restored (got %r)" % out)


def main():
    require_root()
    if importlib.util.find_spec("h2") is None:
        skip("python3-h2 not installed")
    with Cluster(NAME, nodes=2, pods=2) as c:
        c.py("n2-p1", ECHO_SERVER, ["8080", "n2p1"])
        c.py("n2-p2", ECHO_SERVER, ["8080", "n2p2"])
        for pod in ("n2-p1", "n2-p2"):
            if not c.wait_port(pod, "127.0.0.1", 8080):
                raise RuntimeError("echo server in %s did not listen" % pod)

        good = agent_svid(c, 1, GOOD_ID)
        if not good_request(c, good, "before"):
            raise RuntimeError("a good client does not get through: the harness is broken")

        other_ca = make_ca("other CA")
        cluster_ca = load_ca(c)
        now = datetime.datetime.now(datetime.timezone.utc)
        hour = datetime.timedelta(hours=1)

        key, chain = make_svid(GOOD_ID, other_ca)
        bad_client(c, "(a) workload SVID from another CA", key, chain,
                   r"does not verify against the trust bundle|issuer|unknown CA")
        key, chain = make_svid("spiffe://other.domain/ns/default/sa/x", other_ca)
        bad_client(c, "(b) SVID of trust domain other.domain from another CA", key, chain,
                   r"does not verify against the trust bundle|issuer|trust domain")
        key, chain = make_svid("spiffe://other.domain/ns/default/sa/x", cluster_ca)
        bad_client(c, "(b') SVID of trust domain other.domain signed by the cluster CA",
                   key, chain, r"spiffe://other\.domain/ns/default/sa/x.*trust domain",
                   flag="IDENTITY_ERROR")
        key, chain = make_svid(GOOD_ID)
        bad_client(c, "(c) self-signed SVID", key, chain, r"self.signed")
        key, chain = agent_svid(c, 1, NODE1_ID, impersonate=False)
        bad_client(c, "(d) node 1's node SVID as a client", key, chain,
                   r"%s.*not a workload identity" % re.escape(NODE1_ID),
                   flag="IDENTITY_ERROR")
        key, chain = make_svid(GOOD_ID, cluster_ca, now - 2 * hour, now - hour)
        bad_client(c, "(e) expired SVID signed by the cluster CA", key, chain,
                   r"expired|not ?after|after date")

        good_request(c, good, "after the bad clients")
        server_mismatch(c)
        good_request(c, good, "at the end")
    res.done()


if __name__ == "__main__":
    main()
