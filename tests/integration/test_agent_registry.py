# SPDX-License-Identifier: Apache-2.0
"""Registry/Watch: a node (mTLS with its SVID) receives the snapshot, then a
versioned delta when the YAML file is edited; a bad edit is logged with
file:line and the last good registry stays in service."""
import os
import queue
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "lib"))
import grpc  # noqa: E402
from agentlib import REGISTRY, TOKENS, Agent, Results, expect_status  # noqa: E402
import registry_pb2  # noqa: E402

res = Results("agent registry")


def reader(stream, q):
    try:
        for msg in stream:
            q.put(msg)
    except grpc.RpcError as e:
        q.put(e)


def write_atomic(path, text):
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, path)


with Agent() as agent:
    key, chain = agent.bootstrap_node("node1")
    ch = agent.channel(key_pem=key, chain_pem=chain)
    stream = agent.watch(ch)
    q = queue.Queue()
    threading.Thread(target=reader, args=(stream, q), daemon=True).start()

    snap = q.get(timeout=10)
    res.check(isinstance(snap, registry_pb2.WatchResponse) and snap.snapshot,
              "first message is a snapshot")
    kinds = [r.WhichOneof("kind") for r in snap.upserts]
    res.check(kinds.count("node") == 2 and kinds.count("workload") == 2 and
              kinds.count("service") == 1, "snapshot has 2 nodes, 2 workloads, 1 service (%s)"
              % kinds)
    svc = [r.service for r in snap.upserts if r.WhichOneof("kind") == "service"][0]
    res.check(list(svc.endpoints) == ["default/echo-1"] and list(svc.vips) == ["10.96.0.10"],
              "service endpoints from its selector: %s" % list(svc.endpoints))
    v0 = snap.version

    # Edit: add a workload (in place, as an editor would) -> one delta.
    with open(agent.registry_path, "a") as f:
        pass
    edited = REGISTRY.replace("services:", """\
  - name: echo-2
    namespace: default
    service_account: echo
    node: node1
    ips: [10.20.1.3]
    labels: {app: echo}
services:""")
    with open(agent.registry_path, "w") as f:
        f.write(edited)
    d = q.get(timeout=10)
    res.check(isinstance(d, registry_pb2.WatchResponse) and not d.snapshot and d.version > v0,
              "edit -> a delta with a higher version (%s)" % (getattr(d, "version", d),))
    up = {(r.WhichOneof("kind"), getattr(r, r.WhichOneof("kind")).name) for r in d.upserts}
    res.check(("workload", "echo-2") in up, "delta upserts the new workload")
    res.check(("service", "echo") in up, "delta upserts the service whose endpoints changed")
    res.check(("workload", "client-1") not in up, "unchanged workloads are not resent")

    # A bad edit is refused, logged with file:line; nothing is sent.
    write_atomic(agent.registry_path, edited.replace("ips: [10.20.1.3]", "ips: [10.20.1.300]"))
    time.sleep(1.0)
    res.check(q.empty(), "bad edit sends no delta")
    log = agent.read_log()
    res.check("registry.yaml:" in log and "not reloaded" in log,
              "bad edit logged with file:line: %s" %
              [l for l in log.splitlines() if "not reloaded" in l][-1:])
    # The last good registry is still in service: echo-2 on node1 can be issued.
    from agentlib import make_csr, TD
    ident = "spiffe://%s/ns/default/sa/echo" % TD
    chain2 = agent.create(ch, make_csr(ident)[1], identity=ident)
    res.check(len(chain2) >= 2, "last good registry still authorizes (echo on node1)")

    # Remove it again (by rename, as ConfigMap updates do) -> removal delta.
    write_atomic(agent.registry_path, REGISTRY)
    d2 = q.get(timeout=10)
    rem = {(r.kind, r.key) for r in d2.removals}
    res.check((registry_pb2.KIND_WORKLOAD, "default/echo-2") in rem,
              "rename-replace -> delta removes the workload (%s)" % rem)
    expect_status(res, "identity gone with the workload",
                  lambda: agent.create(ch, make_csr(ident)[1], identity=ident),
                  grpc.StatusCode.PERMISSION_DENIED)

    # Watch needs a node credential.
    plain = agent.channel()
    expect_status(res, "Watch without credential",
                  lambda: next(iter(agent.watch(plain, timeout=5))),
                  grpc.StatusCode.UNAUTHENTICATED)
    s2 = agent.watch(plain, token=TOKENS["node2"], timeout=5)
    first = next(iter(s2))
    res.check(first.snapshot, "Watch with node2's token gets a snapshot")
    s2.cancel()
    stream.cancel()
    ch.close()
    plain.close()
    time.sleep(0.3)
    res.check(agent.alive(), "agent still running")

res.done()
