#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# The simulated cluster of DESIGN §9 for tests, the demo and the benchmark:
# nodes and pods are network namespaces on this machine. Every address lives
# only inside namespaces made here; the root netns is never touched, so
# traffic never leaves them and a test cannot break the host's network.
#
#   cluster.sh up     --name NAME --nodes N --pods M [--no-weft] [--agent]
#                     [--weftd | --weftd-sidecar] [--ttl DUR] [--td TRUST_DOMAIN]
#                     [--weftd-conf 'key: value']... [--no-wait-ready] [--keep-on-failure]
#                     [--clusters C1,C2,...]
#   cluster.sh down   --name NAME            idempotent; also after a failed up
#   cluster.sh status --name NAME
#   cluster.sh exec   --name NAME TARGET -- cmd...    TARGET: nK-pJ | nK | nodeK | ctl | ul | gw
#   cluster.sh ip     --name NAME POD        the pod's IPv4 address
#   cluster.sh start  --name NAME agent | weftd [--node K] [--pod nK-pJ]   (all without them)
#   cluster.sh stop   --name NAME agent | weftd [--node K] [--pod nK-pJ] [--signal SIG]
#
# Topology (K = 1..N nodes, J = 1..M pods per node):
#   NAME-ul       underlay netns: bridge br0, one port per node (nK) and ctl
#   NAME-ctl      eth0 172.30.0.250/24: weft-agent, gRPC on :15012
#   NAME-nK       node: eth0 172.30.0.K/24, ip_forward=1, cni0 bridge
#                 10.244.K.1/24 (made by the CNI bridge plugin), a route to
#                 each other node's 10.244.L.0/24 via 172.30.0.L; weftd runs here
#   NAME-nK-pJ    pod nK-pJ: eth0 from the CNI bridge + host-local plugins,
#                 default route via 10.244.K.1; weft-cni chained after them
# Pods: name nK-pJ, namespace default, service account sa-nK-pJ, label
# app=app-pJ. Service svc-pJ: VIP 10.96.0.J, port 80 -> 8080, selector
# app=app-pJ, so pod J of every node backs service J.
#
# --weftd-sidecar (weft as per-pod sidecars, DESIGN §8 benchmark mode): no
# weftd in the nodes; instead `weftd --mode sidecar` runs inside each pod's
# netns (state in nK/sc/pJ/), started before the pod's CNI ADD, and the
# pod's weft-cni (a per-pod conflist) enrolls the pod into that sidecar's
# own socket. Each sidecar is a registry node of its own, sc-nK-pJ, with
# the pod's IP as its address and its own token, and the pod's workload is
# placed on it; NAME-ctl gets routes to the pod CIDRs so sidecars reach the
# agent.
#
# --clusters west,east (multi-cluster, DESIGN §8.1): one WAN and N clusters,
# each a network of its own (its own underlay, agent, CA and registry) with
# the same addresses as the others: the same 172.30.0.0/24 underlay and the
# same 10.244.K.0/24 pod CIDRs (overlapping pod IPs are what multi-network
# means). Cluster C is named NAME-C, its trust domain is C.local and its
# registry network C; every other option applies to each. Each cluster also
# gets a gateway node:
#   NAME-wan      the WAN: bridge br0, 192.168.50.0/24, nothing else
#   NAME-C-gw     eth0 172.30.0.249/24 on C's underlay, wan0 192.168.50.I/24
#                 (I = C's position in the list, from 1); the cluster's nodes
#                 route 192.168.50.0/24 through it. It forwards from its
#                 underlay to the WAN (masqueraded, as a cloud NAT would)
#                 and from the WAN into the underlay only the agent's port
#                 (WAN:15012 -> 172.30.0.250:15012, as a LoadBalancer would
#                 publish it for federation): otherwise the one way into a
#                 cluster from outside is what listens on its gateway's WAN
#                 address.
# `down --name NAME` removes every cluster and the WAN.
#
# State: /run/weft-test/NAME (see the report in tests/cluster/README.md).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${WEFT_BUILD:-$ROOT/build}
BASE=${WEFT_TEST_RUN:-/run/weft-test}
CNI_DIR=${WEFT_CNI_DIR:-/usr/lib/cni}
PY=/usr/bin/python3
CNI_EXEC=$HERE/cni_exec.py
TD=cluster.local
CTL_IP=172.30.0.250
GW_IP=172.30.0.249
WAN_NET=192.168.50
AGENT_PORT=15012
READY_TIMEOUT=${WEFT_TEST_READY_TIMEOUT:-20}

NAME="" STATE="" NODES=0 PODS=0 WEFT=1 AGENT=0 WEFTD=0 SIDECAR=0 TTL="" WAIT_READY=1 KEEP=0
# Multi-cluster: the clusters to make (top level), and for one of them its
# WAN (the multi-cluster's name), its place on it and its network name.
CLUSTERS="" WAN="" WAN_INDEX=0 NETWORK=""
WEFTD_CONF=()
ARGS=("$@")
UP_DONE=0

say() { printf 'cluster %s: %s\n' "$NAME" "$*" >&2; }
die() { printf 'cluster.sh: %s\n' "$*" >&2; exit 1; }

usage() {
	sed -n '/^#   cluster.sh/,/^#$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# Run a setup step; on failure say which command failed and abort `up`
# (whose EXIT trap then tears down what was built).
must() {
	local err
	if ! err=$("$@" 2>&1); then
		die "failed: $*${err:+: $err}"
	fi
}

# Test hook: WEFT_TEST_FAIL_AT=<stage> makes `up` fail at that stage, so
# tests can prove that `down` cleans up after a half-built cluster.
stage() {
	[[ ${WEFT_TEST_FAIL_AT:-} == "$1" ]] && die "injected failure at stage '$1' (WEFT_TEST_FAIL_AT)"
	return 0
}

ns_ul() { echo "$NAME-ul"; }
ns_ctl() { echo "$NAME-ctl"; }
ns_node() { echo "$NAME-n$1"; }
ns_pod() { echo "$NAME-n$1-p$2"; }
ns_gw() { echo "$NAME-gw"; }
ns_wan() { echo "$1-wan"; }

# Every netns of this cluster, pods first (the order they are deleted in).
# Anchored so that cluster "a" never matches the namespaces of cluster "a-b".
cluster_netns() {
	ip netns list 2>/dev/null | awk '{print $1}' |
		grep -E "^${NAME//./\\.}-(ul|ctl|gw|wan|n[0-9]+(-p[0-9]+)?)\$" |
		awk '{ o = /-p[0-9]+$/ ? 0 : /-n[0-9]+$/ ? 1 : /-(ctl|gw)$/ ? 2 : /-ul$/ ? 3 : 4
		       print o, $0 }' |
		sort -n | cut -d' ' -f2
}

