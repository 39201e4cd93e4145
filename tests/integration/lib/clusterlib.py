# SPDX-License-Identifier: Apache-2.0
"""Drive the simulated cluster (tests/cluster/cluster.sh) from Python tests.

A Cluster is brought up in __enter__ and always torn down in __exit__ (and
at exit), also when the test fails. Apps run inside pod namespaces with
`ip netns exec`; they are plain programs (python3, socat, curl) that know
nothing about weft.
"""
import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

from apps import CHAT_CLIENT, ECHO_CLIENT, ECHO_SERVER  # noqa: F401 (re-exported)
from results import Results  # noqa: F401

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CLUSTER = os.path.join(ROOT, "tests", "cluster", "cluster.sh")
RUN = os.environ.get("WEFT_TEST_RUN", "/run/weft-test")
# WEFT_BUILD picks another build tree (the sanitizer pass: build-asan);
# cluster.sh reads the same variable.
BUILD = os.environ.get("WEFT_BUILD") or os.path.join(ROOT, "build")
# tests/run.sh's sanitizer pass sets WEFT_SANITIZER ("address,undefined"). A
# sanitized weftd's VmRSS includes ASan's shadow memory and its quarantine of
# freed blocks (up to 256 MiB), so bounds on memory are checked only in the
# plain pass (memory_check); every other check runs in both.
SANITIZER = os.environ.get("WEFT_SANITIZER", "")


def memory_check(res, cond, what):
    """res.check(cond, what) for a bound on memory; under a sanitizer the
    figure is printed as information instead."""
    if not SANITIZER:
        return res.check(cond, what)
    print("  info (memory bound not checked under %s; %s) %s" % (
        SANITIZER, "holds" if cond else "exceeded", what), flush=True)
    return True


def skip(why):
    print("SKIP:", why)
    sys.exit(77)


def require_root():
    if os.geteuid() != 0:
        skip("needs root (network namespaces)")
    if not os.path.exists(os.path.join(BUILD, "weftd")):
        skip("%s/weftd not built" % BUILD)


