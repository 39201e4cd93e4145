/* SPDX-License-Identifier: Apache-2.0 */
/* The node's trust boundary (DESIGN §5.1): destinations that would loop into
 * weftd, and the source addresses peers claim. See boundary.h. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <weft/log.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>

#include "boundary.h"
#include "pods.h"
#include <weft/regcache.h>
#include "weftd.h"

static const char *boundary_port_name(const struct weftd *d, uint16_t port)
{
	if (port == d->cfg.outbound_port)
		return "outbound capture";
	if (port == d->cfg.inbound_plain_port)
		return "inbound plaintext capture";
	if (port == d->cfg.hbone_port)
		return "HBONE";
	if (port == d->cfg.admin_port)
		return "admin";
	if (port == d->cfg.ready_port)
		return "readiness";
	if (port == d->cfg.metrics_port)
		return "metrics";
	return NULL;
}

/* Whose address ip is, if it is one that weftd listens on or that leads
 * back to it: written into owner ("a loopback address", "this node's
 * address", ...); 0 when it is none of them. */
static int boundary_addr_owner(const struct weftd *d, const struct sockaddr *ip, char *owner,
			       size_t len)
{
	const char *special, *who = NULL;

	special = sockaddr_special(ip);
	if (special) {
		snprintf(owner, len, "a%s %s address", strchr("aeiou", special[0]) ? "n" : "",
			 special);
		return 1;
	}
	if (d->node_addr.ss_family != AF_UNSPEC &&
	    sockaddr_same_ip((const struct sockaddr *)&d->node_addr, ip))
		who = "this node's";
	else if (d->pods && pods_by_ip(d->pods, ip))
		who = "an enrolled pod's";
	else if (d->reg && regcache_workload_by_ip(d->reg, ip))
		who = "a workload's";
	else if (d->reg && regcache_node_by_ip(d->reg, ip))
		who = "a node's";
	if (!who)
		return 0;
	snprintf(owner, len, "%s address", who);
	return 1;
}

void boundary_node_ip_set(struct weftd *d)
{
	socklen_t len;

	memset(&d->node_addr, 0, sizeof(d->node_addr));
	d->node_addr.ss_family = AF_UNSPEC;
	if (d->cfg.node_ip && sockaddr_from_ip(d->cfg.node_ip, 0, &d->node_addr, &len))
		d->node_addr.ss_family = AF_UNSPEC;
}

int boundary_is_self(const struct weftd *d, const struct sockaddr *dst, char *why, size_t len)
{
	const struct sockaddr_storage *ss = (const struct sockaddr_storage *)dst;
	const char *port_name;
	char addr[80], owner[64];

	/* The port first: one compare per listener, and almost every
	 * destination stops here. */
	port_name = boundary_port_name(d, sockaddr_port(ss));
	if (!port_name || !boundary_addr_owner(d, dst, owner, sizeof(owner)))
		return 0;
	snprintf(why, len, "%s is weftd's own %s port on %s: refused, it would loop into weftd",
		 sockaddr_str(ss, addr, sizeof(addr)), port_name, owner);
	return 1;
}

int boundary_forwarded_parse(const char *v, struct sockaddr_storage *out)
{
	char host[INET6_ADDRSTRLEN + 2];
	const char *p, *end;
	unsigned long port = 0;
	size_t n;
	socklen_t sl;

	if (strncasecmp(v, "for=", 4))
		return -EINVAL;
	p = v + 4;
	if (*p == '"') {
		p++;
		end = strchr(p, '"');
		if (!end || end[1])
			return -EINVAL;
	} else {
		/* A token: only an IPv4 address fits (no ':' or '[' unquoted). */
		end = p + strlen(p);
		if (strpbrk(p, ":[]\""))
			return -EINVAL;
	}
	n = (size_t)(end - p);
	if (*p == '[') {
		const char *rb = memchr(p, ']', n);

		if (!rb || (size_t)(rb - p - 1) >= sizeof(host))
			return -EINVAL;
		memcpy(host, p + 1, (size_t)(rb - p - 1));
		host[rb - p - 1] = 0;
		if (!strchr(host, ':'))
			return -EINVAL;
		p = rb + 1;
	} else {
		const char *colon = memchr(p, ':', n);
		size_t hl = colon ? (size_t)(colon - p) : n;

		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, p, hl);
		host[hl] = 0;
		if (strchr(host, ':'))
			return -EINVAL;
		p += hl;
	}
	if (p < end) {
		/* ":port", digits only, 1..5 of them. */
		const char *q;

		if (*p != ':' || end - p < 2 || end - p > 6)
			return -EINVAL;
		for (q = p + 1; q < end; q++) {
			if (*q < '0' || *q > '9')
				return -EINVAL;
			port = port * 10 + (unsigned long)(*q - '0');
		}
		if (port > 65535)
			return -EINVAL;
	}
	return sockaddr_from_ip(host, (uint16_t)port, out, &sl);
}