netns_exists() { [[ -e /run/netns/$1 ]]; }

# --- processes ---------------------------------------------------------------
# Pidfiles hold "pid starttime" so that a recycled pid is never killed.

proc_start() {
	local stat rest f
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	rest=${stat##*) }
	read -ra f <<<"$rest"
	echo "${f[19]}"
}

# Print the pid recorded in pidfile $1 if that process is still running.
pidfile_pid() {
	local pid start
	[[ -f $1 ]] || return 1
	read -r pid start <"$1" || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ $(proc_start "$pid") == "$start" ]] || return 1
	echo "$pid"
}

# spawn NETNS PIDFILE LOGFILE cmd...: start a daemon inside a netns.
# `ip netns exec` execs the command, so $! is the daemon itself.
spawn() {
	local ns=$1 pidfile=$2 logf=$3 pid
	shift 3
	ip netns exec "$ns" "$@" </dev/null >>"$logf" 2>&1 &
	pid=$!
	echo "$pid $(proc_start "$pid")" >"$pidfile"
}

# wait_until SECONDS PIDFILE what cmd...: poll cmd until it succeeds; fail
# early if the process of PIDFILE exits.
wait_until() {
	local secs=$1 pidfile=$2 what=$3 i
	shift 3
	for ((i = 0; i < secs * 20; i++)); do
		"$@" && return 0
		if ! pidfile_pid "$pidfile" >/dev/null; then
			say "$what: the process exited"
			return 1
		fi
		sleep 0.05
	done
	say "$what: not within ${secs}s"
	return 1
}