class Cluster:
    weftd_flag = "--weftd"  # one weftd per node

    def __init__(self, name, nodes=2, pods=2, conf=(), ttl=None, extra=()):
        self.name = name
        self.nodes = nodes
        self.pods = pods
        self.conf = list(conf)
        self.ttl = ttl
        self.extra = list(extra)
        self.procs = []
        self.dir = os.path.join(RUN, name)

    # --- lifecycle ------------------------------------------------------------
    def sh(self, *args, check=True, timeout=120):
        p = subprocess.run([CLUSTER] + list(args), capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError("cluster.sh %s failed (%d):\n%s%s" % (
                " ".join(args), p.returncode, p.stdout[-3000:], p.stderr[-3000:]))
        return p.stdout

    def up(self):
        subprocess.run([CLUSTER, "down", "--name", self.name], capture_output=True)
        atexit.register(self.down)
        args = ["up", "--name", self.name, "--nodes", str(self.nodes), "--pods",
                str(self.pods), self.weftd_flag]
        if self.ttl:
            args += ["--ttl", self.ttl]
        for c in self.conf:
            args += ["--weftd-conf", c]
        self.sh(*(args + self.extra), timeout=180)
        return self

    def down(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        self.procs = []
        subprocess.run([CLUSTER, "down", "--name", self.name], capture_output=True,
                       timeout=120)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        if exc[0] is not None:
            for k in range(1, self.nodes + 1):
                sys.stderr.write("---- weftd node%d log (tail) ----\n%s\n" % (
                    k, self.weftd_log(k)[-4000:]))
        self.down()

    # --- facts ------------------------------------------------------------------
    def netns(self, target):
        m = re.fullmatch(r"n(\d+)-p(\d+)", target)
        if m:
            return "%s-%s" % (self.name, target)
        m = re.fullmatch(r"(?:n|node)(\d+)", target)
        if m:
            return "%s-n%s" % (self.name, m.group(1))
        return "%s-%s" % (self.name, target)

    def ip(self, pod):
        return self.sh("ip", "--name", self.name, pod).strip()

    def weftd_log(self, k):
        try:
            return open(os.path.join(self.dir, "n%d" % k, "weftd.log"), errors="replace").read()
        except OSError:
            return ""

    def agent_log(self):
        try:
            return open(os.path.join(self.dir, "agent", "agent.log"), errors="replace").read()
        except OSError:
            return ""

    # --- running things -----------------------------------------------------------
    def run(self, target, cmd, timeout=60, check=True, input=None):
        p = subprocess.run(["ip", "netns", "exec", self.netns(target)] + cmd,
                           capture_output=True, timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise RuntimeError("%s in %s failed (%d): %s" % (
                cmd, target, p.returncode, p.stderr.decode(errors="replace")[-2000:]))
        return p

    def spawn(self, target, cmd, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.netns(target)] + cmd, **kw)
        self.procs.append(p)
        return p

    def py(self, target, code, args=(), **kw):
        """Start /usr/bin/python3 -c code inside target."""
        return self.spawn(target, ["/usr/bin/python3", "-c", code] + list(args), **kw)

    def set_policies(self, text, wait_ver=True, timeout=10):
        """Replace the registry's policies with text (YAML from "policies:" on),
        rename-replacing the file the agent watches; with wait_ver, True once
        every node's weftd has a newer registry version (False on timeout)."""
        path = os.path.join(self.dir, "registry", "registry.yaml")
        base = open(path).read().split("\npolicies:")[0].rstrip("\n") + "\n"
        ver = {k: self.admin(k, "/stats")["registry_version"]
               for k in range(1, self.nodes + 1)}
        with open(path + ".new", "w") as f:
            f.write(base + text)
        os.rename(path + ".new", path)
        deadline = time.time() + timeout
        while wait_ver and time.time() < deadline:
            if all(self.admin(k, "/stats")["registry_version"] > v for k, v in ver.items()):
                return True
            time.sleep(0.1)
        return not wait_ver

    def admin(self, k, path):
        """GET the admin API of node k (127.0.0.1:15000 in its netns)."""
        p = self.run("n%d" % k, ["curl", "-sS", "--max-time", "5",
                                 "http://127.0.0.1:15000" + path])
        return json.loads(p.stdout)

    def wait_port(self, target, ip, port, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            p = self.run(target, ["/usr/bin/python3", "-c",
                                  "import socket,sys; socket.create_connection((sys.argv[1], "
                                  "int(sys.argv[2])), timeout=1).close()", ip, str(port)],
                         check=False)
            if p.returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def ss(self, target, filt):
        """`ss` lines of the established TCP connections in target's netns
        that match the ss filter filt, e.g. "( dport = :15008 )"."""
        p = self.run(target, ["ss", "-Htn", "state", "established", filt])
        return [ln for ln in p.stdout.decode().splitlines() if ln.strip()]


# --- HBONE test clients (test_dp_identity.py, test_dp_hostile.py) ------------------
# A test-side HBONE client: TLS 1.3 + ALPN h2 + HTTP/2 CONNECT (python3-ssl and
# python3-h2), on a socket created inside a cluster netns, so the test process
# itself stays in the root netns and sends nothing outside the cluster's.
import ctypes  # noqa: E402
import datetime  # noqa: E402
import secrets  # noqa: E402
import socket  # noqa: E402
import ssl  # noqa: E402
import tempfile  # noqa: E402

CLONE_NEWNET = 0x40000000
_libc = None


def netns_socket(netns, family=socket.AF_INET, type=socket.SOCK_STREAM):
    """A socket created inside the named netns; the calling thread switches
    there for the socket() call only and comes back."""
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open("/var/run/netns/" + netns, os.O_RDONLY)
        try:
            if _libc.setns(target, CLONE_NEWNET) != 0:
                e = ctypes.get_errno()
                raise OSError(e, "setns %s: %s" % (netns, os.strerror(e)))
            try:
                return socket.socket(family, type)
            finally:
                if _libc.setns(home, CLONE_NEWNET) != 0:
                    # Never carry on in the wrong namespace.
                    os._exit(3)
        finally:
            os.close(target)
    finally:
        os.close(home)


_AGENT_SVID = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import agentlib, grpc
_, tokfile, bundle, agent, uri, impersonate, ttl = sys.argv[1:8]
token = open(tokfile).read().strip()
key, csr = agentlib.make_csr(uri)
creds = grpc.ssl_channel_credentials(root_certificates=open(bundle, "rb").read())
ch = grpc.secure_channel(agent, creds, options=[("grpc.ssl_target_name_override", "weft-agent")])
req = agentlib.ca_pb2.IstioCertificateRequest(csr=csr.decode(), validity_duration=int(ttl))
if impersonate == "1":
    req.metadata.fields["ImpersonatedIdentity"].string_value = uri
call = ch.unary_unary(agentlib.CREATE,
                      request_serializer=agentlib.ca_pb2.IstioCertificateRequest.SerializeToString,
                      response_deserializer=agentlib.ca_pb2.IstioCertificateResponse.FromString)
chain = call(req, metadata=[("authorization", "Bearer " + token)], timeout=10).cert_chain
print(json.dumps({"key": agentlib.key_pem(key).decode(),
                  "chain": "".join(c if c.endswith("\n") else c + "\n" for c in chain)}))
"""


def agent_svid(cluster, k, uri, impersonate=True, ttl=0):
    """An SVID for uri, asked of the cluster's agent by node k with its bootstrap
    token (from inside node k's netns), as weftd does: (key_pem, chain_pem)."""
    p = cluster.run("n%d" % k, [
        "/usr/bin/python3", "-c", _AGENT_SVID, os.path.dirname(os.path.abspath(__file__)),
        os.path.join(cluster.dir, "n%d" % k, "token"),
        os.path.join(cluster.dir, "agent", "ca", "root-cert.pem"), "172.30.0.250:15012",
        uri, "1" if impersonate else "0", str(ttl)], timeout=30)
    out = json.loads(p.stdout)
    return out["key"].encode(), out["chain"].encode()


def _crypto():
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _pem_cert(cert):
    from cryptography.hazmat.primitives import serialization
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key):
    from cryptography.hazmat.primitives import serialization
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_ca(cn="not-weft test CA"):
    """A fresh root CA (ECDSA P-256): (key, cert)."""
    x509, hashes, _, ec, _, NameOID = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False,
                                         False), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def load_ca(cluster):
    """The cluster agent's CA (key, cert) from its state directory."""
    x509, _, serialization, _, _, _ = _crypto()
    d = os.path.join(cluster.dir, "agent", "ca")
    key = serialization.load_pem_private_key(open(os.path.join(d, "ca-key.pem"), "rb").read(),
                                             None)
    cert = x509.load_pem_x509_certificate(open(os.path.join(d, "ca-cert.pem"), "rb").read())
    return key, cert


def make_svid(uri, ca=None, not_before=None, not_after=None):
    """An X.509-SVID (SPIFFE profile: empty subject, one critical URI SAN, cA=false,
    digitalSignature, serverAuth+clientAuth) for uri, signed by ca=(key, cert) or
    self-signed when ca is None. Returns (key_pem, chain_pem) (leaf, then the CA)."""
    x509, hashes, _, ec, EKU, _ = _crypto()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = not_before or now - datetime.timedelta(minutes=5)
    na = not_after or now + datetime.timedelta(hours=1)
    b = (x509.CertificateBuilder().subject_name(x509.Name([]))
         .issuer_name(ca[1].subject if ca else x509.Name([]))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                        critical=True)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False,
                                      False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([EKU.SERVER_AUTH, EKU.CLIENT_AUTH]),
                        critical=False))
    cert = b.sign(ca[0] if ca else key, hashes.SHA256())
    chain = _pem_cert(cert) + (_pem_cert(ca[1]) if ca else b"")
    return _pem_key(key), chain


