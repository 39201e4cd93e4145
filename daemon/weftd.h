/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's process-wide state, shared by its modules. One loop, one thread,
 * and the chores thread for what would block it (lib/chores.c). */
#ifndef DAEMON_WEFTD_H
#define DAEMON_WEFTD_H

#include <stdint.h>
#include <sys/socket.h>

#include "gateway.h"
#include "settings.h"

#define WEFTD_MARK 0x539	/* SO_MARK of every socket weftd opens in a pod netns */

struct loop;
struct agentc;
struct certs;
struct ident;
struct regcache;
struct pods;
struct tunnels;
struct inbound;
struct cnisrv;
struct admin;
struct chores;
struct regapply;

struct weftd_stats {
	uint64_t outbound, inbound, inbound_plain;	/* connections accepted */
	uint64_t failed, denied;
	uint64_t passthrough, same_node;
	uint64_t gateway_streams;	/* --mode gateway: outer CONNECTs carried */
	/* Sockets in pod netns: taken from a reserve made ahead by the chores
	 * thread, or made in place (two setns) when the reserve was empty. */
	uint64_t sockets_ahead, sockets_in_place;
};

struct weftd {
	struct loop *loop;
	struct settings cfg;
	struct agentc *agent;
	struct certs *certs;
	struct ident *node_ident;
	struct regcache *reg;
	struct pods *pods;
	struct tunnels *tunnels;
	struct inbound *inbound;
	struct cnisrv *cni;
	struct admin *admin;
	struct chores *chores;			/* blocking work off the loop */
	struct regapply *regapply;		/* registry updates, on the control thread */
	struct metrics *metrics;
	struct gateway_self gateway;		/* --mode gateway: who it serves */
	struct weftd_stats stats;
	unsigned long live;			/* proxied connections now */
	struct sockaddr_storage node_addr;	/* cfg.node_ip parsed (boundary_node_ip_set);
						 * AF_UNSPEC while there is none */
	int draining;
	char node_id[256];			/* spiffe://td/weft/node/<name> */
};

/* 1 when the node has its certificate and a registry snapshot. */
int weftd_ready(const struct weftd *d);

#endif
