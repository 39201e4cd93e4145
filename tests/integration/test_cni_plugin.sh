#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# weft-cni as a container runtime runs it: CNI env + chained config with a
# prevResult on stdin, against a fake weftd (Python, SOCK_SEQPACKET with
# SCM_RIGHTS, hand-decoded protobuf). Checks: VERSION; ADD installs the
# rules, enrolls the pod (uid, IPs, the netns fd itself) and prints
# prevResult; real traffic is redirected (pod -> 10.1.2.3:80 lands on :15001
# with SO_ORIGINAL_DST 10.1.2.3:80; peer -> pod:8080 lands on :15006; mark
# 0x539, loopback and :15008 are spared); ADD is idempotent; CHECK; DEL
# removes the table and tells weftd, and tolerates repeats and a gone
# netns; weftd refusing or unreachable fails ADD with CNI error JSON and no
# rules left; missing prevResult; excluded namespace passes through.
set -u
cd "$(dirname "$0")/../.."
[[ $(id -u) == 0 ]] || { echo "skip: needs root (netns, nftables)"; exit 77; }
CNI=${WEFT_BUILD:-$PWD/build}/weft-cni
[[ -x $CNI ]] || { echo "build/weft-cni missing: run make all"; exit 1; }
command -v nft >/dev/null || { echo "skip: nft not installed"; exit 77; }

NS=weftcni-pod-$$
PEER=weftcni-peer-$$
TMP=$(mktemp -d /tmp/weft-cni-test.XXXXXX)
SOCK=$TMP/cni.sock
PY=/usr/bin/python3
FAKE_PID=
BG_PIDS=()
fails=0

cleanup() {
	[[ -n $FAKE_PID ]] && kill "$FAKE_PID" 2>/dev/null
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	ip netns del "$NS" 2>/dev/null
	ip netns del "$PEER" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT

ok()   { echo "ok   - $*"; }
bad()  { echo "FAIL - $*"; fails=$((fails + 1)); }
expect() {	# description, command...
	local d=$1; shift
	if "$@"; then ok "$d"; else bad "$d"; fi
}

# --- topology: a pod netns and a peer netns on a veth pair ----------------
ip netns add "$NS" || { echo "skip: cannot create a netns"; exit 77; }
ip netns add "$PEER"
ip link add wv0 netns "$NS" type veth peer name wv1 netns "$PEER"
ip -n "$NS" link set lo up
ip -n "$NS" link set wv0 up
ip -n "$NS" addr add 10.244.1.5/24 dev wv0
ip -n "$NS" route add default via 10.244.1.9
ip -n "$PEER" link set lo up
ip -n "$PEER" link set wv1 up
ip -n "$PEER" addr add 10.244.1.9/24 dev wv1

# --- the fake weftd -------------------------------------------------------
cat >"$TMP/fake_weftd.py" <<'EOF'
# Fake weftd: Hello, then for each request decode AddWorkload/DelWorkload,
# record it (with the netns fd's inode) as a JSON line, Ack.
import fcntl, json, os, socket, struct, sys

path, events = sys.argv[1], sys.argv[2]

def varint(b, i):
    v = s = 0
    while True:
        c = b[i]; i += 1
        v |= (c & 0x7f) << s; s += 7
        if not c & 0x80:
            return v, i

def fields(b):
    i, out = 0, []
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 2:
            n, i = varint(b, i); v = b[i:i + n]; i += n
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, v))
    return out

def ack(err=b""):
    inner = (b"\x0a" + bytes([len(err)]) + err) if err else b""
    return b"\x12" + bytes([len(inner)]) + inner

srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
srv.bind(path)
srv.listen(8)
open(path + ".ready", "w").close()
while True:
    c, _ = srv.accept()
    c.send(b"\x0a\x02\x08\x01")           # WorkloadResponse{hello{version:1}}
    msg, anc, flags, _ = c.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
    fds = []
    for lvl, typ, data in anc:
        if lvl == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds += list(struct.unpack("%di" % (len(data) // 4), data))
    ev = {"fds": len(fds)}
    for num, v in fields(msg):
        if num in (1, 3):
            ev["kind"] = "add" if num == 1 else "del"
            names = {1: "uid", 2: "name", 3: "namespace", 6: "container_id", 7: "netns_path"}
            for n2, v2 in fields(v):
                if n2 == 5:
                    ev.setdefault("ips", []).append(v2.decode())
                elif n2 in names:
                    ev[names[n2]] = v2.decode()
    if fds:
        st = os.fstat(fds[0])
        ev["netns_ino"] = st.st_ino
        # NS_GET_NSTYPE: CLONE_NEWNET for a network namespace
        ev["nstype"] = fcntl.ioctl(fds[0], 0xb703)
    for fd in fds:
        os.close(fd)
    with open(events, "a") as f:
        f.write(json.dumps(ev) + "\n")
    c.send(ack(b"no room at the inn" if ev.get("name") == "refuse-me" else b""))
    c.close()
EOF

start_fake() {
	rm -f "$SOCK" "$SOCK.ready"
	$PY "$TMP/fake_weftd.py" "$SOCK" "$TMP/events" &
	FAKE_PID=$!
	for _ in $(seq 100); do [[ -e $SOCK.ready ]] && return 0; sleep 0.05; done
	echo "fake weftd did not start"; exit 1
}
stop_fake() {
	kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; FAKE_PID=
	rm -f "$SOCK"
}

PREV='{"cniVersion":"1.0.0","interfaces":[{"name":"cni0","mac":"aa:bb:cc:00:00:01"},{"name":"eth0","mac":"aa:bb:cc:00:00:02","sandbox":"/run/netns/'$NS'"}],"ips":[{"interface":1,"address":"10.244.1.5/24","gateway":"10.244.1.1"}],"routes":[{"dst":"0.0.0.0/0","gw":"10.244.1.1"}],"dns":{}}'
conf() {	# [extra top-level JSON members]
	echo '{"cniVersion":"1.0.0","name":"weft-test","type":"weft-cni","socket":"'$SOCK'","log_file":"'$TMP/cni.log'","exclude_namespaces":["kube-system"]'"${1:+,$1}"',"prevResult":'"$PREV"'}'
}
# run_cni COMMAND POD_NS POD_NAME [netns path] [config] -> $OUT, $RC
run_cni() {
	local cmd=$1 pns=$2 pname=$3 netns=${4:-/run/netns/$NS} cfg=${5:-$(conf)}
	OUT=$(echo "$cfg" | CNI_COMMAND=$cmd CNI_CONTAINERID=ctr-$pname CNI_NETNS=$netns \
		CNI_IFNAME=eth0 CNI_PATH=/usr/lib/cni \
		CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=$pns;K8S_POD_NAME=$pname;K8S_POD_UID=0b1e" \
		timeout 30 "$CNI")
	RC=$?
}
json_get() {	# json, python expression over j
	$PY -c 'import json,sys; j=json.loads(sys.argv[1]); print('"$2"')' "$1" 2>/dev/null
}
has_table() { ip netns exec "$NS" nft list table inet weft >/dev/null 2>&1; }
last_event() { tail -n1 "$TMP/events" 2>/dev/null; }

# --- VERSION ---------------------------------------------------------------
OUT=$(echo '{"cniVersion":"0.4.0"}' | CNI_COMMAND=VERSION "$CNI"); RC=$?
expect "VERSION exits 0" test $RC -eq 0
expect "VERSION lists 1.0.0 and 0.4.0, answers in the asked version" \
	test "$(json_get "$OUT" '"1.0.0" in j["supportedVersions"] and "0.4.0" in j["supportedVersions"] and j["cniVersion"]')" = "0.4.0"

# --- ADD -------------------------------------------------------------------
start_fake
run_cni ADD default web-1
expect "ADD exits 0" test $RC -eq 0
same_json() { $PY -c 'import json,sys; print(json.loads(sys.argv[1]) == json.loads(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
expect "ADD prints prevResult unchanged" test "$(same_json "$OUT" "$PREV")" = True
EV=$(last_event)
expect "weftd got AddWorkload uid default/web-1" test "$(json_get "$EV" 'j.get("kind"), j.get("uid")')" = "add default/web-1"
expect "AddWorkload carries name, namespace, container id, netns path" \
	test "$(json_get "$EV" 'j["name"], j["namespace"], j["container_id"], j["netns_path"]')" = "web-1 default ctr-web-1 /run/netns/$NS"
expect "AddWorkload carries the prevResult IPs" test "$(json_get "$EV" 'j.get("ips")')" = "['10.244.1.5']"
expect "the netns fd arrived and is the pod's netns" \
	test "$(json_get "$EV" 'j["fds"], j["netns_ino"]')" = "1 $(stat -L -c %i /run/netns/$NS)"
expect "the fd is a network namespace (NS_GET_NSTYPE)" test "$(json_get "$EV" 'j["nstype"] == 0x40000000')" = True
expect "table inet weft exists in the pod netns" has_table
RULES=$(ip netns exec "$NS" nft list table inet weft 2>&1)
expect "outbound redirect to :15001" grep -q 'redirect to :15001' <<<"$RULES"
expect "inbound redirect to :15006" grep -q 'redirect to :15006' <<<"$RULES"
expect "mark 0x539 is spared" grep -q 'meta mark 0x00000539 return' <<<"$RULES"
expect "nothing leaked into the host netns" bash -c '! nft list table inet weft >/dev/null 2>&1'
expect "log_file has the ADD" grep -q 'ADD default/web-1' "$TMP/cni.log"

# --- traffic ---------------------------------------------------------------
cat >"$TMP/listen.py" <<'EOF'
# In the pod netns: listen on 15001 and 15006, report each connection's
# SO_ORIGINAL_DST, until killed.
import select, socket, struct, sys
out = open(sys.argv[1], "a", buffering=1)
ls = []
for port in (15001, 15006):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port)); s.listen(16); ls.append(s)
open(sys.argv[1] + ".ready", "w").close()
while True:
    r, _, _ = select.select(ls, [], [])
    for s in r:
        c, peer = s.accept()
        raw = c.getsockopt(socket.SOL_IP, 80, 16)        # SO_ORIGINAL_DST
        port, ip = struct.unpack("!H", raw[2:4])[0], socket.inet_ntoa(raw[4:8])
        out.write("%d %s:%d\n" % (s.getsockname()[1], ip, port))
        c.close()
EOF
cat >"$TMP/connect.py" <<'EOF'
# connect.py HOST PORT [MARK]: print "connected" or the error.
import socket, sys
s = socket.socket(); s.settimeout(1.5)
if len(sys.argv) > 3:
    s.setsockopt(socket.SOL_SOCKET, 36, int(sys.argv[3], 0))   # SO_MARK
try:
    s.connect((sys.argv[1], int(sys.argv[2]))); print("connected")
except OSError as e:
    print(type(e).__name__)
EOF
ip netns exec "$NS" $PY "$TMP/listen.py" "$TMP/seen" &
BG_PIDS+=($!)
for _ in $(seq 100); do [[ -e $TMP/seen.ready ]] && break; sleep 0.05; done
nseen() { wc -l <"$TMP/seen" 2>/dev/null || echo 0; }

R=$(ip netns exec "$NS" $PY "$TMP/connect.py" 10.1.2.3 80)
sleep 0.2
expect "pod -> 10.1.2.3:80 is captured" test "$R" = connected
expect "captured on :15001 with SO_ORIGINAL_DST 10.1.2.3:80" grep -qx '15001 10.1.2.3:80' "$TMP/seen"
N0=$(nseen)
R=$(ip netns exec "$NS" $PY "$TMP/connect.py" 10.1.2.3 80 0x539)
sleep 0.2
expect "a socket with mark 0x539 is not captured" test "$R" != connected -a "$(nseen)" = "$N0"
R=$(ip netns exec "$NS" $PY "$TMP/connect.py" 127.0.0.1 81)
expect "loopback is not captured" test "$R" = ConnectionRefusedError
R=$(ip netns exec "$PEER" $PY "$TMP/connect.py" 10.244.1.5 8080)
sleep 0.2
expect "peer -> pod:8080 is captured" test "$R" = connected
expect "captured on :15006 with SO_ORIGINAL_DST 10.244.1.5:8080" grep -qx '15006 10.244.1.5:8080' "$TMP/seen"
R=$(ip netns exec "$PEER" $PY "$TMP/connect.py" 10.244.1.5 15008)
expect "inbound :15008 is not captured" test "$R" = ConnectionRefusedError

# --- idempotent ADD, CHECK ---------------------------------------------------
run_cni ADD default web-1
expect "second ADD exits 0" test $RC -eq 0
expect "still exactly one weft table" test "$(ip netns exec "$NS" nft list tables | grep -c 'inet weft')" = 1
run_cni CHECK default web-1
expect "CHECK with rules in place exits 0" test $RC -eq 0

# --- DEL ---------------------------------------------------------------------
run_cni DEL default web-1
expect "DEL exits 0 with no output" test $RC -eq 0 -a -z "$OUT"
expect "DEL removed table inet weft" bash -c '! ip netns exec '"$NS"' nft list table inet weft >/dev/null 2>&1'
expect "weftd got DelWorkload default/web-1" test "$(json_get "$(last_event)" 'j.get("kind"), j.get("uid"), j["fds"]')" = "del default/web-1 0"
R=$(ip netns exec "$NS" $PY "$TMP/connect.py" 10.1.2.3 80)
expect "after DEL, traffic is no longer captured" test "$R" != connected
run_cni CHECK default web-1
expect "CHECK without rules fails (exit 1, code 101)" \
	test "$RC:$(json_get "$OUT" 'j["code"]')" = "1:101"
run_cni DEL default web-1
expect "repeated DEL exits 0" test $RC -eq 0
run_cni DEL default web-1 /run/netns/weftcni-gone-$$
expect "DEL of a netns that is gone exits 0" test $RC -eq 0
run_cni DEL default web-1 ""
expect "DEL without CNI_NETNS exits 0" test $RC -eq 0

# --- failures ------------------------------------------------------------------
run_cni ADD default refuse-me
expect "ADD refused by weftd: exit 1, code 100, weftd's message" \
	test "$RC:$(json_get "$OUT" 'j["code"], "no room at the inn" in j["msg"]')" = "1:100 True"
expect "refused ADD leaves no table" bash -c '! ip netns exec '"$NS"' nft list table inet weft >/dev/null 2>&1'

run_cni ADD default web-1 /run/netns/$NS "$(echo '{"cniVersion":"1.0.0","name":"weft-test","type":"weft-cni","socket":"'$SOCK'"}')"
expect "ADD without prevResult: exit 1, code 7, says chained" \
	test "$RC:$(json_get "$OUT" 'j["code"], "chained" in j["msg"]')" = "1:7 True"

N0=$(wc -l <"$TMP/events")
run_cni ADD kube-system coredns-1
expect "excluded namespace: ADD exits 0 and prints prevResult" \
	test "$RC:$(same_json "$OUT" "$PREV")" = "0:True"
expect "excluded namespace: no rules, weftd not told" \
	bash -c '! ip netns exec '"$NS"' nft list table inet weft >/dev/null 2>&1 && test "$(wc -l <'"$TMP/events"')" = '"$N0"

stop_fake
run_cni ADD default web-1
expect "ADD with weftd down: exit 1, code 11" test "$RC:$(json_get "$OUT" 'j["code"]')" = "1:11"
expect "the error names the socket and the reason" \
	test "$(json_get "$OUT" 'j["msg"]')" = "weftd is not reachable at $SOCK: No such file or directory"
expect "the error JSON carries cniVersion" test "$(json_get "$OUT" 'j["cniVersion"]')" = 1.0.0
expect "failed ADD leaves no table behind" bash -c '! ip netns exec '"$NS"' nft list table inet weft >/dev/null 2>&1'
# A socket file with nobody listening (weftd crashed): refused.
$PY -c 'import socket,sys; s=socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])' "$SOCK"
run_cni ADD default web-1
expect "ADD with a dead socket: 'Connection refused', no table" \
	bash -c 'test "$1" = "weftd is not reachable at $2: Connection refused" && ! ip netns exec '"$NS"' nft list table inet weft >/dev/null 2>&1' _ \
	"$(json_get "$OUT" 'j["msg"]')" "$SOCK"
run_cni DEL default web-1
expect "DEL with weftd down still exits 0" test $RC -eq 0

echo
if ((fails)); then
	echo "test_cni_plugin: $fails failed"
	echo "--- weft-cni log"; cat "$TMP/cni.log"
	exit 1
fi
echo "test_cni_plugin: all passed"