proc_gone() {
	[[ -e /proc/$1 ]] || return 0
	[[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]	# exited, not reaped yet
}

# stop_pidfiles SIGNAL PIDFILE...: signal every process, wait up to 3 s for
# all of them together (weft-agent drains for up to 2 s on SIGTERM), then
# SIGKILL what is left. Quiet when nothing runs.
stop_pidfiles() {
	local sig=$1 f pid i pids=() left
	shift
	for f in "$@"; do
		pid=$(pidfile_pid "$f") && kill -s "$sig" "$pid" 2>/dev/null && pids+=("$pid")
	done
	for ((i = 0; i < 60 && ${#pids[@]}; i++)); do
		left=()
		for pid in "${pids[@]}"; do proc_gone "$pid" || left+=("$pid"); done
		pids=("${left[@]}")
		((${#pids[@]})) && sleep 0.05
	done
	((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
	rm -f "$@"
	return 0
}

log_tail() { [[ -f $1 ]] && tail -n "${2:-15}" "$1" | sed 's/^/    | /' >&2; }

# --- the agent and weftd -----------------------------------------------------

agent_listening() {
	[[ -s $STATE/agent/ca/root-cert.pem ]] &&
		ip netns exec "$(ns_ctl)" ss -Hltn "sport = :$AGENT_PORT" 2>/dev/null | grep -q .
}

# Start weft-agent in NAME-ctl with the generated config, token file and
# registry; returns once it listens on 172.30.0.250:15012.
start_agent() {
	local bin=$BUILD/weft-agent d=$STATE/agent
	if pidfile_pid "$d/agent.pid" >/dev/null; then
		say "agent already running"
		return 0
	fi
	if [[ ! -x $bin ]]; then
		say "cannot start the agent: $bin does not exist (run make)"
		return 1
	fi
	if ! "$bin" -t -c "$d/agent.yaml" >>"$d/agent.log" 2>&1; then
		say "agent config check failed ($bin -t -c $d/agent.yaml):"
		log_tail "$d/agent.log"
		return 1
	fi
	spawn "$(ns_ctl)" "$d/agent.pid" "$d/agent.log" "$bin" -c "$d/agent.yaml"
	if ! wait_until 10 "$d/agent.pid" "agent on $CTL_IP:$AGENT_PORT" agent_listening; then
		log_tail "$d/agent.log"
		return 1
	fi
	say "agent running in $(ns_ctl) on $CTL_IP:$AGENT_PORT (log $d/agent.log)"
}

# Run weftd (args after the label) in netns NS with state in DIR; returns
# once its enrollment socket DIR/cni.sock exists (weft-cni ADD needs it),
# or for a gateway once it is ready.
spawn_weftd() {
	local ns=$1 d=$2 what=$3 bin=$BUILD/weftd gw=0
	shift 3
	[[ ${1:-} == --mode && ${2:-} == gateway ]] && gw=1
	if pidfile_pid "$d/weftd.pid" >/dev/null; then
		say "$what already running"
		return 0
	fi
	if [[ ! -x $bin ]]; then
		say "cannot start $what: $bin does not exist yet (build it with make, or run up without --weftd)"
		return 1
	fi
	# A socket left by a killed weftd would look like a ready one.
	rm -f "$d/cni.sock"
	# Test hook: WEFT_TEST_WEFTD_NOFILE="<state dir basename>=<n> ..." (e.g.
	# "n1=160") starts that weftd with RLIMIT_NOFILE n (soft and hard), so a
	# test can drive it into EMFILE (test_attack_exhaust.py).
	local nofile
	for nofile in ${WEFT_TEST_WEFTD_NOFILE:-}; do
		if [[ ${nofile%%=*} == "$(basename "$d")" ]]; then
			set -- prlimit --nofile="${nofile#*=}" -- "$bin" "$@"
			bin=
			break
		fi
	done
	# Test hook: WEFT_TEST_WEFTD_PRELOAD="<state dir basename>=<lib.so> ..."
	# starts that weftd with LD_PRELOAD=lib.so (test_dp_slow_disk.py: a
	# slow fsync).
	local pre
	for pre in ${WEFT_TEST_WEFTD_PRELOAD:-}; do
		if [[ ${pre%%=*} == "$(basename "$d")" ]]; then
			set -- env LD_PRELOAD="${pre#*=}" ${bin:+"$bin"} "$@"
			bin=
			break
		fi
	done
	spawn "$ns" "$d/weftd.pid" "$d/weftd.log" ${bin:+"$bin"} "$@" -c "$d/weftd.yaml"
	if ((gw)); then
		# A gateway enrolls no pods: no CNI socket; it is up once it
		# is ready (its identity and the registry).
		if ! wait_until "$READY_TIMEOUT" "$d/weftd.pid" "$what /healthz/ready" gateway_ready; then
			log_tail "$d/weftd.log"
			return 1
		fi
	elif ! wait_until 10 "$d/weftd.pid" "$what (socket $d/cni.sock)" test -S "$d/cni.sock"; then
		log_tail "$d/weftd.log"
		return 1
	fi
	say "$what running in $ns (log $d/weftd.log)"
}

# The node's weftd in node K's netns with $STATE/nK/weftd.yaml.
start_weftd() { spawn_weftd "$(ns_node "$1")" "$STATE/n$1" "weftd on node$1"; }

# The gateway node's weftd (multi-cluster): --mode gateway in its netns,
# outer tunnels on its WAN address.
start_gateway() { spawn_weftd "$(ns_gw)" "$STATE/gw" "gateway weftd" --mode gateway; }

gateway_ready() {
	ip netns exec "$(ns_gw)" curl -sf -m 1 -o /dev/null \
		"http://$GW_IP:15021/healthz/ready" 2>/dev/null
}

sc_dir() { echo "$STATE/n$1/sc/p$2"; }

# The sidecar weftd of pod nK-pJ inside the pod's netns with
# nK/sc/pJ/weftd.yaml (--mode sidecar on the command line).
start_sidecar() {
	spawn_weftd "$(ns_pod "$1" "$2")" "$(sc_dir "$1" "$2")" "sidecar weftd of n$1-p$2" \
		--mode sidecar
}

sidecar_ready() {
	ip netns exec "$(ns_pod "$1" "$2")" curl -sf -m 1 -o /dev/null \
		"http://127.0.0.1:15021/healthz/ready" 2>/dev/null
}

weftd_ready() {
	ip netns exec "$(ns_node "$1")" curl -sf -m 1 -o /dev/null \
		"http://172.30.0.$1:15021/healthz/ready" 2>/dev/null ||
		ip netns exec "$(ns_node "$1")" curl -sf -m 1 -o /dev/null \
			"http://127.0.0.1:15021/healthz/ready" 2>/dev/null
}

# --- generated files -----------------------------------------------------------

gen_token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

write_agent_files() {
	local d=$STATE/agent k j tok
	mkdir -p "$d" "$STATE/registry"
	(
		umask 077
		: >"$d/tokens"
		for ((k = 1; k <= NODES; k++)); do
			tok=$(gen_token)
			echo "node$k $tok" >>"$d/tokens"
			echo "$tok" >"$STATE/n$k/token"
			((SIDECAR)) || continue
			# The agent reads its tokens at start (and on SIGHUP): every
			# sidecar's is made here, before any pod exists.
			for ((j = 1; j <= PODS; j++)); do
				tok=$(gen_token)
				echo "sc-n$k-p$j $tok" >>"$d/tokens"
				echo "$tok" >"$(sc_dir "$k" "$j")/token"
			done
		done
		if [[ -n $WAN ]]; then
			tok=$(gen_token)
			echo "gw $tok" >>"$d/tokens"
			echo "$tok" >"$STATE/gw/token"
		fi
	)
	cat >"$d/agent.yaml" <<-EOF
	# generated by tests/cluster/cluster.sh for cluster $NAME
	listen: $CTL_IP:$AGENT_PORT
	metrics_listen: $CTL_IP:15014
	trust_domain: $TD
	state_dir: $d/ca
	token_file: $d/tokens
	registry_file: $STATE/registry/registry.yaml
	ttl_default: ${TTL:-24h}
	ttl_max: ${TTL:-24h}
	log_level: info
	EOF
}

# write_conf DIR NODE_NAME [NODE_IP] WHAT: DIR/weftd.yaml with DIR's token,
# socket and state; the cluster-wide --weftd-conf lines last.
write_conf() {
	local d=$1 node=$2 ip=$3 what=$4 line
	mkdir -p "$d/state"
	{
		echo "# generated by tests/cluster/cluster.sh for cluster $NAME$what"
		echo "node_name: $node"
		[[ -n $ip ]] && echo "node_ip: $ip"
		echo "agent_address: $CTL_IP:$AGENT_PORT"
		echo "agent_bundle: $STATE/agent/ca/root-cert.pem"
		echo "token_file: $d/token"
		echo "cni_socket: $d/cni.sock"
		echo "state_dir: $d/state"
		echo "trust_domain: $TD"
		for line in "${WEFTD_CONF[@]}"; do echo "$line"; done
	} >"$d/weftd.yaml"
}

write_weftd_conf() { write_conf "$STATE/n$1" "node$1" "172.30.0.$1" ""; }

# The sidecar of pod nK-pJ: its own node name, token, socket and state; no
# node_ip (it takes the pod's address at enrollment; `up` adds the line
# afterwards so that a restarted sidecar listens at once).
write_sidecar_conf() {
	write_conf "$(sc_dir "$1" "$2")" "sc-n$1-p$2" "" " (sidecar of n$1-p$2)"
}

# write_conflist K [J]: node K's network; with J, the one of pod nK-pJ
# (sidecar mode: weft-cni talks to that pod's sidecar). Same IPAM store.
write_conflist() {
	local k=$1 d=$STATE/n$1 weft="" out=$STATE/n$1/cni.conflist sock=$STATE/n$1/cni.sock
	if [[ -n ${2:-} ]]; then
		out=$(sc_dir "$k" "$2")/cni.conflist
		sock=$(sc_dir "$k" "$2")/cni.sock
	fi
	if ((WEFT)); then
		weft=$(printf ',\n    {"type": "weft-cni", "socket": "%s", "log_file": "%s"}' \
			"$sock" "$d/weft-cni.log")
	fi
	cat >"$out" <<-EOF
	{
	  "cniVersion": "1.0.0",
	  "name": "weft-test",
	  "plugins": [
	    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
	     "ipam": {"type": "host-local",
	              "ranges": [[{"subnet": "10.244.$k.0/24", "gateway": "10.244.$k.1"}]],
	              "routes": [{"dst": "0.0.0.0/0"}],
	              "dataDir": "$d/ipam"}}$weft
	  ]
	}
	EOF
}

# The registry weft-agent serves. Written twice by `up`: before the pods
# exist (workloads without IPs, so the agent can already sign their
# identities) and after CNI ADD gave them addresses. Replaced atomically; the
# agent watches the folder and streams the change as a delta.
write_registry() {
	local f=$STATE/registry/registry.yaml k j ip
	{
		echo "# generated by tests/cluster/cluster.sh for cluster $NAME"
		echo "trust_domain: $TD"
		echo "nodes:"
		for ((k = 1; k <= NODES; k++)); do
			echo "  - name: node$k"
			echo "    address: 172.30.0.$k"
			if [[ -n $NETWORK ]]; then
				echo "    cluster: $NETWORK"
				echo "    network: $NETWORK"
			fi
			((SIDECAR)) || continue
			# A sidecar is a node whose address is its pod's: known
			# once CNI ADD has given the pod one.
			for ((j = 1; j <= PODS; j++)); do
				ip=$(pod_ip "n$k-p$j")
				[[ -n $ip ]] || continue
				echo "  - name: sc-n$k-p$j"
				echo "    address: $ip"
			done
		done
		if [[ -n $WAN ]]; then
			echo "  - name: gw"
			echo "    address: $GW_IP"
			echo "    cluster: $NETWORK"
			echo "    network: $NETWORK"
			echo "    gateway_address: $WAN_NET.$WAN_INDEX"
		fi
		echo "workloads:"
		for ((k = 1; k <= NODES; k++)); do
			for ((j = 1; j <= PODS; j++)); do
				# A sidecar's workload needs its node, so its pod's IP.
				((SIDECAR)) && [[ -z $(pod_ip "n$k-p$j") ]] && continue
				echo "  - name: n$k-p$j"
				echo "    namespace: default"
				echo "    service_account: sa-n$k-p$j"
				if ((SIDECAR)); then
					echo "    node: sc-n$k-p$j"
				else
					echo "    node: node$k"
				fi
				ip=$(pod_ip "n$k-p$j")
				[[ -n $ip ]] && echo "    ips: [$ip]"
				echo "    labels: {app: app-p$j}"
			done
		done
		echo "services:"
		for ((j = 1; j <= PODS; j++)); do
			echo "  - name: svc-p$j"
			echo "    namespace: default"
			echo "    vips: [10.96.0.$j]"
			echo "    ports: [{port: 80, target_port: 8080}]"
			echo "    selector: {app: app-p$j}"
		done
	} >"$f.tmp" && mv -f "$f.tmp" "$f"
}

write_env() {
	cat >"$STATE/cluster.env" <<-EOF
	NAME=$NAME
	NODES=$NODES
	PODS=$PODS
	WEFT=$WEFT
	AGENT=$AGENT
	WEFTD=$WEFTD
	SIDECAR=$SIDECAR
	BUILD=$BUILD
	TD=$TD
	NETWORK=$NETWORK
	WAN=$WAN
	WAN_INDEX=$WAN_INDEX
	PHASE=$1
	EOF
}

# The cluster's parameters; the binaries it was brought up with stay in use
# (for start, and for CNI DEL in down) unless WEFT_BUILD says otherwise.
load_env() {
	[[ -f $STATE/cluster.env ]] || die "cluster $NAME is not up (no $STATE/cluster.env)"
	local k v
	while IFS='=' read -r k v; do
		case $k in
		NODES) NODES=$v ;; PODS) PODS=$v ;; WEFT) WEFT=$v ;;
		AGENT) AGENT=$v ;; WEFTD) WEFTD=$v ;; SIDECAR) SIDECAR=$v ;;
		BUILD) [[ -z ${WEFT_BUILD:-} ]] && BUILD=$v ;;
		TD) TD=$v ;; NETWORK) NETWORK=$v ;; WAN) WAN=$v ;; WAN_INDEX) WAN_INDEX=$v ;;
		esac
	done <"$STATE/cluster.env"
}

