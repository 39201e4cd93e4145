# SPDX-License-Identifier: Apache-2.0
"""weft-agent refuses bad callers and bad CSRs with the right gRPC status,
keeps serving good requests afterwards, and its metrics (15014) count
each refusal under its reason."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
import grpc  # noqa: E402
from agentlib import (TD, TOKENS, Agent, Results, expect_status, make_csr)  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography import x509  # noqa: E402

res = Results("agent refusals")
C = grpc.StatusCode
node1 = "spiffe://%s/weft/node/node1" % TD
client = "spiffe://%s/ns/default/sa/client" % TD   # on node1
echo = "spiffe://%s/ns/default/sa/echo" % TD       # on node2


def tamper(csr_pem):
    csr = x509.load_pem_x509_csr(csr_pem)
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01    # inside the signature
    import base64
    b = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    lines = [b[i:i + 64] for i in range(0, len(b), 64)]
    return ("-----BEGIN CERTIFICATE REQUEST-----\n" + "\n".join(lines) +
            "\n-----END CERTIFICATE REQUEST-----\n").encode()


with Agent() as agent:
    ch = agent.channel()
    tok = TOKENS["node1"]
    _, good = make_csr(node1)

    expect_status(res, "no credential", lambda: agent.create(ch, good), C.UNAUTHENTICATED)
    expect_status(res, "wrong token",
                  lambda: agent.create(ch, good, token="x" * 40), C.UNAUTHENTICATED)
    expect_status(res, "node2's token for node1's identity",
                  lambda: agent.create(ch, good, token=TOKENS["node2"]), C.PERMISSION_DENIED)
    _, c_echo = make_csr(echo)
    expect_status(res, "identity of a workload on another node",
                  lambda: agent.create(ch, c_echo, identity=echo, token=tok),
                  C.PERMISSION_DENIED)
    _, c_client = make_csr(client)
    expect_status(res, "workload identity without ImpersonatedIdentity",
                  lambda: agent.create(ch, c_client, token=tok), C.PERMISSION_DENIED)
    _, c_other_td = make_csr("spiffe://other.domain/ns/default/sa/client")
    expect_status(res, "foreign trust domain",
                  lambda: agent.create(ch, c_other_td,
                                       identity="spiffe://other.domain/ns/default/sa/client",
                                       token=tok), C.PERMISSION_DENIED)

    _, c_dns = make_csr(client, dns=["evil.example"])
    expect_status(res, "CSR with a DNS SAN",
                  lambda: agent.create(ch, c_dns, identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    _, c_cn = make_csr(client, cn="client")
    expect_status(res, "CSR with a CN",
                  lambda: agent.create(ch, c_cn, identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    _, c_two = make_csr(uris=[client, "spiffe://%s/ns/default/sa/other" % TD])
    expect_status(res, "CSR with two URI SANs",
                  lambda: agent.create(ch, c_two, identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    expect_status(res, "CSR with a bad signature",
                  lambda: agent.create(ch, tamper(c_client), identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    _, c_bad = make_csr("spiffe://cluster.local/ns//sa/client")
    expect_status(res, "CSR with a malformed SPIFFE ID",
                  lambda: agent.create(ch, c_bad, identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    expect_status(res, "not a CSR at all",
                  lambda: agent.create(ch, b"hello", identity=client, token=tok),
                  C.INVALID_ARGUMENT)
    big = ch.unary_unary("/istio.v1.auth.IstioCertificateService/CreateCertificate",
                         request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_status(res, "5 MiB message",
                  lambda: big(b"\x0a\x80\x80\x40" + b"A" * (5 << 20),
                              metadata=[("authorization", "Bearer " + tok)], timeout=20),
                  C.RESOURCE_EXHAUSTED)
    expect_status(res, "garbage protobuf",
                  lambda: big(b"\xff\xff\xff", metadata=[("authorization", "Bearer " + tok)],
                              timeout=5), C.INVALID_ARGUMENT)
    def varint(n):
        out = b""
        while True:
            out += bytes([(n & 0x7f) | (0x80 if n > 0x7f else 0)])
            n >>= 7
            if not n:
                return out

    def ld(tag, payload):
        return bytes([tag]) + varint(len(payload)) + payload

    v = b""
    for _ in range(5000):   # Struct/Value nesting far past any sane depth
        st = ld(0x0a, ld(0x0a, b"a") + ld(0x12, v))
        v = ld(0x2a, st)
    expect_status(res, "metadata nested 5000 deep",
                  lambda: big(ld(0x0a, good) + ld(0x22, st),
                              metadata=[("authorization", "Bearer " + tok)], timeout=5),
                  C.INVALID_ARGUMENT)
    unknown = ch.unary_unary("/istio.v1.auth.IstioCertificateService/Nope",
                             request_serializer=lambda b: b, response_deserializer=lambda b: b)
    expect_status(res, "unknown method", lambda: unknown(b"", timeout=5), C.UNIMPLEMENTED)

    # Still serving, same connection and a new one.
    chain = agent.create(ch, good, token=tok)
    res.check(len(chain) >= 2, "good request after the refusals succeeds")
    ch.close()
    ch2 = agent.channel()
    res.check(len(agent.create(ch2, make_csr(client)[1], identity=client, token=tok)) >= 2,
              "good impersonation request on a new connection succeeds")
    ch2.close()
    log = agent.read_log()
    res.check("PERMISSION_DENIED" in log and "no workload with namespace default and service "
              "account echo on node node1" in log, "refusal logged with the reason in words")
    res.check(agent.alive(), "agent still running")

    m = agent.metrics()
    want = {"unauthenticated": 2, "not_authorized": 2, "csr_mismatch": 2, "bad_csr": 6,
            "malformed": 2, "quota": 0, "unavailable": 0}
    got = {r: m.get(("weft_agent_certificates_refused_total", r)) for r in want}
    res.check(got == want, "weft_agent_certificates_refused_total by reason: %s" % got)
    res.check(m.get(("weft_agent_certificates_issued_total", None)) == 2,
              "weft_agent_certificates_issued_total is 2, the two good requests (%s)" %
              m.get(("weft_agent_certificates_issued_total", None)))

res.done()