def deny_policy(name, app, principal):
    """A workload DENY policy of namespace default for the pods labelled
    app=<app>, against one principal (a registry YAML list entry, without
    the "policies:" line)."""
    return ("  - name: %s\n    namespace: default\n    scope: workload\n"
            "    selector: {app: %s}\n    action: DENY\n    rules:\n"
            "      - principals: [\"%s\"]\n" % (name, app, principal))


def echo_probe(netns, ip, port, timeout=5.0):
    """One app connection to an echo server from a socket in netns: connect,
    send a token, read its echo. None when it worked, else the error in words."""
    tok = ("probe-" + secrets.token_hex(8)).encode()
    s = netns_socket(netns)
    try:
        s.settimeout(timeout)
        s.connect((ip, port))
        s.sendall(tok)
        got = b""
        while len(got) < len(tok):
            b = s.recv(4096)
            if not b:
                return "EOF after %r" % got
            got += b
        return None if got == tok else "echo mismatch %r" % got
    except OSError as e:
        return "%s: %s" % (type(e).__name__, e)
    finally:
        s.close()


class HboneError(Exception):
    pass


def stream_event(conn, streams, ev):
    """A python3-h2 stream event into streams[id] ({"status", "data", "ended",
    "reset"}); received data is acknowledged. True when ev was one."""
    import h2.events
    st = streams.get(getattr(ev, "stream_id", None))
    if isinstance(ev, h2.events.ResponseReceived):
        if st is not None:
            st["status"] = int(dict(ev.headers)[":status"])
    elif isinstance(ev, h2.events.DataReceived):
        if st is not None:
            st["data"] += ev.data
        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
    elif isinstance(ev, h2.events.StreamEnded):
        if st is not None:
            st["ended"] = True
    elif isinstance(ev, h2.events.StreamReset):
        if st is not None:
            st["reset"] = ev.error_code
    else:
        return False
    return True


