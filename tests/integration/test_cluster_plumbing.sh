#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The simulated cluster without weft (tests/cluster/cluster.sh --no-weft):
# pods reach each other by IP, across nodes and within a node, over ICMP and
# TCP, with their own source addresses (no masquerade); nothing appears in the
# root netns; `down` removes every namespace, process and file, also after a
# half-built `up`, and is idempotent. Exit 0 pass, 1 fail, 77 skip.
set -u
cd "$(dirname "$0")/../.." || exit 1
C=tests/cluster/cluster.sh
PING=$PWD/tests/cluster/ping.py
NAME=plumb$$
BASE=${WEFT_TEST_RUN:-/run/weft-test}

((EUID == 0)) || { echo "skip: needs root (network namespaces)"; exit 77; }
for p in /usr/lib/cni/bridge /usr/lib/cni/host-local; do
	[[ -x $p ]] || { echo "skip: $p missing (containernetworking-plugins)"; exit 77; }
done
for t in ip socat curl /usr/bin/python3; do
	command -v "$t" >/dev/null || { echo "skip: $t missing"; exit 77; }
done

fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
check() {	# description, command...
	local what=$1
	shift
	if "$@" >/dev/null 2>&1; then ok "$what"; else bad "$what"; fi
}

# What the root netns looks like: links, addresses, routes, rules, nftables,
# forwarding. Compared before, during and after the cluster.
root_snapshot() {
	ip -br link | awk '{print "link", $1, $3}'
	ip -o addr show | awk '{print "addr", $2, $3, $4}'
	ip route show table all | sed 's/^/route /'
	ip rule show | sed 's/^/rule /'
	nft list ruleset 2>/dev/null | sed 's/^/nft /'
	echo "ip_forward $(cat /proc/sys/net/ipv4/ip_forward)"
	ls /var/lib/cni/networks 2>/dev/null | sed 's/^/cni-state /'
}

# Only additions count: other tests on this machine may remove their things.
root_unchanged() {	# label
	local added
	added=$(diff <(echo "$BEFORE") <(root_snapshot) | grep '^>')
	if [[ -n $added ]]; then
		bad "root netns unchanged $1"
		echo "$added" | sed 's/^/      /'
	else
		ok "root netns unchanged $1"
	fi
}

our_netns() { ip netns list | awk '{print $1}' | grep -E "^$NAME-" ; }

cleanup() {
	"$C" down --name "$NAME" >/dev/null 2>&1
	"$C" down --name "$NAME-f" >/dev/null 2>&1
	"$C" down --name "$NAME-g" >/dev/null 2>&1
}
trap cleanup EXIT

BEFORE=$(root_snapshot)
t0=$SECONDS

# --- up -------------------------------------------------------------------------
if ! "$C" up --name "$NAME" --nodes 2 --pods 2 --no-weft; then
	echo "FAIL  cluster up"
	exit 1
fi
ok "cluster up in $((SECONDS - t0))s"
root_unchanged "while the cluster is up"
check "8 namespaces (ul, ctl, 2 nodes, 4 pods)" test "$(our_netns | wc -l)" -eq 8

declare -A IP
for p in n1-p1 n1-p2 n2-p1 n2-p2; do
	IP[$p]=$("$C" ip --name "$NAME" "$p")
	real=$("$C" exec --name "$NAME" "$p" -- ip -4 -o addr show dev eth0 | awk '{print $4}')
	if [[ -n ${IP[$p]} && $real == "${IP[$p]}"/24 ]]; then
		ok "pod $p has ${IP[$p]} from host-local, as recorded"
	else
		bad "pod $p address: recorded '${IP[$p]}', eth0 has '$real'"
	fi
done
check "n1 pods in 10.244.1.0/24" test "${IP[n1-p1]%.*}${IP[n1-p2]%.*}" = 10.244.110.244.1
check "n2 pods in 10.244.2.0/24" test "${IP[n2-p1]%.*}${IP[n2-p2]%.*}" = 10.244.210.244.2
check "pod default route via its node's cni0" \
	bash -c "$C exec --name $NAME n2-p1 -- ip route show default | grep -q 'via 10.244.2.1 dev eth0'"
check "node has no default route (traffic cannot leave)" \
	bash -c "[[ -z \$($C exec --name $NAME n1 -- ip route show default) ]]"
check "node ip_forward=1" \
	bash -c "[[ \$($C exec --name $NAME n1 -- cat /proc/sys/net/ipv4/ip_forward) == 1 ]]"
check "status lists all pods" \
	bash -c "$C status --name $NAME | grep -cE '^n[12]-p[12] +node[12] +$NAME-n[12]-p[12] +10\.244\.' | grep -qx 4"

# --- ICMP -----------------------------------------------------------------------
ping_from() { "$C" exec --name "$NAME" "$1" -- /usr/bin/python3 "$PING" -c 2 -W 2 "$2"; }
check "ping n1-p1 -> n1-p2 (same node)" ping_from n1-p1 "${IP[n1-p2]}"
check "ping n1-p1 -> n2-p1 (across nodes)" ping_from n1-p1 "${IP[n2-p1]}"
check "ping n2-p2 -> n1-p1 (across nodes, back)" ping_from n2-p2 "${IP[n1-p1]}"
check "ping node1 -> node2 on the underlay" ping_from n1 172.30.0.2
check "ping ctl -> node2 on the underlay" ping_from ctl 172.30.0.2
check "ping to a missing pod fails" bash -c "! $C exec --name $NAME n1-p1 -- /usr/bin/python3 $PING -W 0.5 10.244.2.99"