/* why = "claimed source <claim> from <id> refused: <reason>"; the claim is
 * our rendering of the parsed address, or the escaped header when it did
 * not parse. */
static int boundary_refuse(char *why, size_t len, const char *header,
			   const struct sockaddr_storage *claim, const char *client_id,
			   const char *reason)
{
	char c[96], id[160];

	if (claim)
		sockaddr_str(claim, c, sizeof(c));
	else
		log_escape(c, sizeof(c), header, strlen(header));
	snprintf(why, len, "%s %s from %s refused: %s", claim ? "claimed source" :
		 "forwarded header", c, log_escape(id, sizeof(id), client_id, strlen(client_id)),
		 reason);
	return -EACCES;
}

int boundary_source_claim(const struct weftd *d, const char *forwarded, const char *client_id,
			  const struct sockaddr *tunnel_peer, const struct sockaddr_storage *dst_ips,
			  size_t n_dst_ips, struct sockaddr_storage *src, char *why, size_t len)
{
	const struct reg_workload *w;
	const struct reg_node *node;
	struct sockaddr_storage claim, na;
	char expect[SPIFFE_ID_MAX], reason[SPIFFE_ID_MAX + 160];
	const char *special, *td;
	socklen_t sl;

	memset(src, 0, sizeof(*src));
	src->ss_family = AF_UNSPEC;
	if (!forwarded)
		return 0;
	if (boundary_forwarded_parse(forwarded, &claim))
		return boundary_refuse(why, len, forwarded, NULL, client_id,
				       "not one for=\"ip[:port]\" element");
	special = sockaddr_special((struct sockaddr *)&claim);
	if (special) {
		snprintf(reason, sizeof(reason), "a%s %s address is never a source",
			 strchr("aeiou", special[0]) ? "n" : "", special);
		return boundary_refuse(why, len, forwarded, &claim, client_id, reason);
	}
	if (sockaddr_ip_in(dst_ips, n_dst_ips, (struct sockaddr *)&claim))
		return boundary_refuse(why, len, forwarded, &claim, client_id,
				       "it is the destination's own address");
	if (d->node_addr.ss_family != AF_UNSPEC &&
	    sockaddr_same_ip((const struct sockaddr *)&d->node_addr, (struct sockaddr *)&claim))
		return boundary_refuse(why, len, forwarded, &claim, client_id,
				       "it is this node's own address");
	w = d->reg ? regcache_workload_by_ip(d->reg, (struct sockaddr *)&claim) : NULL;
	if (!w)
		return boundary_refuse(why, len, forwarded, &claim, client_id,
				       "no workload in the registry has that address");
	td = regcache_trust_domain(d->reg);
	if (!td[0])
		td = d->cfg.trust_domain;
	snprintf(expect, sizeof(expect), "spiffe://%s/ns/%s/sa/%s", td, w->namespace,
		 w->service_account);
	if (strcmp(expect, client_id)) {
		snprintf(reason, sizeof(reason), "that address is workload %s, identity %s",
			 w->uid, expect);
		return boundary_refuse(why, len, forwarded, &claim, client_id, reason);
	}
	node = regcache_node(d->reg, w->node);
	if (!node || sockaddr_from_ip(node->address, 0, &na, &sl) ||
	    !sockaddr_same_ip((struct sockaddr *)&na, tunnel_peer)) {
		char peer[80];

		snprintf(reason, sizeof(reason), "workload %s runs on node %s (%s), the tunnel "
			 "comes from %s", w->uid, w->node, node ? node->address : "not in the registry",
			 sockaddr_str((const struct sockaddr_storage *)tunnel_peer, peer,
				      sizeof(peer)));
		return boundary_refuse(why, len, forwarded, &claim, client_id, reason);
	}
	*src = claim;
	return 0;
}
