/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound capture: a pod's connection redirected to 15001. Finds the
 * original destination, resolves it (service VIP -> endpoint, pod IP ->
 * workload), and carries it: HBONE tunnel to the destination node, direct
 * delivery on the same node, or plaintext passthrough for unknown
 * destinations (or a reset when configured to deny). */
#ifndef DAEMON_OUTBOUND_H
#define DAEMON_OUTBOUND_H

#include <sys/socket.h>

#include <weft/registry.h>

#include "boundary.h"

struct weftd;
struct pod;

enum outbound_route {
	OUTBOUND_FAIL = 0,		/* refused: flag and why say it */
	OUTBOUND_TUNNEL,		/* HBONE to node */
	OUTBOUND_SAME_NODE,		/* fast path: delivered here, policy here */
	OUTBOUND_PASSTHROUGH,		/* not in the mesh: plain TCP from the pod */
	OUTBOUND_REMOTE,		/* another network's node, through its gateway */
};

/* How a connection from pod to orig goes, from this node's state (the
 * registry, the config): what a real connection acts on and what explain
 * shows, one decision for both. Pointers are into the registry (valid
 * until its next apply). */
struct outbound_decision {
	enum outbound_route route;
	const char *flag;		/* OUTBOUND_FAIL: the response_flags word */
	char why[BOUNDARY_WHY_MAX];	/* OUTBOUND_FAIL: in words */
	const struct reg_service *svc;	/* orig was this service's VIP */
	const struct reg_workload *w;	/* the destination workload, if known */
	const struct reg_node *node;	/* OUTBOUND_TUNNEL, OUTBOUND_REMOTE */
	const struct reg_remote *remote;	/* OUTBOUND_REMOTE: the network */
	const struct reg_node *gateway;	/* OUTBOUND_REMOTE: its gateway */
	struct sockaddr_storage dst;	/* the address to reach (the endpoint) */
	int mtls;			/* the route is mutual TLS */
};

/* peek: leave a service's round robin where it is (explain). */
void outbound_decide(struct weftd *d, const struct sockaddr_storage *orig, int peek,
		     struct outbound_decision *out);

/* fd: the accepted app socket (in the pod's netns); taken. */
void outbound_accept(struct weftd *d, struct pod *pod, int fd);
/* An identity became ready or the registry changed: resume connections
 * that wait for their source pod's certificate. */
void outbound_identities_changed(struct weftd *d);

#endif
