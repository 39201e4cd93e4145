# SPDX-License-Identifier: Apache-2.0
"""The multi-cluster gateway (issue 10 item 3, DESIGN §8.1): `cluster.sh up
--clusters west,east --weftd` runs `weftd --mode gateway` on each cluster's
gateway node, with 15008 on its WAN address.

  - its identity is spiffe://<td>/weft/gateway/gw from its own agent; a node
    that is not the registry's gateway cannot get that identity;
  - only 15008 answers on the WAN: its readiness and metrics listen on its
    internal address, which the WAN cannot reach even with a route;
  - before east federates west.local it refuses a west client in the
    handshake; afterwards an independent client (Python ssl + h2) holding a
    west SVID opens the outer tunnel to east's gateway, CONNECTs east node
    2's HBONE address and runs the inner mTLS and HTTP/2 CONNECT inside it
    to east's pod: the bytes echo, the inner peer is east's node identity,
    the destination logs the remote principal; the service-hostname form
    reaches an endpoint's node as well;
  - refused in words, each with a log line: the gateway itself, loopback,
    a pod directly, a port that is not HBONE, another network's node, an
    unknown service; a client of east.local itself (the gateway serves other
    networks); a west client once gateway_trust_domains leaves it out;
  - registry import (issue 10 item 2): east's agent serves its registry
    export to west's agent identity (nodes, workloads and services; no
    policies or bundles; CreateCertificate refused), but not to a west
    workload, nor to an agent of a trust domain east does not federate;
    west's agent, configured with east as a remote network, imports it:
    west's weftd lists east's services with local VIPs from vip_cidr; the
    remote agent stopped, the last import stays, also across a restart of
    west's agent;
  - SIGTERM drains: it stops accepting and exits."""
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from clusterlib import (CLUSTER, ECHO_SERVER, RUN, Cluster, HboneClient,  # noqa: E402
                        HboneError, InnerHbone, Results, agent_svid, deny_policy,
                        echo_probe, load_ca, make_ca, make_svid, netns_socket, require_root,
                        wait_log)
from apps import TCP_FORWARDER  # noqa: E402
from multilib import federate, gw_admin, restart_agent  # noqa: E402
from pcaplib import Capture, tls_flows  # noqa: E402
from cryptography import x509  # noqa: E402

NAME = "mgw"
GW_WAN = ("192.168.50.2", 15008)
res = Results("multi-cluster gateway")


def uri_of(der):
    c = x509.load_der_x509_certificate(der)
    return c.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)[0]


def gw_log(cl):
    return open(os.path.join(RUN, cl.name, "gw", "weftd.log"), errors="replace").read()


def outer(w, key, chain, ebundle):
    h = HboneClient(w.netns("n1"), GW_WAN, key_pem=key, chain_pem=chain, bundle=ebundle,
                    timeout=5)
    h.connect()
    return h


# An independent gRPC client (grpcio) of east's agent on the WAN: Watch,
# then CreateCertificate, with the given client certificate. Prints JSON.
_AGENT_CALLS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import agentlib, grpc
key, chain, bundle = (open(p, "rb").read() for p in sys.argv[2:5])
creds = grpc.ssl_channel_credentials(root_certificates=bundle, private_key=key,
                                     certificate_chain=chain)
ch = grpc.secure_channel(sys.argv[5], creds,
                         options=[("grpc.ssl_target_name_override", "weft-agent")])
out = {}
try:
    snap = next(agentlib.Agent.watch(None, ch, timeout=5))
    out["watch"] = "OK"
    out["kinds"] = sorted(set(u.WhichOneof("kind") for u in snap.upserts))
    out["bundles"] = len(snap.federated)
    out["td"] = snap.trust_domain
except grpc.RpcError as ex:
    out["watch"] = ex.code().name + ": " + (ex.details() or "")
try:
    k, csr = agentlib.make_csr("spiffe://east.local/ns/default/sa/x")
    agentlib.Agent.create(None, ch, csr, timeout=5)
    out["create"] = "OK"
except grpc.RpcError as ex:
    out["create"] = ex.code().name + ": " + (ex.details() or "")