def client_context(bundle, chain_pem=None, key_pem=None):
    """A TLS 1.3 client context offering h2: verifies against bundle (PEM
    bytes; no verification when empty) and presents chain_pem/key_pem."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    if bundle:
        ctx.load_verify_locations(cadata=bundle.decode())
        ctx.verify_mode = ssl.CERT_REQUIRED
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    if chain_pem:
        with tempfile.TemporaryDirectory(prefix="weft-hbone-") as d:
            cf, kf = os.path.join(d, "chain.pem"), os.path.join(d, "key.pem")
            with open(cf, "wb") as f:
                f.write(chain_pem)
            with open(os.open(kf, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as f:
                f.write(key_pem)
            ctx.load_cert_chain(cf, kf)
    return ctx


class HboneClient:
    """TLS 1.3 (ALPN h2, optional client certificate) to an HBONE listener from a
    socket in netns, then HTTP/2 CONNECT streams with python3-h2.

    connect() raises ssl.SSLError/OSError when the handshake fails. Responses and
    stream ends are collected by pump()."""

    def __init__(self, netns, addr=("172.30.0.2", 15008), key_pem=None, chain_pem=None,
                 bundle=None, timeout=5.0):
        self.netns = netns
        self.addr = addr
        self.key_pem = key_pem
        self.chain_pem = chain_pem
        self.bundle = bundle
        self.timeout = timeout
        self.sock = None
        self.tls = None
        self.h2 = None
        self.local = None
        self.closed = None      # why the connection ended, once it has
        self.streams = {}       # id -> {"status", "data", "ended", "reset"}
        self.remote_max_streams = None

    def tcp(self):
        self.sock = netns_socket(self.netns)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.addr)
        self.local = "%s:%d" % self.sock.getsockname()[:2]
        return self.sock

    def connect(self):
        import h2.config
        import h2.connection
        import h2.settings
        if self.sock is None:
            self.tcp()
        ctx = client_context(self.bundle, self.chain_pem, self.key_pem)
        self.tls = ctx.wrap_socket(self.sock, server_side=False)
        if self.tls.selected_alpn_protocol() != "h2":
            raise HboneError("ALPN: server chose %r" % self.tls.selected_alpn_protocol())
        self.h2 = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False))
        self.h2.initiate_connection()
        self.h2.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        self.flush()
        return self

    def peer_cert(self):
        return self.tls.getpeercert(binary_form=True)

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            try:
                self.tls.sendall(data)
            except (OSError, ssl.SSLError) as e:
                self.closed = "send: %s" % e

    def open(self, authority, headers=()):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)] +
                             list(headers))
        self.streams[sid] = {"status": None, "data": b"", "ended": False, "reset": None}
        self.flush()
        return sid

    def send(self, sid, data, end=False):
        self.h2.send_data(sid, data, end_stream=end)
        self.flush()

    def reset(self, sid, code=8):   # CANCEL
        self.h2.reset_stream(sid, error_code=code)
        self.flush()

    def pump(self, until, timeout=None):
        """Read and handle frames until until() is true or the connection ends or
        timeout passes. Returns until()."""
        import h2.events
        import h2.exceptions
        import h2.settings
        deadline = time.time() + (timeout if timeout is not None else self.timeout)
        while not until() and not self.closed:
            left = deadline - time.time()
            if left <= 0:
                break
            self.tls.settimeout(left)
            try:
                data = self.tls.recv(65536)
            except socket.timeout:
                break
            except (OSError, ssl.SSLError) as e:
                self.closed = "recv: %s" % e
                break
            if not data:
                self.closed = "EOF"
                break
            try:
                events = self.h2.receive_data(data)
            except h2.exceptions.ProtocolError as e:
                self.closed = "HTTP/2 error: %s" % e
                break
            for ev in events:
                if stream_event(self.h2, self.streams, ev):
                    continue
                if isinstance(ev, h2.events.RemoteSettingsChanged):
                    m = ev.changed_settings.get(
                        h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS)
                    if m is not None:
                        self.remote_max_streams = m.new_value
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    self.closed = "GOAWAY (%s)" % ev.error_code
            self.flush()
        return until()

    def status(self, sid, timeout=None):
        st = self.streams[sid]
        self.pump(lambda: st["status"] is not None or st["reset"] is not None, timeout)
        return st["status"]

    def roundtrip(self, authority, payload, timeout=None):
        """CONNECT, send payload and END_STREAM on 200, read to the end of the
        stream: (status, bytes received)."""
        sid = self.open(authority)
        st = self.streams[sid]
        if self.status(sid, timeout) != 200:
            return st["status"], st["data"]
        self.send(sid, payload, end=True)
        self.pump(lambda: st["ended"] or st["reset"] is not None, timeout)
        return st["status"], st["data"]

    def close(self):
        for s in (self.tls, self.sock):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass


def rss_kib(pid):
    """VmRSS of pid in KiB."""
    for line in open("/proc/%d/status" % pid):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS for %d" % pid)


def weftd_pid(cluster, k):
    return int(open(os.path.join(cluster.dir, "n%d" % k, "weftd.pid")).read().split()[0])


def wait_log(cluster, k, pattern, timeout=5.0, start=0):
    """Wait until node k's weftd.log (from byte offset start) has a line matching
    the regex pattern; return the line or None."""
    rx = re.compile(pattern)
    deadline = time.time() + timeout
    while True:
        log = cluster.weftd_log(k)[start:]
        for line in log.splitlines():
            if rx.search(line):
                return line
        if time.time() >= deadline:
            return None
        time.sleep(0.1)


# --- weft as per-pod sidecars (cluster.sh up --weftd-sidecar) ---------------------
class SidecarCluster(Cluster):
    """The same topology with `weftd --mode sidecar` inside every pod's netns
    instead of one weftd per node; sidecar nK-pJ is registry node sc-nK-pJ."""

    weftd_flag = "--weftd-sidecar"

    def __exit__(self, *exc):
        if exc[0] is not None:
            for pod in self.pod_names():
                sys.stderr.write("---- sidecar %s log (tail) ----\n%s\n" % (
                    pod, self.sidecar_log(pod)[-3000:]))
        self.down()

    def pod_names(self):
        return ["n%d-p%d" % (k, j) for k in range(1, self.nodes + 1)
                for j in range(1, self.pods + 1)]

    def sidecar_dir(self, pod):
        k, j = re.fullmatch(r"n(\d+)-p(\d+)", pod).groups()
        return os.path.join(self.dir, "n" + k, "sc", "p" + j)

    def sidecar_log(self, pod):
        try:
            return open(os.path.join(self.sidecar_dir(pod), "weftd.log"),
                        errors="replace").read()
        except OSError:
            return ""

    def sidecar_pid(self, pod):
        with open(os.path.join(self.sidecar_dir(pod), "weftd.pid")) as f:
            return int(f.read().split()[0])

    def sidecar_admin_sock(self, pod):
        """The unix socket of pod's sidecar admin API: in its state dir, outside
        the pod's netns (the pod's apps cannot reach it)."""
        return os.path.join(self.sidecar_dir(pod), "state", "admin.sock")

    def sidecar_admin(self, pod, path, method="GET"):
        """The admin API of pod's sidecar, over its unix socket; the JSON answer."""
        p = subprocess.run(["curl", "-sS", "--fail", "--max-time", "5", "-X", method,
                            "--unix-socket", self.sidecar_admin_sock(pod),
                            "http://localhost" + path], capture_output=True, timeout=10)
        if p.returncode != 0:
            raise RuntimeError("admin %s %s of sidecar %s: %s" % (
                method, path, pod, p.stderr.decode(errors="replace")[-500:]))
        return json.loads(p.stdout)


