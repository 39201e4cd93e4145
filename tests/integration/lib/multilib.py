# SPDX-License-Identifier: Apache-2.0
"""Multi-cluster helpers (DESIGN §8.1) for the tests and the demo: a
cluster's gateway admin API, its agent restarted, and one agent federating
another cluster's trust domain."""
import json
import os
import subprocess
import time

from clusterlib import CLUSTER, RUN


def gw_admin(cl, path):
    """GET the admin API of cl's gateway weftd (127.0.0.1:15000 in its netns)."""
    p = cl.run("gw", ["curl", "-sS", "--max-time", "5", "http://127.0.0.1:15000" + path])
    return json.loads(p.stdout)


def restart_agent(cl):
    """Stop and start cl's weft-agent (it rereads its config)."""
    for op in ("stop", "start"):
        subprocess.run([CLUSTER, op, "--name", cl.name, "agent"], check=True,
                       capture_output=True)


def federate(e, w, extra=""):
    """e's agent federates w's trust domain (w's root in its federation_dir),
    with extra lines for its config; True once e's gateway and nodes have it."""
    fed = os.path.join(RUN, e.name, "agent", "federation")
    td = w.name.rsplit("-", 1)[1] + ".local"
    os.makedirs(fed, exist_ok=True)
    with open(os.path.join(RUN, e.name, "agent", "agent.yaml"), "a") as f:
        f.write("federation_dir: %s\n%s" % (fed, extra))
    with open(os.path.join(fed, td + ".pem"), "w") as f:
        f.write(open(os.path.join(RUN, w.name, "agent", "ca", "root-cert.pem")).read())
    restart_agent(e)
    deadline = time.time() + 15
    while time.time() < deadline:
        got = [gw_admin(e, "/stats").get("federated_trust_domains")] + \
              [e.admin(k, "/stats").get("federated_trust_domains") for k in (1, 2)]
        if all(g == [td] for g in got):
            return True
        time.sleep(0.2)
    return False
