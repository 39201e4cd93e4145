# SPDX-License-Identifier: Apache-2.0
"""Helpers for integration tests against a real weft-agent process.

Runs with Debian's /usr/bin/python3 (grpcio, cryptography, protobuf, yaml).
Every test gets a temporary directory, a config, a token file and a
registry, an agent on a free loopback port, and cleans all of it up, also
when the test fails.
"""
import atexit
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
# WEFT_BUILD picks another build tree (the sanitizer pass: build-asan).
BUILD = os.environ.get("WEFT_BUILD") or os.path.join(ROOT, "build")
AGENT = os.path.join(BUILD, "weft-agent")
PYGEN = os.path.join(BUILD, "py")


def _gen_protos():
    """Generate Python stubs for our protos into build/py (not committed)."""
    os.makedirs(PYGEN, exist_ok=True)
    for name in ("ca", "registry"):
        src = os.path.join(ROOT, "proto", name + ".proto")
        out = os.path.join(PYGEN, name + "_pb2.py")
        if not os.path.exists(out) or os.path.getmtime(out) < os.path.getmtime(src):
            subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
                            "--python_out=" + PYGEN, src], check=True)


_gen_protos()
sys.path.insert(0, PYGEN)

import grpc  # noqa: E402
from results import Results  # noqa: E402,F401
import ca_pb2  # noqa: E402
import registry_pb2  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

TD = "cluster.local"
CREATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"
WATCH = "/weft.registry.v1.Registry/Watch"

TOKENS = {
    "node1": "node1-bootstrap-token-0123456789abcdef",
    "node2": "node2-bootstrap-token-fedcba9876543210",
}

REGISTRY = """\
trust_domain: cluster.local
nodes:
  - name: node1
    address: 10.10.0.1
  - name: node2
    address: 10.10.0.2
workloads:
  - name: client-1
    namespace: default
    service_account: client
    node: node1
    ips: [10.20.1.2]
    labels: {app: client}
  - name: echo-1
    namespace: default
    service_account: echo
    node: node2
    ips: [10.20.2.2]
    labels: {app: echo}
services:
  - name: echo
    namespace: default
    vips: [10.96.0.10]
    ports: [{port: 80, target_port: 8080}]
    selector: {app: echo}
"""


