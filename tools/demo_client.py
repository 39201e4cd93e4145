# SPDX-License-Identifier: Apache-2.0
"""The demo's node: bootstrap with a token, then ask for a workload identity
over mTLS with the node's own SVID, and print both SVIDs readably.

Until weftd lands this plays the node's part with grpcio, exactly as weftd
will: keys are made here and never sent, only CSRs are.
"""
import argparse
import datetime
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
PYGEN = os.path.join(ROOT, "build", "py")
os.makedirs(PYGEN, exist_ok=True)
subprocess.run(["protoc", "--proto_path=" + os.path.join(ROOT, "proto"),
                "--python_out=" + PYGEN, os.path.join(ROOT, "proto", "ca.proto")], check=True)
sys.path.insert(0, PYGEN)

import grpc  # noqa: E402
import ca_pb2  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtensionOID  # noqa: E402

CREATE = "/istio.v1.auth.IstioCertificateService/CreateCertificate"


def csr_for(uri):
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                          critical=True)
           .sign(key, hashes.SHA256()))
    return key, csr.public_bytes(serialization.Encoding.PEM).decode()


def call(channel, csr, token=None, identity=None, ttl=0):
    req = ca_pb2.IstioCertificateRequest(csr=csr, validity_duration=ttl)
    if identity:
        req.metadata.fields["ImpersonatedIdentity"].string_value = identity
    md = [("authorization", "Bearer " + token)] if token else None
    fn = channel.unary_unary(CREATE, request_serializer=ca_pb2.IstioCertificateRequest.SerializeToString,
                             response_deserializer=ca_pb2.IstioCertificateResponse.FromString)
    return list(fn(req, metadata=md, timeout=10).cert_chain)


def show(title, chain):
    leaf = x509.load_pem_x509_certificate(chain[0].encode())
    root = x509.load_pem_x509_certificate(chain[-1].encode())
    san = leaf.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value
    uri = san.get_values_for_type(x509.UniformResourceIdentifier)
    key = leaf.public_key()
    curves = {"secp256r1": "P-256", "secp384r1": "P-384"}
    ktype = ("ECDSA %s" % curves.get(key.curve.name, key.curve.name)
             if isinstance(key, ec.EllipticCurvePublicKey) else type(key).__name__)
    left = leaf.not_valid_after - datetime.datetime.utcnow()
    print("  %s" % title)
    print("    SPIFFE ID   %s" % ", ".join(uri))
    print("    issuer      %s" % leaf.issuer.rfc4514_string())
    print("    root        %s" % root.subject.rfc4514_string())
    print("    valid       %s .. %s UTC (%dh%02dm left)" % (
        leaf.not_valid_before.strftime("%Y-%m-%d %H:%M:%S"),
        leaf.not_valid_after.strftime("%Y-%m-%d %H:%M:%S"),
        left.total_seconds() // 3600, left.total_seconds() % 3600 // 60))
    print("    key         %s (made on the node; only the CSR was sent)" % ktype)
    print("    serial      %x, chain of %d certificates" % (leaf.serial_number, len(chain)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--agent", required=True)
    ap.add_argument("--dir", required=True)
    ap.add_argument("--node", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--workload", required=True)
    a = ap.parse_args()
    root = open(os.path.join(a.dir, "state", "root-cert.pem"), "rb").read()
    host, port = a.agent.rsplit(":", 1)
    target = "localhost:" + port    # a name in the agent's certificate

    print("weft demo: certificate agent on %s, trust domain cluster.local" % a.agent)
    node_id = "spiffe://cluster.local/weft/node/%s" % a.node
    key, csr = csr_for(node_id)
    ch = grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=root))
    chain = call(ch, csr, token=a.token)
    ch.close()
    show("1. %s bootstrapped with its token -> node identity" % a.node, chain)

    kpem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    mtls = grpc.secure_channel(target, grpc.ssl_channel_credentials(
        root_certificates=root, private_key=kpem, certificate_chain="".join(chain).encode()))
    _, wcsr = csr_for(a.workload)
    wchain = call(mtls, wcsr, identity=a.workload)
    show("2. %s (mTLS as its node SVID) asked for a pod's identity -> workload SVID" % a.node,
         wchain)
    other = "spiffe://cluster.local/ns/default/sa/echo"
    try:
        call(mtls, csr_for(other)[1], identity=other)
        print("  3. UNEXPECTED: %s was issued %s" % (a.node, other))
    except grpc.RpcError as e:
        print("  3. %s asked for %s (a pod on another node)" % (a.node, other))
        print("    refused     %s: %s" % (e.code().name, e.details()))
    mtls.close()


if __name__ == "__main__":
    main()
