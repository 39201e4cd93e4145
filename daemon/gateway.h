/* SPDX-License-Identifier: Apache-2.0 */
/* The multi-cluster gateway's decisions (DESIGN §8.1, `weftd --mode
 * gateway`): who may use it and where an outer CONNECT may lead. The
 * gateway is a byte path between another network's weftds and the HBONE
 * ports of its own network's nodes: it never reads the inner TLS, holds no
 * workload key and delivers into no pod. The HBONE listener (inbound.c)
 * carries the bytes; this file only decides. Pure: no sockets, no logs;
 * callers log the sentence written into why. */
#ifndef DAEMON_GATEWAY_H
#define DAEMON_GATEWAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct regcache;

#define GATEWAY_WHY_MAX 256

/* Who it is and what it serves: its node name and trust domain, the
 * trust domains whose workloads may use it (NULL-terminated; NULL or
 * empty: every federated domain, never its own). */
struct gateway_self {
	const char *node;
	const char *trust_domain;
	const char *const *allowed;
};

/* May a client of trust domain td (verified, federated) open outer
 * tunnels here? 0, or -EACCES with why. */
int gateway_peer_allowed(const struct gateway_self *g, const char *td, char *why, size_t len);

/* Where an outer CONNECT's authority leads, within the gateway's own
 * network (the network of its registry node):
 *   - "<node-ip>:<hbone-port>": a node of that network (weft's pooled
 *     form; not the gateway itself);
 *   - "<service>.<namespace>.svc.cluster.local:<port>" (or without
 *     ".cluster.local"): a service with that port; the next endpoint
 *     (round-robin) on a node of that network gives the node (Istio's
 *     form).
 * 0 with *to the node's HBONE address, or -EINVAL (malformed, 400),
 * -ENOENT (no such node or service in the network, 400) or -EHOSTUNREACH
 * (the service has no endpoint here, 503) with why. */
int gateway_route(const struct gateway_self *g, struct regcache *rc, const char *authority,
		  struct sockaddr_storage *to, socklen_t *tolen, char *why, size_t len);

/* "<service>.<namespace>.svc[.cluster.local]:<port>" (Istio's form) into
 * name, ns and *port (1..65535). 0, or -EINVAL. */
int gateway_service_authority(const char *authority, char name[64], char ns[64],
			      unsigned *port);

#endif