# pods.tsv: node pod netns ip namespace service-account app
pod_ip() {
	[[ -f $STATE/pods.tsv ]] || return 0
	awk -F'\t' -v p="$1" '$2 == p { print $4 }' "$STATE/pods.tsv"
}

# --- topology ------------------------------------------------------------------

# Veth from netns $1 (eth0, address $2/24) to port $3 of the underlay bridge.
# Created inside the namespaces: nothing ever appears in the root netns.
# A netns that is one bridge, br0, IPv4 only: an underlay or the WAN.
add_bridge_netns() {
	must ip netns add "$1"
	must ip netns exec "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 \
		net.ipv6.conf.default.disable_ipv6=1
	must ip -n "$1" link set lo up
	must ip -n "$1" link add br0 type bridge
	must ip -n "$1" link set br0 up
}

attach_underlay() {
	local ns=$1 addr=$2 port=$3 ul
	ul=$(ns_ul)
	must ip -n "$ns" link set lo up
	must ip -n "$ns" link add eth0 type veth peer name "$port" netns "$ul"
	# Only IPv4 on the underlay: no ND/MLD chatter in packet captures.
	must ip netns exec "$ns" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1
	must ip -n "$ul" link set "$port" master br0 up
	must ip -n "$ns" addr add "$addr/24" dev eth0
	must ip -n "$ns" link set eth0 up
}

cni_args() { echo "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=$1;K8S_POD_INFRA_CONTAINER_ID=$2"; }

