/* SPDX-License-Identifier: Apache-2.0 */
/* The gateway's decisions: which peers, which authorities (gateway.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/registry.h>
#include <weft/sockaddr.h>

#include "gateway.h"
#include <weft/regcache.h>

#define GATEWAY_AUTHORITY_MAX (253 + 6)	/* a DNS name and ":65535" */

int gateway_peer_allowed(const struct gateway_self *g, const char *td, char *why, size_t len)
{
	if (g->allowed && g->allowed[0]) {
		for (size_t i = 0; g->allowed[i]; i++)
			if (!strcmp(g->allowed[i], td))
				return 0;
		snprintf(why, len, "trust domain %s is not one this gateway serves "
			 "(gateway_trust_domains)", td);
		return -EACCES;
	}
	if (!strcmp(td, g->trust_domain)) {
		snprintf(why, len, "trust domain %s is the gateway's own: its workloads reach "
			 "their nodes directly", td);
		return -EACCES;
	}
	return 0;
}

/* A DNS label: 1..63 of [a-z0-9-], not starting or ending with '-'. */
static int dns_label(const char *s, size_t n)
{
	if (!n || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return 0;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-") >= n;
}

/* "<name>.<ns>.svc[.cluster.local]" into name and ns. */
static int service_host(const char *h, size_t hl, char *name, char *ns)
{
	static const char tail[] = ".cluster.local";
	const char *d1, *d2;

	if (hl > sizeof(tail) - 1 && !memcmp(h + hl - (sizeof(tail) - 1), tail, sizeof(tail) - 1))
		hl -= sizeof(tail) - 1;
	if (hl < 4 || memcmp(h + hl - 4, ".svc", 4))
		return -EINVAL;
	hl -= 4;
	d1 = memchr(h, '.', hl);
	if (!d1)
		return -EINVAL;
	d2 = d1 + 1;
	if (memchr(d2, '.', hl - (size_t)(d2 - h)) || !dns_label(h, (size_t)(d1 - h)) ||
	    !dns_label(d2, hl - (size_t)(d2 - h)))
		return -EINVAL;
	memcpy(name, h, (size_t)(d1 - h));
	name[d1 - h] = '\0';
	memcpy(ns, d2, hl - (size_t)(d2 - h));
	ns[hl - (size_t)(d2 - h)] = '\0';
	return 0;
}

static const char *own_network(const struct gateway_self *g, struct regcache *rc)
{
	const struct reg_node *self = regcache_node(rc, g->node);

	return self ? self->network : NULL;
}

static int route_node(const struct gateway_self *g, struct regcache *rc, const char *net,
		      const struct sockaddr_storage *ss, const char *authority,
		      struct sockaddr_storage *to, socklen_t *tolen, char *why, size_t len)
{
	const struct reg_node *n = regcache_node_by_ip(rc, (const struct sockaddr *)ss);

	if (!n || strcmp(n->network, net)) {
		snprintf(why, len, "%s is not a node of network %s", authority, net);
		return -ENOENT;
	}
	if (!strcmp(n->name, g->node) || n->gateway_address) {
		snprintf(why, len, "%s is a gateway (%s), not a node behind one", authority,
			 n->name);
		return -ENOENT;
	}
	if (sockaddr_special((const struct sockaddr *)ss)) {
		snprintf(why, len, "%s: node %s has a %s address", authority, n->name,
			 sockaddr_special((const struct sockaddr *)ss));
		return -ENOENT;
	}
	if (sockaddr_port(ss) != n->hbone_port) {
		snprintf(why, len, "%s: node %s takes HBONE on port %u only", authority, n->name,
			 n->hbone_port);
		return -ENOENT;
	}
	return sockaddr_from_ip(n->address, n->hbone_port, to, tolen) ? -EINVAL : 0;
}

static int route_service(struct regcache *rc, const char *net, const char *authority,
			 const char *name, const char *ns, unsigned port,
			 struct sockaddr_storage *to, socklen_t *tolen, char *why, size_t len)
{
	const struct reg_service *s = regcache_service(rc, ns, name);
	int has_port = 0;

	for (size_t i = 0; s && i < s->n_ports; i++)
		has_port |= s->ports[i].port == port;
	if (!s || !has_port) {
		snprintf(why, len, "%s: no service %s/%s with port %u in network %s", authority,
			 ns, name, port, net);
		return -ENOENT;
	}
	/* At most one round over the endpoints: those of another network
	 * (imported ones) are skipped. */
	for (size_t i = 0; i < s->n_endpoints; i++) {
		const struct reg_workload *w = regcache_service_pick(rc, s);
		const struct reg_node *n = w ? regcache_node(rc, w->node) : NULL;

		if (!w)
			break;
		if (n && !strcmp(n->network, net) && !n->gateway_address &&
		    !sockaddr_from_ip(n->address, n->hbone_port, to, tolen) &&
		    !sockaddr_special((const struct sockaddr *)to))
			return 0;
	}
	snprintf(why, len, "%s: service %s/%s has no endpoint in network %s", authority, ns, name,
		 net);
	return -EHOSTUNREACH;
}

int gateway_route(const struct gateway_self *g, struct regcache *rc, const char *authority,
		  struct sockaddr_storage *to, socklen_t *tolen, char *why, size_t len)
{
	struct sockaddr_storage ss;
	char name[64], ns[64];
	const char *net = own_network(g, rc);
	size_t al = authority ? strnlen(authority, GATEWAY_AUTHORITY_MAX + 1) : 0;
	unsigned port = 0;

	if (!net) {
		snprintf(why, len, "this gateway (node %s) is not in its registry yet", g->node);
		return -EHOSTUNREACH;
	}
	if (!al || al > GATEWAY_AUTHORITY_MAX) {
		snprintf(why, len, "the authority is empty or longer than %d bytes",
			 GATEWAY_AUTHORITY_MAX);
		return -EINVAL;
	}
	if (!sockaddr_parse(authority, &ss, tolen) && sockaddr_port(&ss))
		return route_node(g, rc, net, &ss, authority, to, tolen, why, len);
	if (gateway_service_authority(authority, name, ns, &port)) {
		snprintf(why, len, "the authority is neither <node-ip>:<port> nor "
			 "<service>.<namespace>.svc[.cluster.local]:<port>");
		return -EINVAL;
	}
	return route_service(rc, net, authority, name, ns, port, to, tolen, why, len);
}

int gateway_service_authority(const char *authority, char name[64], char ns[64],
			      unsigned *port)
{
	size_t al = authority ? strnlen(authority, GATEWAY_AUTHORITY_MAX + 1) : 0;
	const char *colon = al ? memrchr(authority, ':', al) : NULL;

	*port = 0;
	if (!colon || al > GATEWAY_AUTHORITY_MAX)
		return -EINVAL;
	{
		size_t pl = al - (size_t)(colon - authority) - 1;

		if (pl && pl <= 5 && strspn(colon + 1, "0123456789") == pl)
			*port = (unsigned)strtoul(colon + 1, NULL, 10);
	}
	if (!*port || *port > 65535 ||
	    service_host(authority, (size_t)(colon - authority), name, ns))
		return -EINVAL;
	return 0;
}
