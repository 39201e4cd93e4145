# SPDX-License-Identifier: Apache-2.0
"""weft-agent issues SPIFFE X.509-SVIDs to independent clients.

grpcio + cryptography make the CSR and the call; openssl verifies the chain;
node bootstrap with a token, then an mTLS call with the node SVID.
"""
import datetime
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from agentlib import (TD, TOKENS, Agent, Results, load_chain, make_csr)  # noqa: E402
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID  # noqa: E402

res = Results("agent certificates")


def openssl_verify(root_pem, chain):
    with tempfile.TemporaryDirectory() as d:
        root = os.path.join(d, "root.pem")
        leaf = os.path.join(d, "leaf.pem")
        inter = os.path.join(d, "inter.pem")
        open(root, "wb").write(root_pem)
        open(leaf, "w").write(chain[0])
        open(inter, "w").write("".join(chain[1:-1]))
        cmd = ["openssl", "verify", "-CAfile", root]
        if len(chain) > 2:
            cmd += ["-untrusted", inter]
        p = subprocess.run(cmd + [leaf], capture_output=True, text=True)
        return p.returncode == 0, p.stdout + p.stderr


def check_svid(cert, uri, ttl, what):
    san = cert.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    uris = san.value.get_values_for_type(x509.UniformResourceIdentifier)
    res.check(uris == [uri], "%s: exactly one URI SAN %s (got %s)" % (what, uri, uris))
    res.check(not san.value.get_values_for_type(x509.DNSName), "%s: no DNS SAN" % what)
    res.check(len(cert.subject) > 0 or san.critical,
              "%s: empty subject => SAN critical" % what)
    ku = cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    res.check(ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign,
              "%s: KeyUsage critical digitalSignature, no keyCertSign" % what)
    eku = cert.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    res.check(ExtendedKeyUsageOID.SERVER_AUTH in eku and ExtendedKeyUsageOID.CLIENT_AUTH in eku,
              "%s: EKU serverAuth + clientAuth" % what)
    bc = cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value
    res.check(bc.ca is False, "%s: cA=false" % what)
    life = (cert.not_valid_after - cert.not_valid_before).total_seconds()
    res.check(abs(life - ttl) <= 61, "%s: lifetime %ds for TTL %ds" % (what, life, ttl))
    now = datetime.datetime.utcnow()
    res.check(cert.not_valid_before <= now <= cert.not_valid_after, "%s: valid now" % what)
    res.check(isinstance(cert.public_key(), ec.EllipticCurvePublicKey), "%s: EC key" % what)


with Agent(ttl_max="2h") as agent:
    node_id = "spiffe://%s/weft/node/node1" % TD
    wl_id = "spiffe://%s/ns/default/sa/client" % TD

    # 1. Token bootstrap: node1 gets its own SVID.
    key, csr = make_csr(node_id)
    ch = agent.channel()
    chain = agent.create(ch, csr, token=TOKENS["node1"], ttl=3600)
    res.check(len(chain) >= 2, "bootstrap: chain has leaf and root (%d certs)" % len(chain))
    certs = load_chain(chain)
    check_svid(certs[0], node_id, 3600, "node SVID")
    root = certs[-1]
    res.check(root.subject == root.issuer, "chain ends with the (self-signed) root")
    res.check(chain[-1].encode().strip() == agent.root_pem.strip()
              or chain[-1].encode().strip() in agent.root_pem,
              "last cert is the root written to the state dir bundle")
    ok, out = openssl_verify(agent.root_pem, chain)
    res.check(ok, "openssl verify accepts the node SVID chain (%s)" % out.strip())
    res.check(certs[0].public_key().public_numbers() == key.public_key().public_numbers(),
              "SVID carries the CSR's public key (key never left the client)")

    # 2. TTL capped at ttl_max (2h) when a client asks for more.
    _, csr2 = make_csr(node_id)
    chain2 = agent.create(ch, csr2, token=TOKENS["node1"], ttl=30 * 86400)
    check_svid(load_chain(chain2)[0], node_id, 7200, "capped SVID")
    # Default TTL (24h) capped too: ttl_default must not exceed ttl_max... the
    # config check refuses that, so 0 means the default 24h -> here 2h max.
    ch.close()

    # 3. mTLS with the node SVID: ask for a workload on node1 (impersonation).
    from cryptography.hazmat.primitives import serialization
    kpem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    mtls = agent.channel(key_pem=kpem, chain_pem="".join(chain).encode())
    wkey, wcsr = make_csr(wl_id)
    wchain = agent.create(mtls, wcsr, identity=wl_id, ttl=600)
    check_svid(load_chain(wchain)[0], wl_id, 600, "workload SVID via mTLS")
    ok, out = openssl_verify(agent.root_pem, wchain)
    res.check(ok, "openssl verify accepts the workload SVID chain (%s)" % out.strip())
    mtls.close()

    log = agent.read_log()
    res.check(TOKENS["node1"] not in log, "bootstrap token never appears in the agent log")
    res.check("issued " + wl_id in log, "agent logs each issued identity")

# 4. The agent keeps its root across restarts (state dir) -- a new agent in a
# new dir has another root; the same dir keeps it.
a = Agent()
a.start()
root1 = a.root_pem
a.proc.terminate()
a.proc.wait()
a.start()
res.check(a.root_pem == root1, "root CA is reused on restart from the state directory")
a.stop()

res.done()