# cni K J COMMAND: run the node's conflist for pod nK-pJ inside node K's
# netns, as the kubelet's runtime would.
cni() {
	local k=$1 j=$2 cmd=$3 pns conf=$STATE/n$1/cni.conflist
	pns=$(ns_pod "$k" "$j")
	((SIDECAR)) && conf=$(sc_dir "$k" "$j")/cni.conflist
	ip netns exec "$(ns_node "$k")" "$PY" "$CNI_EXEC" "$cmd" \
		--conflist "$conf" --netns "/var/run/netns/$pns" \
		--containerid "$pns" --ifname eth0 --args "$(cni_args "n$k-p$j" "$pns")" \
		--cni-path "$CNI_DIR:$BUILD" --cache "$STATE/n$k/pods/n$k-p$j.json" \
		--timeout "${CNI_TIMEOUT:-30}"
}

add_pod() {
	local k=$1 j=$2 pns ip err
	pns=$(ns_pod "$k" "$j")
	must ip netns add "$pns"
	must ip -n "$pns" link set lo up
	if ((SIDECAR)); then
		# The sidecar starts first, as its container would; ADD then
		# enrolls the pod into it.
		write_sidecar_conf "$k" "$j"
		write_conflist "$k" "$j"
		start_sidecar "$k" "$j" || exit 1
	fi
	if ! err=$(cni "$k" "$j" ADD 2>&1 >/dev/null); then
		say "CNI ADD of pod n$k-p$j failed:"
		printf '%s\n' "$err" | sed 's/^/    /' >&2
		# A runtime cleans up a failed ADD with DEL.
		cni "$k" "$j" DEL >/dev/null 2>&1
		((WEFT)) && log_tail "$STATE/n$k/weft-cni.log" 5
		((SIDECAR)) && log_tail "$(sc_dir "$k" "$j")/weftd.log" 5
		exit 1
	fi
	ip=$("$PY" "$CNI_EXEC" ips --cache "$STATE/n$k/pods/n$k-p$j.json" | grep -m1 -v :)
	[[ -n $ip ]] || die "CNI ADD of pod n$k-p$j returned no IPv4 address"
	printf 'node%s\tn%s-p%s\t%s\t%s\tdefault\tsa-n%s-p%s\tapp-p%s\n' \
		"$k" "$k" "$j" "$pns" "$ip" "$k" "$j" "$j" >>"$STATE/pods.tsv"
	if ((SIDECAR)); then
		# The pod's address is the sidecar's node IP from now on, also
		# after a restart; and the agent learns the new node at once, so
		# the sidecar gets its identities without waiting for the others.
		echo "node_ip: $ip" >>"$(sc_dir "$k" "$j")/weftd.yaml"
		write_registry
	fi
}

# The gateway node of a cluster of a multi-cluster: on the underlay and on
# the WAN, the nodes' route to the WAN, forwarding only outward.
add_gateway() {
	local gw k wan
	gw=$(ns_gw) wan=$(ns_wan "$WAN")
	netns_exists "$wan" || die "no WAN netns $wan (the multi-cluster's)"
	must ip netns add "$gw"
	attach_underlay "$gw" "$GW_IP" gw
	# The WAN side: a veth whose peer is port w<I> of the WAN's bridge.
	must ip -n "$gw" link add wan0 type veth peer name "w$WAN_INDEX" netns "$wan"
	must ip netns exec "$gw" sysctl -qw net.ipv6.conf.wan0.disable_ipv6=1
	must ip -n "$wan" link set "w$WAN_INDEX" master br0 up
	must ip -n "$gw" addr add "$WAN_NET.$WAN_INDEX/24" dev wan0
	must ip -n "$gw" link set wan0 up
	must ip netns exec "$gw" sysctl -qw net.ipv4.ip_forward=1
	must ip netns exec "$gw" nft -f - <<-EOF
	table ip weft_gateway {
		chain forward {
			type filter hook forward priority 0; policy drop;
			iifname "eth0" oifname "wan0" accept
			iifname "wan0" oifname "eth0" ct state established,related accept
			iifname "wan0" oifname "eth0" ct status dnat accept
		}
		# Only its WAN address answers the WAN: its internal one (the
		# gateway weftd's readiness and metrics) does not.
		chain input {
			type filter hook input priority 0; policy accept;
			iifname "wan0" ip daddr != $WAN_NET.$WAN_INDEX drop
		}
		# The agent is published on the WAN address (as a LoadBalancer
		# Service would be), for the agents it federates with.
		chain prerouting {
			type nat hook prerouting priority -100;
			iifname "wan0" tcp dport $AGENT_PORT dnat to $CTL_IP
		}
		chain postrouting {
			type nat hook postrouting priority 100;
			oifname "wan0" masquerade
		}
	}
	EOF
	for ((k = 1; k <= NODES; k++)); do
		must ip -n "$(ns_node "$k")" route add "$WAN_NET.0/24" via "$GW_IP" dev eth0
		must ip -n "$gw" route add "10.244.$k.0/24" via "172.30.0.$k" dev eth0
	done
	must ip -n "$(ns_ctl)" route add "$WAN_NET.0/24" via "$GW_IP" dev eth0
}

# --- multi-cluster: the WAN and one cluster per name, each by a call of
# this script with the options it was given ------------------------------------

multi_clusters() { tr ',' ' ' <"$STATE/multi.clusters"; }

cmd_multi_up() {
	local c i=0 wan
	[[ $CLUSTERS =~ ^[a-z][a-z0-9]*(,[a-z][a-z0-9]*)+$ ]] ||
		die "--clusters: two or more names (a-z, 0-9), comma-separated"
	((EUID == 0)) || die "must run as root (network namespaces)"
	wan=$(ns_wan "$NAME")
	if [[ -e $STATE ]] || netns_exists "$wan"; then
		die "multi-cluster $NAME exists already (remove it with: $0 down --name $NAME)"
	fi
	trap 'do_multi_down >/dev/null 2>&1; exit 1' EXIT
	must mkdir -p "$STATE"
	echo "$CLUSTERS" >"$STATE/multi.clusters"
	add_bridge_netns "$wan"
	for c in $(multi_clusters); do
		i=$((i + 1))
		# Every option of ours but --name and --clusters goes to each.
		"${BASH_SOURCE[0]}" up --name "$NAME-$c" --td "$c.local" --network "$c" \
			--wan "$NAME" --wan-index "$i" "${SUB_ARGS[@]}" >/dev/null ||
			die "cluster $NAME-$c did not come up"
	done
	UP_DONE=1
	trap - EXIT
	for c in $(multi_clusters); do
		"${BASH_SOURCE[0]}" status --name "$NAME-$c"
		echo
	done
}