print(json.dumps(out))
"""


def agent_calls(w, e, key, chain, tag):
    d = os.path.join(RUN, w.name, "calls-" + tag)
    os.makedirs(d, exist_ok=True)
    paths = []
    for name, data in (("key", key), ("chain", chain),
                       ("bundle", open(os.path.join(RUN, e.name, "agent", "ca",
                                                    "root-cert.pem"), "rb").read())):
        paths.append(os.path.join(d, name))
        with open(paths[-1], "wb") as f:
            f.write(data)
    lib = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")
    p = w.run("n1", ["/usr/bin/python3", "-c", _AGENT_CALLS, lib] + paths +
              ["%s:15012" % GW_WAN[0]], timeout=30, check=False)
    try:
        import json
        return json.loads(p.stdout)
    except ValueError:
        return {"watch": "no answer: " + p.stderr.decode(errors="replace")[-300:]}


def refused(h, authority):
    sid = h.open(authority)
    return h.status(sid)


def main():
    require_root()
    subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True)
    try:
        p = subprocess.run([CLUSTER, "up", "--name", NAME, "--clusters", "west,east",
                            "--nodes", "2", "--pods", "1", "--weftd",
                            # Istio's unpooled form: a session per connection
                            "--weftd-conf", "max_connections_per_peer: 128"],
                           capture_output=True, text=True, timeout=300)
        res.check(p.returncode == 0, "two clusters with their gateways up%s" % (
            "" if p.returncode == 0 else ": " + (p.stdout + p.stderr)[-1500:]))
        if p.returncode:
            return
        w, e = Cluster(NAME + "-west"), Cluster(NAME + "-east")
        w.nodes = e.nodes = 2
        run(w, e)
    finally:
        subprocess.run([CLUSTER, "down", "--name", NAME], capture_output=True, timeout=180)
        left = subprocess.run(["ip", "netns", "list"], capture_output=True,
                              text=True).stdout
        res.check(NAME + "-" not in left, "down removed every namespace")


def run(w, e):
    st = gw_admin(e, "/stats")
    log = gw_log(e)
    res.check("gateway gw (spiffe://east.local/weft/gateway/gw): outer tunnels on "
              "192.168.50.2:15008" in log, "east's gateway runs --mode gateway on its WAN "
              "address, as spiffe://east.local/weft/gateway/gw")
    res.check(st.get("pods", 0) in (0, [], None), "it enrolls no pods (%s)" % st.get("pods"))
    res.check(not os.path.exists(os.path.join(RUN, e.name, "gw", "cni.sock")),
              "and has no CNI socket: it holds no workload key")
    # A node that is not the gateway cannot get the gateway identity.
    try:
        agent_svid(e, 1, "spiffe://east.local/weft/gateway/node1", impersonate=False)
        res.check(False, "node1 of east got a gateway identity")
    except Exception as ex:  # noqa: BLE001 (the helper raises what the agent said)
        res.check("not a gateway" in str(ex) or "PERMISSION_DENIED" in str(ex),
                  "east's agent refuses node1 a gateway identity (%s)" %
                  str(ex).strip().splitlines()[-1][:120])
    # Only 15008 on the WAN.
    wan = "%s-wan" % NAME
    subprocess.run(["ip", "-n", wan, "addr", "add", "192.168.50.254/24", "dev", "br0"],
                   check=True)
    subprocess.run(["ip", "-n", wan, "route", "add", "172.30.0.0/24", "via", "192.168.50.2"],
                   check=True)
    for port in (15021, 15020, 15000):
        r = subprocess.run(["ip", "netns", "exec", wan, "curl", "-s", "-m", "2", "-o",
                            "/dev/null", "-w", "%{http_code}",
                            "http://192.168.50.2:%d/healthz/ready" % port],
                           capture_output=True, text=True)
        res.check(r.stdout in ("000", ""), "the WAN gets nothing from the gateway's WAN "
                  "address on %d (curl %s)" % (port, r.stdout or r.returncode))
    r = subprocess.run(["ip", "netns", "exec", wan, "curl", "-s", "-m", "2", "-o", "/dev/null",
                        "-w", "%{http_code}", "http://172.30.0.249:15021/healthz/ready"],
                       capture_output=True, text=True)
    res.check(r.stdout in ("000", ""), "nor from its internal address, with a route to it "
              "(curl %s)" % r.stdout)

    wid = "spiffe://west.local/ns/default/sa/sa-n1-p1"
    key, chain = agent_svid(w, 1, wid)
    ebundle = open(os.path.join(RUN, e.name, "agent", "ca", "root-cert.pem"), "rb").read()
    try:
        h = outer(w, key, chain, ebundle)
        status, _ = h.roundtrip("172.30.0.2:15008", b"x", timeout=3)
        got = "status %s, %s" % (status, h.closed)
    except (ssl.SSLError, OSError, HboneError) as ex:
        status, got = None, str(ex)[:80]
    res.check(status is None and "unknown ca" in got.lower(),
              "before federation, east's gateway refuses a west.local client (%s)" % got)
    res.check(federate(e, w), "east's agent federates west.local: its gateway and nodes "
              "accept it")

    e.py("n2-p1", ECHO_SERVER, ["8080"])
    e.py("n1-p1", ECHO_SERVER, ["8080"])
    e.wait_port("n2-p1", "127.0.0.1", 8080)
    e.wait_port("n1-p1", "127.0.0.1", 8080)
    epod2, epod1 = e.ip("n2-p1"), e.ip("n1-p1")

    # Double HBONE to east node 2, weft's form.
    h = outer(w, key, chain, ebundle)
    res.check(uri_of(h.peer_cert()) == "spiffe://east.local/weft/gateway/gw",
              "the outer tunnel's server is east's gateway identity")
    sid = h.open("172.30.0.2:15008")
    res.check(h.status(sid) == 200, "CONNECT 172.30.0.2:15008 on the outer tunnel: 200")
    start = os.path.getsize(os.path.join(RUN, e.name, "n2", "weftd.log"))
    marker = b"weft-cross-cluster-%d" % os.getpid()
    try:
        inner = InnerHbone(h, sid, key, chain, ebundle).connect()
        res.check(uri_of(inner.peer_cert()) == "spiffe://east.local/weft/node/node2",
                  "the inner mTLS, end to end through the gateway, is with east node 2's "
                  "identity")
        status, data = inner.roundtrip("%s:8080" % epod2, marker)
        res.check(status == 200 and data == marker, "the inner CONNECT into east's pod "
                  "n2-p1 echoes (%s, %r)" % (status, data[:40]))
    except (ssl.SSLError, OSError, HboneError) as ex:
        res.check(False, "double HBONE through east's gateway: %s" % ex)
    line = wait_log(e, 2, re.escape(wid), start=start)
    res.check(line is not None, "east node 2 saw the remote principal %s (%s)" % (
        wid, (line or "no line").split("weftd: ", 1)[-1].strip()[:140]))
    h.close()

    # Istio's form: a service hostname; the gateway picks an endpoint's node.
    seen = set()
    for i in range(4):
        h = outer(w, key, chain, ebundle)
        sid = h.open("svc-p1.default.svc.cluster.local:80")
        if h.status(sid) != 200:
            res.check(False, "service-hostname CONNECT: %s" % h.streams[sid])
            break
        try:
            inner = InnerHbone(h, sid, key, chain, ebundle).connect()
            node = uri_of(inner.peer_cert()).rsplit("/", 1)[-1]
            pod = epod1 if node == "node1" else epod2
            status, data = inner.roundtrip("%s:8080" % pod, b"svc %d" % i)
            if status == 200 and data == b"svc %d" % i:
                seen.add(node)
        except (ssl.SSLError, OSError, HboneError) as ex:
            res.check(False, "service-hostname double HBONE: %s" % ex)
        h.close()
    res.check(seen == {"node1", "node2"}, "svc-p1.default.svc.cluster.local:80 reaches both "
              "endpoints' nodes in turn (%s)" % sorted(seen))

    # Refusals, each in words.
    h = outer(w, key, chain, ebundle)
    for authority, why in (("172.30.0.249:15008", "is a gateway"),
                           ("127.0.0.1:15000", "not a node of network east"),
                           ("%s:8080" % epod2, "not a node of network east"),
                           ("172.30.0.1:22", "takes HBONE on port 15008 only"),
                           ("172.30.0.250:15012", "not a node of network east"),
                           ("nope.default.svc.cluster.local:80", "no service default/nope"),
                           ("svc-p1.default.svc:81", "with port 81"),
                           ("evil:80", "neither")):
        off = len(gw_log(e))
        status = refused(h, authority)
        time.sleep(0.1)
        new = gw_log(e)[off:]
        res.check(status == 400 and why in new, "CONNECT %s: %s, logged: %s" % (
            authority, status, next((ln.split("weftd: ", 1)[-1][:150]
                                     for ln in new.splitlines() if "refused" in ln), "none")))
    h.close()
    # East's own workloads do not use their own gateway.
    ekey, echain = agent_svid(e, 1, "spiffe://east.local/ns/default/sa/sa-n1-p1")
    off = len(gw_log(e))
    h = HboneClient(w.netns("n1"), GW_WAN, key_pem=ekey, chain_pem=echain, timeout=5)
    try:
        h.connect()
        sid = h.open("172.30.0.2:15008")
        status = h.status(sid)
    except (ssl.SSLError, OSError, HboneError) as ex:
        status = str(ex)
    h.close()
    time.sleep(0.2)
    res.check(status != 200 and "the gateway's own" in gw_log(e)[off:],
              "a client of east.local itself is refused by its own gateway (%s)" % status)

    registry_import(w, e, key, chain)
    vip = source_side(w, e)
    if vip:
        pooling(w, e, vip)
        wire(w, e, vip)
        faults(w, e, vip)
        destination_policy(w, e, vip)
        explained(w, vip)
        inner_refused(w, e, vip)
        gateway_refused(w, e, vip)
        istio_form(w, e, vip)

    # A third trust domain with its own CA, which east does not federate:
    # refused in the handshake.
    skey, schain = make_svid("spiffe://south.local/ns/default/sa/x", ca=make_ca("south CA"))
    off = len(gw_log(e))
    try:
        h = outer(w, skey, schain, ebundle)
        status, _ = h.roundtrip("172.30.0.2:15008", b"x", timeout=3)
        got = "status %s, %s" % (status, h.closed)
    except (ssl.SSLError, OSError, HboneError) as ex:
        status, got = None, str(ex)[:80]
    # Logged when the connection ends: after the alert weftd waits up to 5 s
    # for the client's close.
    deadline, line = time.time() + 7, None
    while line is None and time.time() < deadline:
        line = next((ln for ln in gw_log(e)[off:].splitlines()
                     if "failed before HTTP/2" in ln), None)
        time.sleep(0.2)
    res.check(status is None and line is not None,
              "a workload of south.local (a third trust domain, its own CA) is refused by "
              "east's gateway in the handshake (%s): %s" % (
                  got, (line or "no line").split("weftd: ", 1)[-1][:160]))
    # Let through by a misconfigured gateway (a plain TCP forwarder on the
    # gateway's WAN address to node 2's HBONE port): node 2 refuses it itself,
    # while a west workload passes the same way.
    fwd = e.py("gw", TCP_FORWARDER, [GW_WAN[0], "15999", "172.30.0.2", "15008"])
    e.wait_port("gw", GW_WAN[0], 15999)
    got = {}
    off = os.path.getsize(os.path.join(RUN, e.name, "n2", "weftd.log"))
    for who, k, c in (("south", skey, schain), ("west", key, chain)):
        try:
            h = HboneClient(w.netns("n1"), (GW_WAN[0], 15999), key_pem=k, chain_pem=c,
                            bundle=ebundle, timeout=5)
            h.connect()
            status, data = h.roundtrip("%s:8080" % epod2, b"through", timeout=3)
            got[who] = "status %s %r" % (status, data[:10])
            h.close()
        except (ssl.SSLError, OSError, HboneError) as ex:
            got[who] = str(ex)[:80]
    fwd.kill()
    line = next((ln for ln in open(os.path.join(RUN, e.name, "n2", "weftd.log"),
                                   errors="replace").read()[off:].splitlines()
                 if "failed before HTTP/2" in ln), None)
    res.check(not got["south"].startswith("status 200") and line is not None and
              got["west"] == "status 200 b'through'",
              "past a misconfigured gateway, east's node 2 refuses south.local in the "
              "handshake itself (%s: %s), and admits west (%s)" % (
                  got["south"], (line or "no line").split("weftd: ", 1)[-1][:160],
                  got["west"]))

    # SIGTERM: it drains and exits; new tunnels are refused.
    pid = int(open(os.path.join(RUN, e.name, "gw", "weftd.pid")).read().split()[0])
    os.kill(pid, 15)
    deadline = time.time() + 15
    while time.time() < deadline and os.path.exists("/proc/%d" % pid):
        time.sleep(0.1)
    res.check(not os.path.exists("/proc/%d" % pid), "SIGTERM: the gateway drains and exits")
    try:
        status, _ = outer(w, key, chain, ebundle).roundtrip("172.30.0.2:15008", b"x",
                                                            timeout=2)
    except (ssl.SSLError, OSError, HboneError):
        status = None
    res.check(status is None, "and nothing takes new outer tunnels on the WAN address")


def east_services(w):
    try:
        return [x for x in w.admin(1, "/services") if x.get("network") == "east"]
    except (RuntimeError, ValueError):
        return []


def wait_east_services(w, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = east_services(w)
        if got:
            return got
        time.sleep(0.2)
    return []


def registry_import(w, e, wkey, wchain):
    akey, achain = make_svid("spiffe://west.local/weft/agent", ca=load_ca(w))
    got = agent_calls(w, e, akey, achain, "agent")
    res.check(got.get("watch") == "OK" and got.get("kinds") == ["node", "service", "workload"]
              and got.get("bundles") == 0 and got.get("td") == "east.local",
              "east's agent serves west's agent identity its registry export: nodes, "
              "workloads and services, no policies or bundles (%s)" % got)
    res.check(got.get("create", "").startswith("PERMISSION_DENIED"),
              "and refuses it CreateCertificate (%s)" % got.get("create"))
    got = agent_calls(w, e, wkey, wchain, "workload")
    res.check(got.get("watch", "").startswith("UNAUTHENTICATED"),
              "a west workload may not watch east's registry (%s)" % got.get("watch"))
    # export_to: an agent federated but not listed is refused.
    y = os.path.join(RUN, e.name, "agent", "agent.yaml")
    conf = open(y).read()
    with open(y, "a") as f:
        f.write("export_to: [north.local]\n")
    restart_agent(e)
    got = agent_calls(w, e, akey, achain, "agent-not-listed")
    with open(y, "w") as f:
        f.write(conf)
    restart_agent(e)
    res.check(got.get("watch", "").startswith("UNAUTHENTICATED") and
              "export_to" in got.get("watch", ""),
              "with export_to: [north.local], east's agent refuses west's agent (%s)" %
              got.get("watch"))
    skey, schain = make_svid("spiffe://south.local/weft/agent", ca=make_ca("south.local CA"))
    got = agent_calls(w, e, skey, schain, "south")
    res.check(got.get("watch", "").startswith("UNAVAILABLE"),
              "nor the agent of south.local, which east does not federate (%s)" %
              got.get("watch"))

    extra = ("remote_networks:\n  - {network: east, trust_domain: east.local, "
             "agent_address: \"%s:15012\", vip_cidr: 10.97.0.0/16}\n" % GW_WAN[0])
    res.check(federate(w, e, extra), "west's agent federates east.local and imports east "
              "as a remote network")
    remote = wait_east_services(w)
    vip = remote[0]["vips"] if remote else None
    res.check(len(remote) == 1 and remote[0]["name"] == "svc-p1" and len(vip) == 1 and
              vip[0].startswith("10.97.") and remote[0]["ports"] ==
              [{"port": 80, "target_port": 8080}],
              "west's weftd lists east's svc-p1 with a local VIP from vip_cidr (%s)" % remote)
    local = [x for x in w.admin(1, "/services") if x.get("network") == ""]
    res.check([x["vips"] for x in local] == [["10.96.0.1"]],
              "beside its own svc-p1 on 10.96.0.1, the same name and VIP as east's own: "
              "every lookup is scoped by network (%s)" % [x["vips"] for x in local])
    st = w.admin(1, "/stats").get("remote_networks")
    res.check(st == [{"network": "east", "trust_domain": "east.local", "nodes": 3,
                      "workloads": 2, "services": 1, "unpooled": False}],
              "its /stats: network east of east.local, 3 nodes (the gateway among them), "
              "2 workloads, 1 service (%s)" % st)

    # The remote agent away: the last import stays, across our restart too.
    subprocess.run([CLUSTER, "stop", "--name", e.name, "agent"], check=True,
                   capture_output=True)
    alog = os.path.join(RUN, w.name, "agent", "agent.log")
    deadline = time.time() + 10
    while time.time() < deadline and "stays in service" not in open(alog).read():
        time.sleep(0.2)
    res.check("stays in service" in open(alog).read() and
              [x["vips"] for x in east_services(w)] == [vip],
              "east's agent stopped: west's agent says so, the import stays (%s)" %
              [x["vips"] for x in east_services(w)])
    v0 = w.admin(1, "/stats")["registry_version"]
    restart_agent(w)
    deadline = time.time() + 15
    while time.time() < deadline and w.admin(1, "/stats")["registry_version"] == v0:
        time.sleep(0.2)
    time.sleep(0.5)
    res.check([x["vips"] for x in east_services(w)] == [vip],
              "west's agent restarted while east's is away: the import is loaded from its "
              "state, same VIP (%s)" % [x["vips"] for x in east_services(w)])
    # A local service now takes the address east's got: west's agent imports
    # again and east's service moves; the local one wins.
    if vip:
        path = os.path.join(w.dir, "registry", "registry.yaml")
        orig = open(path).read()
        with open(path + ".new", "w") as f:
            f.write(orig + "  - name: squat\n    namespace: default\n    vips: [%s]\n"
                    "    ports: [{port: 80}]\n" % vip[0])
        os.rename(path + ".new", path)
        deadline, moved = time.time() + 10, None
        while time.time() < deadline:
            moved = [x["vips"] for x in east_services(w)]
            if moved and moved != [vip]:
                break
            time.sleep(0.2)
        local = [x["vips"] for x in w.admin(1, "/services") if x.get("name") == "squat"]
        res.check(moved and moved != [vip] and moved[0][0].startswith("10.97.") and
                  local == [vip],
                  "a local service given east's VIP %s: east's service moves to %s, the local "
                  "one keeps it" % (vip[0], moved))
        with open(path + ".new", "w") as f:
            f.write(orig)
        os.rename(path + ".new", path)
    subprocess.run([CLUSTER, "start", "--name", e.name, "agent"], check=True,
                   capture_output=True)


def source_side(w, e):
    """An unmodified app in west dials east's svc-p1 by its local VIP: weftd
    on west node 1 takes it through east's gateway, end to end mTLS with
    the east node of the endpoint it picked."""
    remote = wait_east_services(w)
    if not remote:
        res.check(False, "no east service to dial")
        return
    vip = remote[0]["vips"][0]
    offs = [os.path.getsize(os.path.join(RUN, e.name, "n%d" % k, "weftd.log")) for k in (1, 2)]
    errs = [echo_probe(w.netns("n1-p1"), vip, 80) for _ in range(6)]
    res.check(errs == [None] * 6, "west's n1-p1 reaches east's svc-p1 at its local VIP %s:80, "
              "6 connections echo (%s)" % (vip, [x for x in errs if x][:2]))
    wid = "spiffe://west.local/ns/default/sa/sa-n1-p1"
    deadline = time.time() + 5
    while True:
        seen = []
        for k in (1, 2):
            log = open(os.path.join(RUN, e.name, "n%d" % k, "weftd.log"),
                       errors="replace").read()
            seen.append(sum(1 for ln in log[offs[k - 1]:].splitlines()
                            if "connection complete" in ln and wid in ln))
        if sum(seen) >= 6 or time.time() > deadline:
            break
        time.sleep(0.2)
    res.check(all(seen) and sum(seen) == 6, "east's nodes 1 and 2 delivered them from the "
              "remote principal %s: %s" % (wid, seen))
    tun = w.admin(1, "/tunnels")
    outer = [t for t in tun if t["node"] == "east/gw"]
    inner = [t for t in tun if t.get("via") == "east/gw"]
    res.check(len(outer) == 1 and outer[0]["state"] == "ready",
              "one outer tunnel to east's gateway (%s)" % [(t["node"], t["state"]) for t in outer])
    res.check(sorted(t["node"] for t in inner) == ["east/node1", "east/node2"] and
              all(t["pooled"] and t["streams_total"] == 3 for t in inner),
              "inside it one pooled inner tunnel per east node, 3 connections each (%s)" %
              [(t["node"], t["streams_total"]) for t in inner])
    return vip


def log_since(cl, host, off):
    return open(os.path.join(RUN, cl.name, host, "weftd.log"), errors="replace").read()[off:]


def log_size(cl, host):
    return os.path.getsize(os.path.join(RUN, cl.name, host, "weftd.log"))


def echo_many(w, vip, n, size=65536):
    """n app connections from west's n1-p1 to vip:80, all open at once, each
    sending size random bytes: how many got them back byte-exact."""
    socks, ok = [], [False] * n
    try:
        for _ in range(n):
            s = netns_socket(w.netns("n1-p1"))
            s.settimeout(30)
            s.connect((vip, 80))
            socks.append(s)
    except OSError:
        pass

    def run(i):
        data = os.urandom(size)
        got = bytearray()
        try:
            socks[i].sendall(data)
            while len(got) < size:
                b = socks[i].recv(65536)
                if not b:
                    break
                got += b
            ok[i] = bytes(got) == data
        except OSError:
            pass
    th = [threading.Thread(target=run, args=(i,)) for i in range(len(socks))]
    for t in th:
        t.start()
    for t in th:
        t.join(60)
    for s in socks:
        s.close()
    return sum(ok)


def opened_ok(w):
    """weft_tunnels_opened_total{result="ok"} of west's node 1: handshakes."""
    p = w.run("n1", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15020/metrics"])
    for ln in p.stdout.decode().splitlines():
        if ln.startswith('weft_tunnels_opened_total{result="ok"}'):
            return int(float(ln.split()[-1]))
    return -1


def pooling(w, e, vip):
    before, gs0 = opened_ok(w), gw_admin(e, "/stats")["gateway_streams"]
    n = echo_many(w, vip, 100)
    after, gs1 = opened_ok(w), gw_admin(e, "/stats")["gateway_streams"]
    tun = w.admin(1, "/tunnels")
    outer = [t for t in tun if t["node"] == "east/gw"]
    inner = [t for t in tun if t.get("via") == "east/gw"]
    hb = [e.admin(k, "/stats")["hbone_connections"] for k in (1, 2)]
    res.check(n == 100, "100 concurrent app connections to east's service, 64 KiB each, all "
              "echoed byte-exact (%d)" % n)
    res.check(len(outer) == 1 and len({t["node"] for t in inner}) == len(inner) <= 2 and
              0 <= after - before <= 2,
              "pooled: one outer tunnel, at most one inner session per east node, %d new "
              "handshakes (outer %d, inner %s)" % (after - before, len(outer),
                                                   [t["node"] for t in inner]))
    res.check(hb == [1, 1], "east's nodes each hold one HBONE connection: the inner "
              "session (%s)" % hb)
    res.check(gs1 - gs0 <= 2, "and east's gateway carried %d new outer streams for them" %
              (gs1 - gs0))


def wire(w, e, vip):
    """Captures on both sides of east's gateway while a marker goes through,
    and a core dump of the gateway with the marker in flight."""
    tmp = tempfile.mkdtemp(prefix="weft-mgw-")
    caps = [Capture(e, os.path.join(tmp, "%s.pcap" % i), "gw", i) for i in ("wan0", "eth0")]
    if not all(c.start() for c in caps):
        res.check(False, "tcpdump on east's gateway (wan0, eth0)")
        return
    marker = b"weft-marker-" + os.urandom(8).hex().encode()
    s = netns_socket(w.netns("n1-p1"))
    s.settimeout(10)
    core_hits = None
    try:
        s.connect((vip, 80))
        s.sendall(marker * 64)
        got = b""
        while len(got) < len(marker) * 64:
            b = s.recv(65536)
            if not b:
                break
            got += b
        # The marker again, and the gateway's memory taken while the
        # connection holds it (sent, echoed, not yet read back).
        s.sendall(marker * 64)
        pid = int(open(os.path.join(RUN, e.name, "gw", "weftd.pid")).read().split()[0])
        core = os.path.join(tmp, "gw.core")
        g = subprocess.run(["gcore", "-o", core, str(pid)], capture_output=True, timeout=60)
        cores = [f for f in os.listdir(tmp) if f.startswith("gw.core")]
        if g.returncode == 0 and cores:
            data = open(os.path.join(tmp, cores[0]), "rb").read()
            core_hits = (data.count(marker[:20]), len(data))
    finally:
        s.close()
    stats = [c.stop() for c in caps]
    res.check(got == marker * 64, "the marker went through east's gateway and back")
    res.check(core_hits is not None and core_hits[0] == 0,
              "a core dump of east's gateway (gcore, %s bytes) taken with the marker in "
              "flight does not hold it (%s hits)" % (core_hits and core_hits[1],
                                                     core_hits and core_hits[0]))
    for c, (dropped, _) in zip(caps, stats):
        data = open(c.path, "rb").read()
        flows, bad = tls_flows(c.path, 15008)
        res.check(marker[:20] not in data and flows and not bad and not dropped,
                  "east's gateway %s: %d TCP connections on 15008, both ways TLS records only, "
                  "no marker, nothing dropped (%s)" % (c.iface, flows, bad[:2]))


def faults(w, e, vip):
    # The gateway killed: an open cross-cluster connection resets promptly.
    s = netns_socket(w.netns("n1-p1"))
    s.settimeout(10)
    s.connect((vip, 80))
    s.sendall(b"hello")
    first = s.recv(100)
    off = log_size(w, "n1")
    t0 = time.time()
    subprocess.run([CLUSTER, "stop", "--name", e.name, "gateway", "--signal", "KILL"],
                   check=True, capture_output=True)
    try:
        end = s.recv(100)
        how = "EOF" if end == b"" else "data %r" % end
    except OSError as ex:
        how = type(ex).__name__
    took = time.time() - t0
    s.close()
    res.check(first == b"hello" and how in ("EOF", "ConnectionResetError") and took < 2,
              "east's gateway killed: the open connection ends at once (%s after %.2f s)" %
              (how, took))
    err = echo_probe(w.netns("n1-p1"), vip, 80, timeout=5)
    time.sleep(0.2)
    new = log_since(w, "n1", off)
    line = next((ln for ln in new.splitlines() if "GATEWAY_CONNECT" in ln), None)
    res.check(err is not None and line is not None,
              "with it down, a new connection fails as GATEWAY_CONNECT, in words: %s" %
              (line or "no line").split("weftd: ", 1)[-1][:200])
    subprocess.run([CLUSTER, "start", "--name", e.name, "gateway"], check=True,
                   capture_output=True)
    t0 = time.time()
    while time.time() - t0 < 5 and echo_probe(w.netns("n1-p1"), vip, 80, timeout=1):
        time.sleep(0.05)
    took = time.time() - t0
    res.check(took < 2, "restarted, new connections work within %.2f s" % took)
    # The remote agent stopped: cross-cluster traffic goes on.
    subprocess.run([CLUSTER, "stop", "--name", e.name, "agent"], check=True,
                   capture_output=True)
    n = echo_many(w, vip, 10)
    subprocess.run([CLUSTER, "start", "--name", e.name, "agent"], check=True,
                   capture_output=True)
    res.check(n == 10, "east's agent stopped: cross-cluster connections still work on "
              "current certificates and the last import (%d of 10)" % n)


def destination_policy(w, e, vip):
    wid = "spiffe://west.local/ns/default/sa/sa-n1-p1"
    off = log_size(w, "n1")
    res.check(e.set_policies("policies:\n" + deny_policy("deny-west", "app-p1", wid)),
              "east's registry gets a DENY for %s" % wid)
    err = echo_probe(w.netns("n1-p1"), vip, 80)
    time.sleep(0.2)
    line = next((ln for ln in log_since(w, "n1", off).splitlines()
                 if "[DENY]" in ln and "401" in ln), None)
    res.check(err is not None and line is not None, "east's node refuses it (401): west's "
              "weftd says so: %s" % (line or "no line").split("weftd: ", 1)[-1][:200])
    allow = ("  - name: allow-%s\n    namespace: default\n    scope: workload\n"
             "    selector: {app: app-p1}\n    action: ALLOW\n    rules:\n"
             "      - principals: [\"%s\"]\n")
    e.set_policies("policies:\n" + allow % ("west", wid))
    res.check(echo_probe(w.netns("n1-p1"), vip, 80) is None,
              "an ALLOW for the west principal admits it")
    e.set_policies("policies:\n" + allow % ("other", "spiffe://west.local/ns/default/sa/x"))
    res.check(echo_probe(w.netns("n1-p1"), vip, 80) is not None,
              "an ALLOW for another principal only does not")
    e.set_policies("policies: []\n")


def explained(w, vip):
    """weftctl explain on west's node 1 names the route through the gateway."""
    p = w.run("n1", ["curl", "-sS", "--max-time", "5",
                     "http://127.0.0.1:15000/explain?src=%s&dst=%s:80" % (w.ip("n1-p1"), vip)])
    import json
    ex = json.loads(p.stdout)
    route = [x["says"] for x in ex.get("steps", []) if x["step"] == "route"]
    res.check(ex.get("verdict") == "allow" and route and "network east" in route[0] and
              "gateway gw" in route[0] and "network east" in ex.get("sentence", ""),
              "weftctl explain: the route is east's gateway and the inner mTLS, the policy "
              "east's (%s | %s)" % (route[:1], ex.get("sentence", "")[:120]))


def swap_east_nodes(e):
    """East's registry with node1's and node2's addresses swapped (what a
    stale or wrong inventory looks like from the other network)."""
    path = os.path.join(e.dir, "registry", "registry.yaml")
    text = open(path).read()
    swapped = (text.replace("address: 172.30.0.1\n", "address: @1\n")
               .replace("address: 172.30.0.2\n", "address: 172.30.0.1\n")
               .replace("address: @1\n", "address: 172.30.0.2\n"))
    with open(path + ".new", "w") as f:
        f.write(swapped)
    os.rename(path + ".new", path)


def inner_refused(w, e, vip):
    """The inner hop: east's registry says node2 is at node1's address, so
    west's inner mTLS meets node1 where it expects node2: INNER_TLS_FAILURE."""
    ver = w.admin(1, "/stats")["registry_version"]
    swap_east_nodes(e)
    deadline = time.time() + 10
    while time.time() < deadline and w.admin(1, "/stats")["registry_version"] == ver:
        time.sleep(0.2)
    # The inner tunnels up now go on where they went: restarting east's
    # gateway ends them, and new ones follow the registry.
    for op in ("stop", "start"):
        subprocess.run([CLUSTER, op, "--name", e.name, "gateway"], check=True,
                       capture_output=True)
    off = log_size(w, "n1")
    errs = [echo_probe(w.netns("n1-p1"), vip, 80, timeout=5) for _ in range(4)]
    time.sleep(0.3)
    line = next((ln for ln in log_since(w, "n1", off).splitlines()
                 if "INNER_TLS_FAILURE" in ln and "expected" in ln), None)
    res.check(any(errs) and line is not None, "east's registry puts node2 at node1's address: "
              "the inner mTLS fails as INNER_TLS_FAILURE, in words: %s" %
              (line or "no line").split("weftd: ", 1)[-1][:220])
    swap_east_nodes(e)
    deadline = time.time() + 10
    while time.time() < deadline and echo_probe(w.netns("n1-p1"), vip, 80, timeout=2):
        time.sleep(0.3)
    res.check(echo_probe(w.netns("n1-p1"), vip, 80) is None, "put right, it works again")


def set_federated(e, pem):
    """East's federation_dir holds west.local.pem = pem (None: removed), SIGHUP."""
    f = os.path.join(RUN, e.name, "agent", "federation", "west.local.pem")
    if pem is None:
        os.unlink(f)
    else:
        with open(f, "w") as out:
            out.write(pem)
    pid = int(open(os.path.join(RUN, e.name, "agent", "agent.pid")).read().split()[0])
    os.kill(pid, signal.SIGHUP)
    want = [] if pem is None else ["west.local"]
    deadline = time.time() + 10
    while time.time() < deadline:
        if gw_admin(e, "/stats").get("federated_trust_domains") == want:
            return True
        time.sleep(0.1)
    return False


def gateway_refused(w, e, vip):
    f = os.path.join(RUN, e.name, "agent", "federation", "west.local.pem")
    pem = open(f).read()
    res.check(set_federated(e, None), "east stops federating west.local (SIGHUP)")
    for op in ("stop", "start"):    # no outer tunnel from before
        subprocess.run([CLUSTER, op, "--name", e.name, "gateway"], check=True,
                       capture_output=True)
    off = log_size(w, "n1")
    err = echo_probe(w.netns("n1-p1"), vip, 80)
    time.sleep(0.2)
    line = next((ln for ln in log_since(w, "n1", off).splitlines()
                 if "GATEWAY_REFUSED" in ln), None)
    res.check(err is not None and line is not None, "east's gateway refuses west's workload "
              "in the handshake: GATEWAY_REFUSED, in words: %s" %
              (line or "no line").split("weftd: ", 1)[-1][:200])
    res.check(set_federated(e, pem), "east federates west.local again")
    deadline = time.time() + 5
    while time.time() < deadline and echo_probe(w.netns("n1-p1"), vip, 80, timeout=1):
        time.sleep(0.1)
    res.check(echo_probe(w.netns("n1-p1"), vip, 80) is None, "and the connection works again")


def istio_form(w, e, vip):
    y = os.path.join(RUN, w.name, "agent", "agent.yaml")
    text = open(y).read()
    with open(y, "w") as f:
        f.write(text.replace("vip_cidr: 10.97.0.0/16}", "vip_cidr: 10.97.0.0/16, form: istio}"))
    restart_agent(w)
    deadline = time.time() + 15
    while time.time() < deadline:
        st = w.admin(1, "/stats").get("remote_networks") or [{}]
        if st[0].get("unpooled"):
            break
        time.sleep(0.2)
    res.check(st[0].get("unpooled") is True, "west's agent says east is reached in Istio's "
              "form (form: istio): weftd has it")
    before, off = opened_ok(w), log_size(w, "n1")
    gs0 = gw_admin(e, "/stats")["gateway_streams"]
    eoff = [log_size(e, "n%d" % k) for k in (1, 2)]
    n = echo_many(w, vip, 100)
    after = opened_ok(w)
    gs = gw_admin(e, "/stats")["gateway_streams"] - gs0
    time.sleep(0.5)
    by_name = [sum(1 for ln in log_since(e, "n%d" % k, eoff[k - 1]).splitlines()
                   if "connection complete" in ln and "svc-p1.default.svc.cluster.local:80" in ln)
               for k in (1, 2)]
    if n != 100:
        sys.stderr.write("".join(ln + "\n" for ln in log_since(w, "n1", off).splitlines()
                                 if "refused" in ln or "failed" in ln)[-3000:])
    res.check(n == 100 and after - before == 100 and gs == 100,
              "Istio's form: 100 connections byte-exact, 100 inner sessions (%d handshakes, "
              "%d outer streams at east's gateway)" % (after - before, gs))
    res.check(all(by_name) and sum(by_name) == 100,
              "both ways by the service's name: east's gateway picked the node, the node "
              "its endpoint; both east nodes served (%s)" % by_name)
    with open(y, "w") as f:
        f.write(text)
    restart_agent(w)


if __name__ == "__main__":
    main()
    sys.exit(res.done())