class InnerHbone:
    """Double HBONE from Python (DESIGN §8.1): TLS 1.3 mTLS (ALPN h2) and HTTP/2
    inside stream sid of an outer HboneClient, as a source weftd runs it
    through a gateway; an independent implementation (ssl.MemoryBIO +
    python3-h2). connect() raises ssl.SSLError/HboneError; roundtrip() as
    HboneClient's."""

    def __init__(self, outer, sid, key_pem, chain_pem, bundle, timeout=5.0):
        self.outer, self.sid, self.timeout = outer, sid, timeout
        self.key_pem, self.chain_pem, self.bundle = key_pem, chain_pem, bundle
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = None
        self.h2 = None
        self.streams = {}

    def _shuttle(self, wait):
        """Send what TLS wrote; when wait, read more of the outer stream."""
        data = self.out.read()
        if data:
            self.outer.send(self.sid, data)
        if not wait:
            return True
        st = self.outer.streams[self.sid]
        self.outer.pump(lambda: st["data"] or st["ended"] or st["reset"] is not None,
                        self.timeout)
        if not st["data"]:
            raise HboneError("outer stream ended (%s)" % (
                "reset %s" % st["reset"] if st["reset"] is not None else
                self.outer.closed or "no data"))
        self.inc.write(st["data"])
        st["data"] = b""
        return True

    def connect(self):
        import h2.config
        import h2.connection
        ctx = client_context(self.bundle, self.chain_pem, self.key_pem)
        self.tls = ctx.wrap_bio(self.inc, self.out, server_side=False)
        while True:
            try:
                self.tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                self._shuttle(True)
        self._shuttle(False)
        self.h2 = h2.connection.H2Connection(config=h2.config.H2Configuration(
            client_side=True, header_encoding="utf-8", validate_outbound_headers=False))
        self.h2.initiate_connection()
        self._flush()
        return self

    def peer_cert(self):
        return self.tls.getpeercert(binary_form=True)

    def _flush(self):
        data = self.h2.data_to_send()
        if data:
            self.tls.write(data)
        self._shuttle(False)

    def roundtrip(self, authority, payload, headers=()):
        sid = self.h2.get_next_available_stream_id()
        self.h2.send_headers(sid, [(":method", "CONNECT"), (":authority", authority)] +
                             list(headers))
        st = self.streams[sid] = {"status": None, "data": b"", "ended": False, "reset": None}
        self._flush()
        sent = False
        deadline = time.time() + self.timeout
        while not st["ended"] and st["reset"] is None and time.time() < deadline:
            if st["status"] == 200 and not sent:
                self.h2.send_data(sid, payload, end_stream=True)
                self._flush()
                sent = True
            elif st["status"] is not None and st["status"] != 200:
                break
            try:
                data = self.tls.read(65536)
            except ssl.SSLWantReadError:
                self._shuttle(True)
                continue
            if not data:
                break
            for ev in self.h2.receive_data(data):
                stream_event(self.h2, self.streams, ev)
            self._flush()
        return st["status"], st["data"]