do_multi_down() {
	local c rc=0
	for c in $(multi_clusters 2>/dev/null); do
		"${BASH_SOURCE[0]}" down --name "$NAME-$c" >/dev/null || rc=1
	done
	ip netns del "$(ns_wan "$NAME")" 2>/dev/null
	netns_exists "$(ns_wan "$NAME")" && rc=1
	[[ -n $STATE && $STATE == "$BASE"/* ]] && rm -rf -- "$STATE"
	rmdir "$BASE" 2>/dev/null
	return $rc
}

on_up_exit() {
	((UP_DONE)) && return
	trap - EXIT
	if ((KEEP)); then
		say "up failed; state kept for inspection, remove it with: $0 down --name $NAME"
	else
		say "up failed; tearing down what was built (use --keep-on-failure to inspect)"
		do_down >/dev/null 2>&1
	fi
	exit 1
}

cmd_up() {
	local k j l
	if ! [[ $NODES =~ ^[0-9]+$ ]] || ((NODES < 1 || NODES > 200)); then
		die "--nodes must be 1..200"
	fi
	if ! [[ $PODS =~ ^[0-9]+$ ]] || ((PODS > 250)); then
		die "--pods must be 0..250"
	fi
	((EUID == 0)) || die "must run as root (network namespaces)"
	command -v ip >/dev/null || die "iproute2 is missing (make deps)"
	[[ -x $PY ]] || die "$PY is missing"
	for l in bridge host-local; do
		[[ -x $CNI_DIR/$l ]] || die "$CNI_DIR/$l is missing: install containernetworking-plugins (make deps)"
	done
	((WEFTD && SIDECAR)) && die "--weftd and --weftd-sidecar exclude each other"
	((SIDECAR && !WEFT)) && die "--weftd-sidecar needs weft-cni (drop --no-weft)"
	((WEFTD || SIDECAR)) && AGENT=1
	if ((WEFT)) && [[ ! -x $BUILD/weft-cni ]]; then
		die "$BUILD/weft-cni does not exist: build it (make) or use --no-weft"
	fi
	if [[ -e $STATE ]] || [[ -n $(cluster_netns) ]]; then
		die "cluster $NAME exists already (remove it with: $0 down --name $NAME)"
	fi
	if ((WEFT && !WEFTD && !SIDECAR)); then
		say "note: weft-cni is chained but weftd is not started (no --weftd): weft-cni ADD fails unless something serves each node's cni.sock"
	fi

	trap on_up_exit EXIT
	if ! mkdir -p "$STATE" || ! chmod 0700 "$STATE"; then
		die "cannot create $STATE"
	fi
	write_env starting
	: >"$STATE/pods.tsv"

	stage underlay
	add_bridge_netns "$(ns_ul)"
	must ip netns add "$(ns_ctl)"
	attach_underlay "$(ns_ctl)" "$CTL_IP" ctl

	stage nodes
	for ((k = 1; k <= NODES; k++)); do
		mkdir -p "$STATE/n$k/pods" "$STATE/n$k/ipam"
		for ((j = 1; SIDECAR && j <= PODS; j++)); do mkdir -p "$(sc_dir "$k" "$j")"; done
		must ip netns add "$(ns_node "$k")"
		attach_underlay "$(ns_node "$k")" "172.30.0.$k" "n$k"
		must ip netns exec "$(ns_node "$k")" sysctl -qw net.ipv4.ip_forward=1
		for ((l = 1; l <= NODES; l++)); do
			((l == k)) && continue
			must ip -n "$(ns_node "$k")" route add "10.244.$l.0/24" via "172.30.0.$l" dev eth0
		done
		# Sidecars talk to the agent from their pod's address.
		((SIDECAR)) && must ip -n "$(ns_ctl)" route add "10.244.$k.0/24" via "172.30.0.$k" dev eth0
		write_conflist "$k"
		write_weftd_conf "$k"
	done
	if [[ -n $WAN ]]; then
		stage gateway
		add_gateway
		write_conf "$STATE/gw" gw "$WAN_NET.$WAN_INDEX" " (gateway)"
		printf 'mode: gateway\ninternal_ip: %s\n' "$GW_IP" >>"$STATE/gw/weftd.yaml"
	fi
	write_agent_files
	write_registry

	stage agent
	if ((AGENT)); then
		start_agent || exit 1
	fi
	stage weftd
	if ((WEFTD)); then
		for ((k = 1; k <= NODES; k++)); do
			start_weftd "$k" || exit 1
		done
		if [[ -n $WAN ]]; then
			start_gateway || exit 1
		fi
	fi

	stage pods
	for ((k = 1; k <= NODES; k++)); do
		for ((j = 1; j <= PODS; j++)); do
			add_pod "$k" "$j"
		done
	done
	stage registry
	write_registry

	if ((WEFTD && WAIT_READY)); then
		for ((k = 1; k <= NODES; k++)); do
			if ! wait_until "$READY_TIMEOUT" "$STATE/n$k/weftd.pid" \
				"weftd on node$k /healthz/ready" weftd_ready "$k"; then
				log_tail "$STATE/n$k/weftd.log"
				exit 1
			fi
		done
	fi
	if ((SIDECAR && WAIT_READY)); then
		for ((k = 1; k <= NODES; k++)); do
			for ((j = 1; j <= PODS; j++)); do
				if ! wait_until "$READY_TIMEOUT" "$(sc_dir "$k" "$j")/weftd.pid" \
					"sidecar of n$k-p$j /healthz/ready" sidecar_ready "$k" "$j"; then
					log_tail "$(sc_dir "$k" "$j")/weftd.log"
					exit 1
				fi
			done
		done
	fi
	write_env up
	UP_DONE=1
	trap - EXIT
	cmd_status
}

# --- down ------------------------------------------------------------------------

do_down() {
	local d f k j pod ns pids left dels
	# 1. CNI DEL for every pod, while weftd still runs (weft-cni DEL tells
	#    it), as a runtime does when it removes a pod sandbox. Best effort:
	#    nodes in parallel; after a failure (a hung weftd costs the 5 s
	#    timeout) the node's other pods are skipped, their namespaces go anyway.
	if [[ -d $STATE ]]; then
		[[ -f $STATE/cluster.env ]] && load_env
		dels=()
		for d in "$STATE"/n*/pods; do
			[[ -d $d ]] || continue
			(
				for f in "$d"/*.json; do
					[[ -f $f ]] || continue
					pod=$(basename "$f" .json)
					[[ $pod =~ ^n([0-9]+)-p([0-9]+)$ ]] || continue
					k=${BASH_REMATCH[1]} j=${BASH_REMATCH[2]}
					netns_exists "$(ns_node "$k")" || break
					if ! CNI_TIMEOUT=5 cni "$k" "$j" DEL >/dev/null 2>&1; then
						echo "cluster $NAME: CNI DEL of $pod failed; skipping the other pods of node$k" >&2
						break
					fi
				done
			) &
			dels+=($!)
		done
		# Not a bare `wait`: after a failed `up` the daemons are our children.
		((${#dels[@]})) && wait "${dels[@]}"
		# 2. Daemons we started, by pidfile: SIGTERM, then SIGKILL.
		stop_pidfiles TERM "$STATE"/n*/weftd.pid "$STATE"/n*/sc/p*/weftd.pid \
			"$STATE"/gw/weftd.pid "$STATE"/agent/agent.pid
	fi
	# 3. Anything else still running in our namespaces (apps started with
	#    `exec`, a weftd whose pidfile was lost).
	for ns in $(cluster_netns); do
		mapfile -t pids < <(ip netns pids "$ns" 2>/dev/null | grep -vx -e "$$" -e "$PPID")
		((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null
	done
	# 4. The namespaces; their veths, bridges, routes and nftables rules go
	#    with them.
	for ns in $(cluster_netns); do
		ip netns del "$ns" 2>/dev/null || {
			sleep 0.2
			ip netns del "$ns" 2>/dev/null || echo "cluster $NAME: cannot delete netns $ns" >&2
		}
	done
	# 5. State: configs, logs, sockets, IPAM leases, tokens, CA.
	[[ -n $STATE && $STATE == "$BASE"/* ]] && rm -rf -- "$STATE"
	rmdir "$BASE" 2>/dev/null
	left=$(cluster_netns)
	if [[ -n $left ]]; then
		echo "cluster $NAME: netns left behind: $left" >&2
		return 1
	fi
	return 0
}

cmd_down() {
	if [[ -f $STATE/multi.clusters ]]; then
		do_multi_down && echo "multi-cluster $NAME: down"
		return
	fi
	do_down && echo "cluster $NAME: down"
}

# --- status, exec, start/stop --------------------------------------------------

proc_state() {
	local pid
	if pid=$(pidfile_pid "$1"); then echo "running (pid $pid)"; else echo "$2"; fi
}

cmd_status() {
	load_env
	local k j phase weft
	phase=$(awk -F= '$1 == "PHASE" {print $2}' "$STATE/cluster.env")
	weft=$( ((WEFT)) && echo "weft-cni chained" || echo "no weft-cni")
	((SIDECAR)) && weft+=", weftd as per-pod sidecars"
	echo "cluster $NAME: $NODES nodes x $PODS pods, $weft, $phase; state $STATE"
	printf '%-8s %-16s %-14s %-15s %s\n' "" netns address pod-cidr process
	printf '%-8s %-16s %-14s %-15s agent %s\n' ctl "$(ns_ctl)" "$CTL_IP:$AGENT_PORT" - \
		"$(proc_state "$STATE/agent/agent.pid" "not running")"
	[[ -n $WAN ]] && printf '%-8s %-16s %-14s %-15s %s\n' gw "$(ns_gw)" "$GW_IP" - \
		"gateway weftd $(proc_state "$STATE/gw/weftd.pid" "not running"); WAN $WAN_NET.$WAN_INDEX on $(ns_wan "$WAN"), network $NETWORK, trust domain $TD"
	for ((k = 1; k <= NODES; k++)); do
		if ((SIDECAR)); then
			printf '%-8s %-16s %-14s %-15s %s\n' "node$k" "$(ns_node "$k")" "172.30.0.$k" \
				"10.244.$k.0/24" "(weftd runs in the pods)"
			continue
		fi
		printf '%-8s %-16s %-14s %-15s weftd %s\n' "node$k" "$(ns_node "$k")" "172.30.0.$k" \
			"10.244.$k.0/24" "$(proc_state "$STATE/n$k/weftd.pid" "not running")"
	done
	if ((SIDECAR)); then
		echo
		printf '%-8s %-12s %-20s %s\n' sidecar node-name netns process
		for ((k = 1; k <= NODES; k++)); do
			for ((j = 1; j <= PODS; j++)); do
				printf '%-8s %-12s %-20s weftd %s\n' "n$k-p$j" "sc-n$k-p$j" \
					"$(ns_pod "$k" "$j")" \
					"$(proc_state "$(sc_dir "$k" "$j")/weftd.pid" "not running")"
			done
		done
	fi
	echo
	printf '%-8s %-8s %-20s %-12s %-10s %-12s %s\n' pod node netns ip namespace sa app
	awk -F'\t' '{ printf "%-8s %-8s %-20s %-12s %-10s %-12s %s\n", $2, $1, $3, $4, $5, $6, $7 }' \
		"$STATE/pods.tsv"
	if ((PODS)); then
		echo
		printf '%-8s %-14s %s\n' service vip endpoints
		for ((j = 1; j <= PODS; j++)); do
			printf '%-8s %-14s %s\n' "svc-p$j" "10.96.0.$j:80" \
				"$(awk -F'\t' -v a="app-p$j" '$7 == a { printf "%s%s:8080", s, $4; s = " " }' \
					"$STATE/pods.tsv")"
		done
	fi
}

target_netns() {
	case $1 in
	n[0-9]*-p[0-9]*) echo "$NAME-$1" ;;
	n[0-9]*) echo "$NAME-$1" ;;
	node[0-9]*) echo "$NAME-n${1#node}" ;;
	ctl | ul | gw) echo "$NAME-$1" ;;
	*) return 1 ;;
	esac
}

cmd_exec() {
	local ns
	[[ $# -ge 1 ]] || die "exec: which pod or node?"
	ns=$(target_netns "$1") || die "exec: bad target '$1' (nK-pJ, nK, nodeK, ctl, ul or gw)"
	netns_exists "$ns" || die "exec: no netns $ns (is cluster $NAME up?)"
	shift
	[[ ${1:-} == -- ]] && shift
	[[ $# -ge 1 ]] || die "exec: no command"
	exec ip netns exec "$ns" "$@"
}

cmd_ip() {
	local ip
	[[ $# -eq 1 ]] || die "ip: which pod?"
	ip=$(pod_ip "$1")
	[[ -n $ip ]] || die "ip: no pod $1 in cluster $NAME"
	echo "$ip"
}

# start|stop agent|weftd [--node K] [--pod nK-pJ] [--signal SIG]
cmd_startstop() {
	local op=$1 what=${2:-} node="" pod="" sig=TERM k j rc=0
	shift 2 || die "$op: agent or weftd?"
	while (($#)); do
		case $1 in
		--node) node=${2:-}; shift 2 ;;
		--pod) pod=${2:-}; shift 2 ;;
		--signal) sig=${2:-}; shift 2 ;;
		*) die "$op: unknown option $1" ;;
		esac
	done
	load_env
	case $what in
	agent)
		if [[ $op == start ]]; then start_agent || rc=1; else stop_pidfiles "$sig" "$STATE/agent/agent.pid"; fi
		;;
	weftd)
		[[ -n $pod ]] && ! ((SIDECAR)) && die "$op: --pod needs a cluster with --weftd-sidecar"
		for ((k = 1; k <= NODES; k++)); do
			[[ -n $node && $node != "$k" && $node != "node$k" && $node != "n$k" ]] && continue
			if ((SIDECAR)); then
				for ((j = 1; j <= PODS; j++)); do
					[[ -n $pod && $pod != "n$k-p$j" ]] && continue
					if [[ $op == start ]]; then
						start_sidecar "$k" "$j" || rc=1
					else
						stop_pidfiles "$sig" "$(sc_dir "$k" "$j")/weftd.pid"
					fi
				done
				continue
			fi
			if [[ $op == start ]]; then
				start_weftd "$k" || rc=1
			else
				stop_pidfiles "$sig" "$STATE/n$k/weftd.pid"
			fi
		done
		;;
	gateway)
		[[ -n $WAN ]] || die "$op: cluster $NAME has no gateway (not part of a multi-cluster)"
		if [[ $op == start ]]; then start_gateway || rc=1; else stop_pidfiles "$sig" "$STATE/gw/weftd.pid"; fi
		;;
	*) die "$op: agent, weftd or gateway?" ;;
	esac
	return $rc
}

# --- main ------------------------------------------------------------------------

main() {
	local cmd=${1:-} i
	SUB_ARGS=()
	for ((i = 1; i < ${#ARGS[@]}; i++)); do
		case ${ARGS[i]} in
		--name | --clusters) i=$((i + 1)) ;;
		*) SUB_ARGS+=("${ARGS[i]}") ;;
		esac
	done
	(($#)) && shift
	local rest=()
	while (($#)); do
		case $1 in
		--name) NAME=${2:-}; shift 2 || shift ;;
		--nodes) NODES=${2:-}; shift 2 || shift ;;
		--pods) PODS=${2:-}; shift 2 || shift ;;
		--no-weft) WEFT=0; shift ;;
		--agent) AGENT=1; shift ;;
		--weftd) WEFTD=1; shift ;;
		--weftd-sidecar) SIDECAR=1; shift ;;
		--ttl) TTL=${2:-}; shift 2 || shift ;;
		--weftd-conf) WEFTD_CONF+=("${2:-}"); shift 2 || shift ;;
		--no-wait-ready) WAIT_READY=0; shift ;;
		--keep-on-failure) KEEP=1; shift ;;
		--td) TD=${2:-}; shift 2 || shift ;;
		--clusters) CLUSTERS=${2:-}; shift 2 || shift ;;
		--network) NETWORK=${2:-}; shift 2 || shift ;;
		--wan) WAN=${2:-}; shift 2 || shift ;;
		--wan-index) WAN_INDEX=${2:-}; shift 2 || shift ;;
		--) rest+=("$@"); break ;;
		*) rest+=("$1"); shift ;;
		esac
	done
	[[ -n $cmd ]] || usage
	[[ -n $NAME ]] || die "--name NAME is required"
	# Short: NAME-nK-pJ must stay a readable netns name, and NAME is matched
	# in regular expressions.
	[[ $NAME =~ ^[a-z][a-z0-9-]{0,23}$ ]] || die "bad --name '$NAME' (a-z, 0-9, '-'; up to 24; starts with a letter)"
	STATE=$BASE/$NAME
	[[ $TD =~ ^[a-z0-9._-]+$ ]] || die "bad --td '$TD'"
	if [[ -n $WAN ]] && ! { [[ $WAN_INDEX =~ ^[0-9]+$ ]] && ((WAN_INDEX >= 1 && WAN_INDEX <= 200)); }; then
		die "--wan-index must be 1..200"
	fi
	case $cmd in
	up)
		((${#rest[@]} == 0)) || die "up: unexpected ${rest[*]}"
		if [[ -n $CLUSTERS ]]; then cmd_multi_up; else cmd_up; fi
		;;
	down) ((EUID == 0)) || die "must run as root"; cmd_down ;;
	status) cmd_status ;;
	exec) cmd_exec "${rest[@]}" ;;
	ip) cmd_ip "${rest[@]}" ;;
	start | stop) cmd_startstop "$cmd" "${rest[@]}" ;;
	*) usage ;;
	esac
}

main "$@"