def free_port():
    """A free loopback port below the ephemeral range (32768-60999 here):
    an agent restarted on the same ports must not find one taken as the
    source port of some client's connection meanwhile."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            s.close()
    raise RuntimeError("no free port in 20000-32000")


class Agent:
    """A weft-agent process in a temporary directory."""

    def __init__(self, registry=REGISTRY, ttl_max="24h", extra=""):
        self.dir = tempfile.mkdtemp(prefix="weft-agent-test-")
        self.port = free_port()
        self.metrics_port = free_port()
        self.addr = "localhost:%d" % self.port
        self.registry_path = os.path.join(self.dir, "registry.yaml")
        self.log_path = os.path.join(self.dir, "agent.log")
        with open(self.registry_path, "w") as f:
            f.write(registry)
        with open(os.path.join(self.dir, "tokens"), "w") as f:
            f.write("# node token\n")
            for n, t in TOKENS.items():
                f.write("%s %s\n" % (n, t))
        os.chmod(os.path.join(self.dir, "tokens"), 0o600)
        self.config_path = os.path.join(self.dir, "agent.yaml")
        with open(self.config_path, "w") as f:
            f.write("listen: 127.0.0.1:%d\n" % self.port)
            f.write("metrics_listen: 127.0.0.1:%d\n" % self.metrics_port)
            f.write("trust_domain: %s\n" % TD)
            f.write("state_dir: state\n")
            f.write("token_file: tokens\n")
            f.write("registry_file: registry.yaml\n")
            f.write("ttl_max: %s\n" % ttl_max)
            f.write("handshake_timeout_ms: 1000\n")
            f.write("log_level: debug\n")
            f.write(extra)
        self.proc = None
        atexit.register(self.stop)

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([AGENT, "-c", self.config_path], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("weft-agent exited %d:\n%s" % (self.proc.returncode,
                                                                 self.read_log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise RuntimeError("weft-agent did not listen:\n" + self.read_log())
        self.root_pem = open(os.path.join(self.dir, "state", "root-cert.pem"), "rb").read()
        return self

    def metrics(self):
        """{(name, reason label or None): value} from the agent's /metrics."""
        import urllib.request
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.metrics_port,
                                      timeout=5).read().decode()
        out = {}
        for line in body.splitlines():
            m = re.match(r'^([a-z_]+)(?:\{(?:reason="([a-z_]+)")?[^}]*\})? (\S+)$', line)
            if m:
                out[(m.group(1), m.group(2))] = float(m.group(3))
        return out

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read_log(self):
        try:
            return open(self.log_path, errors="replace").read()
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if os.environ.get("WEFT_KEEP_TEST_DIR"):
            print("kept", self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if exc[0] is not None:
            sys.stderr.write("---- agent log ----\n" + self.read_log()[-6000:])
        self.stop()

    # --- clients ---------------------------------------------------------
    def channel(self, key_pem=None, chain_pem=None):
        creds = grpc.ssl_channel_credentials(root_certificates=self.root_pem,
                                             private_key=key_pem,
                                             certificate_chain=chain_pem)
        return grpc.secure_channel(self.addr, creds)

    def create(self, channel, csr_pem, identity=None, ttl=0, token=None, timeout=10):
        req = ca_pb2.IstioCertificateRequest(csr=csr_pem.decode()
                                             if isinstance(csr_pem, bytes) else csr_pem,
                                             validity_duration=ttl)
        if identity:
            req.metadata.fields["ImpersonatedIdentity"].string_value = identity
        md = [("authorization", "Bearer " + token)] if token else None
        call = channel.unary_unary(CREATE,
                                   request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                                   response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
        return call(req, metadata=md, timeout=timeout).cert_chain

    def watch(self, channel, token=None, timeout=None):
        md = [("authorization", "Bearer " + token)] if token else None
        call = channel.unary_stream(WATCH,
                                    request_serializer=registry_pb2.WatchRequest.SerializeToString,
                                    response_deserializer=registry_pb2.WatchResponse.FromString)
        return call(registry_pb2.WatchRequest(node="node1"), metadata=md, timeout=timeout)

    def bootstrap_node(self, node="node1"):
        """Token bootstrap: returns (key_pem, chain_pem) of the node SVID."""
        key, csr = make_csr("spiffe://%s/weft/node/%s" % (TD, node))
        ch = self.channel()
        chain = self.create(ch, csr, token=TOKENS[node])
        ch.close()
        return key_pem(key), "".join(chain).encode()


def make_key():
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM,
                             serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def make_csr(uri=None, key=None, dns=None, cn=None, uris=None):
    """A CSR signed with SHA-256; empty subject unless cn is given."""
    key = key or make_key()
    names = []
    for u in (uris if uris is not None else [uri]):
        names.append(x509.UniformResourceIdentifier(u))
    for d in dns or []:
        names.append(x509.DNSName(d))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])
    b = x509.CertificateSigningRequestBuilder().subject_name(subject)
    if names:
        b = b.add_extension(x509.SubjectAlternativeName(names), critical=not cn)
    csr = b.sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.PEM)


def load_chain(chain):
    return [x509.load_pem_x509_certificate(c.encode() if isinstance(c, str) else c)
            for c in chain]


def expect_status(res, what, fn, code):
    """Call fn() and check it fails with grpc status code."""
    try:
        fn()
    except grpc.RpcError as e:
        return res.check(e.code() == code, "%s -> %s (got %s: %s)" %
                         (what, code.name, e.code().name, e.details()))
    return res.check(False, "%s -> %s (call succeeded)" % (what, code.name))
