#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# `make demo` / `make demo-down`: start weft-agent on loopback, bootstrap a
# node with its token, have the node request a workload identity over mTLS,
# and print what was issued. State lives in /run/weft-demo.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=/run/weft-demo
PORT=15012

down() {
	if [[ -f $DIR/agent.pid ]]; then
		kill "$(cat "$DIR/agent.pid")" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null || break; sleep 0.1; done
	fi
	rm -rf "$DIR"
}

up() {
	down
	mkdir -p "$DIR"
	cp deploy/examples/registry.yaml "$DIR/registry.yaml"
	# One random bootstrap token per node, readable by root only.
	umask 077
	for n in node1 node2; do
		echo "$n $(head -c 24 /dev/urandom | base64 | tr '+/' '-_')"
	done >"$DIR/tokens"
	cat >"$DIR/agent.yaml" <<-YAML
	listen: 127.0.0.1:$PORT
	trust_domain: cluster.local
	state_dir: state
	token_file: tokens
	registry_file: registry.yaml
	ttl_default: 24h
	ttl_max: 24h
	YAML
	build/weft-agent -t -c "$DIR/agent.yaml"
	build/weft-agent -c "$DIR/agent.yaml" >"$DIR/agent.log" 2>&1 &
	echo $! >"$DIR/agent.pid"
	for _ in $(seq 100); do
		grep -q "serving gRPC" "$DIR/agent.log" && break
		kill -0 "$(cat "$DIR/agent.pid")" 2>/dev/null || { cat "$DIR/agent.log"; exit 1; }
		sleep 0.1
	done
	/usr/bin/python3 tools/demo_client.py --agent 127.0.0.1:$PORT --dir "$DIR" \
		--node node1 --token "$(awk '$1 == "node1" {print $2}' "$DIR/tokens")" \
		--workload spiffe://cluster.local/ns/default/sa/client
	echo
	echo "agent log (last lines):"
	tail -n 5 "$DIR/agent.log" | sed 's/^/  /'
	echo
	echo "The agent keeps running (pid $(cat "$DIR/agent.pid")); 'make demo-down' stops it."
}

case ${1:-up} in
up) up ;;
down) down; echo "demo stopped, $DIR removed" ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
