#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Run a CNI network configuration list (conflist) the way a container
runtime does (libcni semantics, CNI spec 1.0):

  ADD    plugins in order; each gets the previous plugin's result as
         "prevResult"; the last result is printed and cached.
  DEL    plugins in reverse order, each with the cached ADD result as
         "prevResult" (none if ADD never completed); stops at the first
         failure, like libcni.
  CHECK  plugins in order, each with the cached result as "prevResult".

Every plugin gets "name" and "cniVersion" from the list, its stdin config,
and CNI_COMMAND, CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME, CNI_ARGS and
CNI_PATH in its environment. The plugin binary is found by its "type" in
CNI_PATH. Run this inside the node's netns (ip netns exec NODE ...): the
plugins act on the namespace they start in (the "host" side).

  cni_exec.py ADD|DEL|CHECK --conflist F --netns /var/run/netns/X
              --containerid ID [--ifname eth0] [--args 'K=V;...']
              --cni-path DIR[:DIR] --cache F [--timeout SECONDS]
  cni_exec.py ips --cache F     sandbox IPv4/IPv6 addresses of the result

Exit 0 on success; 1 with the plugin's CNI error on stderr otherwise.
Stdlib only (run with /usr/bin/python3).
"""
import argparse
import copy
import json
import os
import subprocess
import sys


class PluginError(Exception):
    pass


def find_plugin(ptype, cni_path):
    if not ptype or "/" in ptype:
        raise PluginError("bad plugin type %r" % ptype)
    for d in cni_path.split(":"):
        p = os.path.join(d, ptype)
        if d and os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise PluginError("plugin %r not found in CNI_PATH %s" % (ptype, cni_path))


def describe_error(out):
    """One line from a plugin's CNI error JSON (or its raw output)."""
    try:
        e = json.loads(out)
        s = "code %s: %s" % (e.get("code"), e.get("msg", ""))
        if e.get("details"):
            s += ": " + str(e["details"])
        return s
    except (ValueError, AttributeError):
        return out.strip()[:2000] or "(no output)"


def run_plugin(cmd, conf, a, prev):
    net = copy.deepcopy(conf)
    net["name"] = a.list["name"]
    net["cniVersion"] = a.list["cniVersion"]
    if prev is not None:
        net["prevResult"] = prev
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update({
        "CNI_COMMAND": cmd,
        "CNI_CONTAINERID": a.containerid,
        "CNI_NETNS": a.netns,
        "CNI_IFNAME": a.ifname,
        "CNI_ARGS": a.args,
        "CNI_PATH": a.cni_path,
    })
    path = find_plugin(conf.get("type"), a.cni_path)
    try:
        p = subprocess.run([path], input=json.dumps(net).encode(), env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=a.timeout)
    except subprocess.TimeoutExpired:
        raise PluginError("%s %s: no answer within %ss" % (conf["type"], cmd, a.timeout))
    out = p.stdout.decode(errors="replace")
    err = p.stderr.decode(errors="replace").strip()
    if p.returncode != 0:
        msg = "%s %s failed (exit %d): %s" % (conf["type"], cmd, p.returncode,
                                             describe_error(out))
        if err:
            msg += "\n  stderr: " + err.replace("\n", "\n  stderr: ")
        raise PluginError(msg)
    if err:
        sys.stderr.write("%s %s stderr: %s\n" % (conf["type"], cmd, err))
    if cmd != "ADD":
        return None
    try:
        res = json.loads(out)
    except ValueError:
        raise PluginError("%s ADD printed no JSON result: %r" % (conf["type"], out[:500]))
    if not isinstance(res, dict):
        raise PluginError("%s ADD result is not an object" % conf["type"])
    return res


def load_cache(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_cache(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)


def sandbox_ips(res):
    """Addresses of the interfaces inside the sandbox (pod) netns."""
    ifs = res.get("interfaces") or []
    out = []
    for ip in res.get("ips") or []:
        i = ip.get("interface")
        if i is not None and (i >= len(ifs) or not ifs[i].get("sandbox")):
            continue
        out.append(ip["address"].split("/")[0])
    return out


def main():
    ap = argparse.ArgumentParser(description="run a CNI conflist like a container runtime")
    ap.add_argument("command", choices=["ADD", "DEL", "CHECK", "ips"])
    ap.add_argument("--conflist")
    ap.add_argument("--netns", default="")
    ap.add_argument("--containerid", default="")
    ap.add_argument("--ifname", default="eth0")
    ap.add_argument("--args", default="")
    ap.add_argument("--cni-path", default="/usr/lib/cni")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()

    cache = load_cache(a.cache)
    if a.command == "ips":
        if not cache or not cache.get("result"):
            print("no ADD result in %s" % a.cache, file=sys.stderr)
            return 1
        print("\n".join(sandbox_ips(cache["result"])))
        return 0

    if not a.containerid or not a.netns:
        ap.error("--containerid and --netns are required")
    # DEL/CHECK use the configuration ADD ran with (as libcni does), so a
    # changed conflist cannot leave half of an old chain behind.
    if a.command != "ADD" and cache and cache.get("conflist"):
        a.list = cache["conflist"]
    else:
        if not a.conflist:
            ap.error("--conflist is required")
        with open(a.conflist) as f:
            a.list = json.load(f)
    plugins = a.list.get("plugins") or []
    if not plugins or "name" not in a.list or "cniVersion" not in a.list:
        print("conflist needs name, cniVersion and plugins", file=sys.stderr)
        return 1

    try:
        if a.command == "ADD":
            prev = None
            for conf in plugins:
                prev = run_plugin("ADD", conf, a, prev)
            write_cache(a.cache, {"conflist": a.list, "containerid": a.containerid,
                                  "netns": a.netns, "ifname": a.ifname,
                                  "args": a.args, "result": prev})
            print(json.dumps(prev, indent=1))
        elif a.command == "DEL":
            prev = cache.get("result") if cache else None
            for conf in reversed(plugins):
                run_plugin("DEL", conf, a, prev)
            if cache:
                os.unlink(a.cache)
        else:
            if not cache or not cache.get("result"):
                raise PluginError("CHECK needs a cached ADD result (%s)" % a.cache)
            for conf in plugins:
                run_plugin("CHECK", conf, a, cache["result"])
    except PluginError as e:
        print("cni %s %s: %s" % (a.command, a.containerid, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