# --- TCP ------------------------------------------------------------------------
WWW=$(mktemp -d)
MARK="weft-plumbing-$RANDOM$RANDOM"
echo "$MARK" >"$WWW/marker"
# In subshells that outlive the app: `down` kills the apps, and bash would
# otherwise report every killed job.
("$C" exec --name "$NAME" n2-p1 -- /usr/bin/python3 -m http.server 8080 \
	--bind "${IP[n2-p1]}" --directory "$WWW" >"$WWW/http.log" 2>&1; :) 2>/dev/null &
("$C" exec --name "$NAME" n1-p2 -- socat TCP-LISTEN:9000,reuseaddr,fork EXEC:cat \
	>/dev/null 2>&1; :) 2>/dev/null &
APPS="$(jobs -p)"
got=""
for _ in $(seq 50); do
	got=$("$C" exec --name "$NAME" n1-p1 -- curl -s -m 2 "http://${IP[n2-p1]}:8080/marker") && break
	sleep 0.1
done
check "TCP (http) n1-p1 -> n2-p1 across nodes" test "$got" = "$MARK"
check "server saw the client's pod IP (no masquerade)" grep -q "^${IP[n1-p1]} .*GET /marker" "$WWW/http.log"
got=$("$C" exec --name "$NAME" n2-p2 -- curl -s -m 2 "http://${IP[n2-p1]}:8080/marker")
check "TCP (http) n2-p2 -> n2-p1 within a node" test "$got" = "$MARK"
got=""
for _ in $(seq 50); do
	got=$(echo "hello-$MARK" | "$C" exec --name "$NAME" n1-p1 -- socat -t 2 - "TCP:${IP[n1-p2]}:9000") &&
		[[ -n $got ]] && break
	sleep 0.1
done
check "TCP (socat echo) n1-p1 -> n1-p2 within a node" test "$got" = "hello-$MARK"
got=$(echo "back-$MARK" | "$C" exec --name "$NAME" n2-p2 -- socat -t 2 - "TCP:${IP[n1-p2]}:9000")
check "TCP (socat echo) n2-p2 -> n1-p2 across nodes" test "$got" = "back-$MARK"

# --- generated agent files ------------------------------------------------------
S=$BASE/$NAME
check "registry names every pod IP" \
	bash -c "for ip in ${IP[*]}; do grep -q \"ips: \\[\$ip\\]\" $S/registry/registry.yaml || exit 1; done"
check "weftd.yaml per node" grep -q "^cni_socket: $S/n2/cni.sock\$" "$S/n2/weftd.yaml"
check "token files are private" test "$(stat -c %a "$S/agent/tokens" "$S/n1/token" | sort -u)" = 600
if [[ -x build/weft-agent ]]; then
	out=$(build/weft-agent -t -c "$S/agent/agent.yaml" 2>&1)
	check "weft-agent accepts the generated config and registry" \
		grep -q "2 nodes, 4 workloads, 2 services" <<<"$out"
fi
root_unchanged "with apps running"

# --- down -----------------------------------------------------------------------
t1=$SECONDS
check "down" "$C" down --name "$NAME"
ok "down in $((SECONDS - t1))s"
# The apps, killed by down: gone (or exited and waiting to be reaped).
apps_gone() {
	local p
	for p in $APPS; do
		[[ -e /proc/$p && $(awk '{print $3}' "/proc/$p/stat" 2>/dev/null) != Z ]] && return 1
	done
	return 0
}
for _ in $(seq 40); do apps_gone && break; sleep 0.05; done
check "apps in the pods were killed" apps_gone
apps_gone && wait
check "no $NAME-* namespace left" test -z "$(our_netns)"
check "state dir removed" test ! -e "$S"
check "down again is a no-op" "$C" down --name "$NAME"
root_unchanged "after down"
rm -rf "$WWW"

# --- half-built clusters --------------------------------------------------------
WEFT_TEST_FAIL_AT=pods "$C" up --name "$NAME-f" --nodes 2 --pods 2 --no-weft --keep-on-failure 2>/dev/null
rc=$?
check "an up that fails exits non-zero" test "$rc" -ne 0
check "with --keep-on-failure its namespaces stay" test "$(ip netns list | grep -c "^$NAME-f-")" -eq 4
check "down after a failed up" "$C" down --name "$NAME-f"
check "... leaves no namespace" test -z "$(ip netns list | grep "^$NAME-f-")"
check "... nor state" test ! -e "$BASE/$NAME-f"
WEFT_TEST_FAIL_AT=registry "$C" up --name "$NAME-g" --nodes 1 --pods 1 --no-weft 2>/dev/null
check "a failed up tears itself down" test -z "$(ip netns list | grep "^$NAME-g-")" -a ! -e "$BASE/$NAME-g"
root_unchanged "at the end"

echo "total $((SECONDS - t0))s"
if ((fails)); then
	echo "$fails check(s) failed"
	exit 1
fi
echo "all checks passed"
exit 0
