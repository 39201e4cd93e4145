# SPDX-License-Identifier: Apache-2.0
"""Hostile and heavy clients leave weft-agent serving the next good request:
random bytes, a ClientHello then close, HTTP/1.1, a truncated HTTP/2
preface, a stalled handshake (timed out), 500 idle connections from another
address (most closed at once: pending handshakes are capped per address), and
200 concurrent CreateCertificate calls."""
import concurrent.futures
import os
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
from agentlib import TD, TOKENS, Agent, Results, make_csr  # noqa: E402

res = Results("agent hostile")
client = "spiffe://%s/ns/default/sa/client" % TD


def good(agent, what):
    ch = agent.channel()
    try:
        chain = agent.create(ch, make_csr(client)[1], identity=client, token=TOKENS["node1"],
                             timeout=10)
        return res.check(len(chain) >= 2, "good request after %s" % what)
    except Exception as e:  # noqa: BLE001
        return res.check(False, "good request after %s (%s)" % (what, e))
    finally:
        ch.close()


def tls_conn(agent, alpn=("h2",)):
    ctx = ssl.create_default_context(cadata=agent.root_pem.decode())
    ctx.set_alpn_protocols(list(alpn))
    s = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
    return ctx.wrap_socket(s, server_hostname="localhost")


def client_hello():
    """The bytes of a real TLS ClientHello (what a client sends first)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    inb, outb = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inb, outb, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outb.read()


def closed_by_peer(s, timeout):
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, OSError) as e:
        return not isinstance(e, socket.timeout)


with Agent() as agent:
    s = socket.create_connection(("127.0.0.1", agent.port))
    s.sendall(os.urandom(4096))
    res.check(closed_by_peer(s, 5), "random bytes: connection closed by the agent")
    s.close()
    good(agent, "random bytes")

    # A real ClientHello, then close before finishing.
    s = socket.create_connection(("127.0.0.1", agent.port))
    s.sendall(client_hello())
    s.close()
    good(agent, "ClientHello then close")

    s = socket.create_connection(("127.0.0.1", agent.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    res.check(closed_by_peer(s, 5), "HTTP/1.1 request: closed")
    s.close()
    good(agent, "HTTP/1.1 request")

    t = tls_conn(agent)
    res.check(t.selected_alpn_protocol() == "h2", "TLS 1.3 with ALPN h2 (%s, %s)"
              % (t.version(), t.cipher()[0]))
    t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM")   # truncated preface, then close
    t.close()
    t = tls_conn(agent)
    t.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")   # wrong preface
    res.check(closed_by_peer(t, 5), "bad HTTP/2 preface: closed")
    t.close()
    good(agent, "bad HTTP/2 prefaces")

    # Stall mid-handshake: the agent's handshake timeout (1 s here) ends it.
    s = socket.create_connection(("127.0.0.1", agent.port))
    s.sendall(client_hello()[:20])   # part of a ClientHello, then silence
    t0 = time.time()
    closed = closed_by_peer(s, 8)
    res.check(closed and time.time() - t0 < 5,
              "stalled handshake closed by the agent after %.1fs" % (time.time() - t0))
    s.close()
    good(agent, "stalled handshake")

    # 500 idle TCP connections (no TLS) while good requests go through. They
    # come from another address (127.0.0.2): pending handshakes are capped per
    # source address (DESIGN §5.1), so the agent keeps a few and closes the
    # rest at once, and the good client's address is not theirs.
    idle = [socket.create_connection(("127.0.0.1", agent.port), source_address=("127.0.0.2", 0))
            for _ in range(500)]
    good(agent, "500 idle connections opened")
    time.sleep(0.5)
    held = 0
    for c in idle:
        c.setblocking(False)
        try:
            held += c.recv(1) != b""
        except BlockingIOError:
            held += 1
        except OSError:
            pass
    res.check(held < 500, "the agent kept %d of 500 idle connections from one address open "
              "(pending handshakes capped per address)" % held)
    for c in idle:
        c.close()

    # 200 concurrent CreateCertificate calls over one channel.
    ch = agent.channel()
    csrs = [make_csr(client)[1] for _ in range(200)]

    def one(csr):
        return agent.create(ch, csr, identity=client, token=TOKENS["node1"], timeout=30)

    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as ex:
        futs = [ex.submit(one, c) for c in csrs]
        ok = 0
        for f in futs:
            try:
                ok += len(f.result()) >= 2
            except Exception as e:  # noqa: BLE001
                print("  call failed:", e)
    res.check(ok == 200, "200 concurrent CreateCertificate calls: %d succeeded in %.2fs"
              % (ok, time.time() - t0))
    ch.close()
    res.check(agent.alive(), "agent still running")

res.done()
