/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound connections from enrolled pods (captured on 15001). */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/log.h>
#include <weft/loop.h>
#include <weft/netns.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>

#include "authz.h"
#include "accesslog.h"
#include "boundary.h"
#include "live.h"
#include "metrics.h"
#include "certs.h"
#include "outbound.h"
#include "pods.h"
#include <weft/regcache.h>
#include "relay.h"
#include "trace.h"
#include "tunnel.h"
#include "weftd.h"

enum ob_route {
	OB_TUNNEL = 1,
	OB_SAME_NODE,
	OB_PASSTHROUGH,
};

struct ob {
	struct weftd *d;
	struct pod *pod;
	struct relay *relay;
	struct tunnel_req *treq;
	enum ob_route route;
	struct sockaddr_storage src, orig, dst;
	char src_str[64], orig_str[64], dst_str[160];
	char dst_workload[128];
	const char *flag;		/* response_flags word, or NULL */
	struct ob *wait_next, **wait_pprev;	/* waiting for the source identity */
	struct loop_timer wait_timer;
	struct authz_conn az;			/* same-node delivery: policy here */
	struct metrics_conn mc;			/* istio_tcp_*, reporter="source" */
	char trace[TRACE_ID_LEN + 1];		/* in the access log and traceparent */
	struct live_conn lc;			/* weftctl connections */
};

/* Connections whose source pod has no certificate yet (a pod talks before
 * its SVID is issued, or before the registry names its service account):
 * held until the identity is ready, at most connect_timeout. */
static struct ob *ob_waiting;

static void ob_route(struct ob *ob);

/* Source labels: the pod's registry workload, or what enrollment said. */
static void ob_labels(struct ob *ob, struct metrics_labels *l, int mtls)
{
	struct weftd *d = ob->d;
	const struct reg_workload *w = d->reg ? regcache_workload(d->reg, ob->pod->uid) : NULL;

	metrics_labels_init(l, 0, mtls);
	metrics_labels_source(l, d, w, ob->pod->ident ? ident_id(ob->pod->ident) : NULL);
	if (!w) {
		l->v[ML_SRC_WORKLOAD] = ob->pod->name;
		l->v[ML_SRC_NAMESPACE] = ob->pod->ns;
	}
}

static void ob_unwait(struct ob *ob)
{
	if (!ob->wait_pprev)
		return;
	*ob->wait_pprev = ob->wait_next;
	if (ob->wait_next)
		ob->wait_next->wait_pprev = ob->wait_pprev;
	ob->wait_pprev = NULL;
	loop_timer_disarm(ob->d->loop, &ob->wait_timer);
}


static void ob_on_done(struct relay *r, const struct relay_stats *st)
{
	struct ob *ob = relay_udata(r);
	struct weftd *d = ob->d;

	if (ob->treq)
		tunnels_cancel(ob->treq);
	ob_unwait(ob);
	authz_forget(&ob->az);
	live_del(&ob->lc);
	if (!ob->mc.s) {
		struct metrics_labels l;

		ob_labels(ob, &l, 0);
		metrics_conn_end(d->metrics, &ob->mc, &l, ob->flag, st->a_to_b, st->b_to_a);
	} else {
		metrics_conn_end(d->metrics, &ob->mc, NULL, ob->flag, st->a_to_b, st->b_to_a);
	}
	access_log(d, &(struct access_entry){
		.direction = "outbound", .trace = ob->trace, .src = ob->src_str,
		.dst = ob->dst_str, .src_id = ob->pod->ident ? ident_id(ob->pod->ident) : "",
		.dst_workload = ob->dst_workload, .sent = st->a_to_b, .received = st->b_to_a,
		.ms = st->end_ms - st->start_ms, .flag = ob->flag, .error = st->why });
	d->live--;
	pods_conn_done(ob->pod);
	free(ob);
}

static void ob_on_connect_failed(struct relay *r, int side, int err, const char *why)
{
	struct ob *ob = relay_udata(r);

	(void)err;
	(void)why;
	/* Side 0 is the app's accepted socket: it never connects. relay.c
	 * reports it as "failed to connect" when ob_fail resets it before its
	 * ready task ran; the refusal already set the flag and counted it. */
	if (side != 1 || ob->flag)
		return;
	ob->flag = "CONNECT";
	ob->d->stats.failed++;
}

static const struct relay_hooks ob_hooks = {
	.on_connect_failed = ob_on_connect_failed,
	.on_done = ob_on_done,
};

static void ob_fail(struct ob *ob, const char *flag, const char *why)
{
	ob->flag = flag;
	ob->d->stats.failed++;
	log_warn("outbound %s -> %s refused [%s]: %s", ob->src_str, ob->orig_str, flag, why);
	relay_reset(ob->relay, why);
}

static void ob_on_tunnel(void *arg, struct h2tun *t, int32_t id, int status, const char *why,
			 const char *flag)
{
	struct ob *ob = arg;

	ob->treq = NULL;
	if (status == 200) {
		h2tun_stream_set_udata(t, id, ob->relay);	/* tunnel.c routes to it */
		relay_attach_stream(ob->relay, t, id, tunnels_kick);
		return;
	}
	ob_fail(ob, flag ? flag : "CONNECT", why ? why : "tunnel stream refused");
}

/* Connect side B from a socket made in the destination pod's namespace
 * (same-node delivery, from the client's address when it can), or else in
 * the source pod's (passthrough); marked, so the capture rules let it by. */
static void ob_connect_direct(struct ob *ob, struct pod *dst)
{
	socklen_t len = ob->dst.ss_family == AF_INET ? sizeof(struct sockaddr_in)
						     : sizeof(struct sockaddr_in6);
	int fd, err;

	fd = dst ? pods_deliver_socket(dst, &ob->src, ob->dst.ss_family)
		 : pods_socket(ob->pod, ob->dst.ss_family);
	if (fd < 0) {
		ob_fail(ob, "CONNECT", "cannot create the delivery socket");
		return;
	}
	err = relay_attach_connect(ob->relay, fd, (struct sockaddr *)&ob->dst, len);
	if (err)
		ob_fail(ob, "CONNECT", "cannot start the delivery connect");
}

static void ob_on_wait_timeout(struct loop_timer *t)
{
	struct ob *ob = (struct ob *)((char *)t - offsetof(struct ob, wait_timer));

	ob_unwait(ob);
	ob_fail(ob, "IDENTITY_ERROR", ob->pod->ident ?
		"the source pod's certificate was not issued in time" :
		"the source pod's service account is unknown (not in the registry)");
}

static void ob_wait(struct ob *ob)
{
	struct weftd *d = ob->d;

	if (ob->wait_pprev)
		return;
	ob->wait_next = ob_waiting;
	if (ob_waiting)
		ob_waiting->wait_pprev = &ob->wait_next;
	ob->wait_pprev = &ob_waiting;
	ob_waiting = ob;
	ob->wait_timer.cb = ob_on_wait_timeout;
	loop_timer_arm(d->loop, &ob->wait_timer, d->cfg.connect_timeout_ms);
	log_debug("outbound %s -> %s waits for the source pod's certificate", ob->src_str,
		  ob->orig_str);
}

void outbound_identities_changed(struct weftd *d)
{
	struct ob *ob = ob_waiting, *next;

	(void)d;
	for (; ob; ob = next) {
		next = ob->wait_next;
		if (ob->pod->ident && ident_ready(ob->pod->ident)) {
			ob_unwait(ob);
			ob_route(ob);
		}
	}
}

/* Tunnel keys and gateway names fit tunnel.c's buffers (node[128],
 * via_gw[64]) with room: longer remote names are refused, not cut. */
#define OB_KEY_MAX 64

/* This node's network, as the registry names it (NULL: none). */
static const char *ob_own_network(struct weftd *d)
{
	const struct reg_node *n = regcache_node(d->reg, d->cfg.node_name);

	return n && n->network && n->network[0] ? n->network : NULL;
}

/* To a node of this network directly, or (remote) to a node of another
 * network through its gateway: outer tunnel to the gateway, inner mTLS
 * with the remote node inside it (DESIGN §8.1). */
static void ob_tunnel(struct ob *ob, const struct outbound_decision *dec)
{
	struct weftd *d = ob->d;
	const struct reg_node *node = dec->node, *gw = dec->gateway;
	const struct reg_remote *rm = dec->remote;
	struct sockaddr_storage na, ga;
	socklen_t nalen, galen;
	char expect[300], fwd[96], tp[TRACE_PARENT_LEN + 1], key[160];
	char gw_key[64], gw_expect[300], authority[160];
	struct tunnel_via via = { 0 };
	struct h2tun_connect_req req = { 0 };
	int over = 0;

	if (!ob->pod->ident || !ident_ready(ob->pod->ident)) {
		ob_wait(ob);
		return;
	}
	if (sockaddr_from_ip(node->address, node->hbone_port, &na, &nalen)) {
		ob_fail(ob, "NO_ROUTE", "the destination node has no usable address");
		return;
	}
	trace_parent(tp, ob->trace);
	req.authority = ob->dst_str;
	req.traceparent = tp;
	if (rm) {
		if (sockaddr_from_ip(gw->gateway_address, gw->hbone_port, &ga, &galen)) {
			ob_fail(ob, "NO_ROUTE", "the remote network's gateway has no usable address");
			return;
		}
		/* Names are the remote's: one that does not fit is refused,
		 * never cut into another's. */
		over |= snprintf(gw_key, sizeof(gw_key), "%s/%s", rm->network, gw->name) >=
			OB_KEY_MAX;
		over |= snprintf(gw_expect, sizeof(gw_expect), "spiffe://%s/weft/gateway/%s",
				 rm->trust_domain, gw->name) >= (int)sizeof(gw_expect);
		if (rm->unpooled) {
			/* Istio's form: the service's name both ways; the gateway
			 * picks the node, whichever of that domain's it is, and
			 * the node the endpoint. */
			over |= snprintf(authority, sizeof(authority), "%s.%s.svc.cluster.local:%u",
					 dec->svc->name, dec->svc->namespace,
					 sockaddr_port(&ob->orig)) >= (int)sizeof(authority);
			snprintf(expect, sizeof(expect), "spiffe://%s/weft/node/",
				 rm->trust_domain);
			over |= snprintf(key, sizeof(key), "%s/%s.%s", rm->network, dec->svc->name,
					 dec->svc->namespace) >= OB_KEY_MAX;
			snprintf(ob->dst_str, sizeof(ob->dst_str), "%s", authority);
			req.authority = authority;
		} else {
			over |= snprintf(expect, sizeof(expect), "spiffe://%s/weft/node/%s",
					 rm->trust_domain, node->name) >= (int)sizeof(expect);
			over |= snprintf(key, sizeof(key), "%s/%s", rm->network, node->name) >=
				OB_KEY_MAX;
			sockaddr_str(&na, authority, sizeof(authority));
		}
		if (over) {
			ob_fail(ob, "NO_ROUTE", "the remote network's names are too long");
			return;
		}
		via = (struct tunnel_via){ .gateway = gw_key, .addr = (struct sockaddr *)&ga,
					   .addrlen = galen, .expect_id = gw_expect,
					   .authority = authority, .unpooled = rm->unpooled };
		/* The source address means nothing in the other network
		 * (its pod CIDR may be ours): the network is said instead. */
		req.network = ob_own_network(d);
	} else {
		snprintf(expect, sizeof(expect), "spiffe://%s/weft/node/%s", d->cfg.trust_domain,
			 node->name);
		snprintf(key, sizeof(key), "%s", node->name);
		snprintf(fwd, sizeof(fwd), "for=\"%s\"", ob->src_str);
		req.forwarded = fwd;
	}
	ob->route = OB_TUNNEL;
	ob->treq = tunnels_open_stream(d->tunnels, ob->pod->ident, key, (struct sockaddr *)&na,
				       nalen, expect, rm ? &via : NULL, &req, ob_on_tunnel, ob);
	if (!ob->treq)
		ob_fail(ob, "UPSTREAM_OVERFLOW", "too many connections waiting for a tunnel");
}

static void ob_decide_fail(struct outbound_decision *out, const char *flag, const char *why)
{
	out->route = OUTBOUND_FAIL;
	out->flag = flag;
	snprintf(out->why, sizeof(out->why), "%s", why);
}

/* A service of another network: its endpoint, that endpoint's node and
 * the network's gateway, all looked up in that network's registry (its
 * names and addresses may be ours too). Never direct, never passthrough. */
static void ob_decide_remote(struct weftd *d, struct outbound_decision *out, uint16_t port,
			     int peek)
{
	const struct reg_remote *rm = out->remote;
	const struct reg_workload *w;
	socklen_t eplen;

	w = peek ? regcache_service_peek(d->reg, out->svc) : regcache_service_pick(d->reg, out->svc);
	if (!w) {
		ob_decide_fail(out, "NO_HEALTHY_UPSTREAM", "the remote service has no endpoints");
		return;
	}
	out->w = w;
	sockaddr_from_ip(w->ips[0], port, &out->dst, &eplen);
	out->node = regcache_remote_node(rm, w->node);
	out->gateway = regcache_remote_gateway(rm);
	if (!out->node) {
		ob_decide_fail(out, "NO_ROUTE", "the remote endpoint's node is not in its "
			       "network's registry");
		return;
	}
	if (!out->gateway) {
		snprintf(out->why, sizeof(out->why), "network %s has no gateway in its registry",
			 rm->network);
		out->route = OUTBOUND_FAIL;
		out->flag = "NO_ROUTE";
		return;
	}
	/* The gateway's address is the remote agent's word: never one that
	 * makes us connect into this host (§5.1). */
	{
		struct sockaddr_storage ga;
		socklen_t galen;
		const char *special = NULL;

		if (sockaddr_from_ip(out->gateway->gateway_address, out->gateway->hbone_port, &ga,
				     &galen) ||
		    (special = sockaddr_special((struct sockaddr *)&ga)) ||
		    (regcache_node_by_ip(d->reg, (struct sockaddr *)&ga) &&
		     (special = "one of this network's nodes")) ||
		    (regcache_workload_by_ip(d->reg, (struct sockaddr *)&ga) &&
		     (special = "one of this network's pods")) ||
		    boundary_is_self(d, (struct sockaddr *)&ga, out->why, sizeof(out->why))) {
			if (special || !out->why[0])
				snprintf(out->why, sizeof(out->why), "network %s's gateway address "
					 "%s is %s", rm->network, out->gateway->gateway_address,
					 special ? special : "not usable");
			out->route = OUTBOUND_FAIL;
			out->flag = "NO_ROUTE";
			return;
		}
	}
	out->route = OUTBOUND_REMOTE;
	out->mtls = 1;
}

void outbound_decide(struct weftd *d, const struct sockaddr_storage *orig, int peek,
		     struct outbound_decision *out)
{
	const struct reg_workload *w;
	uint16_t port;

	memset(out, 0, sizeof(*out));
	out->svc = regcache_service_by_vip(d->reg, (const struct sockaddr *)orig, &port);
	out->remote = regcache_service_remote(d->reg, out->svc);
	if (out->remote) {
		ob_decide_remote(d, out, port, peek);
		return;
	}
	if (out->svc) {
		w = peek ? regcache_service_peek(d->reg, out->svc) :
			   regcache_service_pick(d->reg, out->svc);
		if (!w) {
			ob_decide_fail(out, "NO_HEALTHY_UPSTREAM", "the service has no endpoints");
			return;
		}
		/* The endpoint's first IP, at the service's target port (the
		 * registry validated it; a failure leaves dst unusable). */
		socklen_t eplen;
		sockaddr_from_ip(w->ips[0], port, &out->dst, &eplen);
	} else {
		out->dst = *orig;
		w = regcache_workload_by_ip(d->reg, (const struct sockaddr *)orig);
	}
	out->w = w;
	/* Before any route opens a socket: never into weftd itself (§5.1),
	 * whether the app named the port or a service mapped to it. */
	if (boundary_is_self(d, (struct sockaddr *)&out->dst, out->why, sizeof(out->why))) {
		out->route = OUTBOUND_FAIL;
		out->flag = "NO_ROUTE";
		return;
	}
	if (!w || w->tunnel == REG_TUNNEL_NONE) {
		if (!w && d->cfg.unknown_destination == SETTINGS_UNKNOWN_DENY) {
			ob_decide_fail(out, "NO_ROUTE", "destination is not in the registry and "
				       "unknown_destination is deny");
			return;
		}
		out->route = OUTBOUND_PASSTHROUGH;
		return;
	}
	if (!strcmp(w->node, d->cfg.node_name) && d->cfg.same_node_fast_path) {
		out->route = OUTBOUND_SAME_NODE;
		return;
	}
	out->node = regcache_node(d->reg, w->node);
	if (!out->node) {
		ob_decide_fail(out, "NO_ROUTE",
			       "the destination workload's node is not in the registry");
		return;
	}
	out->route = OUTBOUND_TUNNEL;
	out->mtls = 1;
}

static void ob_route(struct ob *ob)
{
	struct weftd *d = ob->d;
	struct outbound_decision dec;
	char why[BOUNDARY_WHY_MAX];

	outbound_decide(d, &ob->orig, 0, &dec);
	if (dec.dst.ss_family != AF_UNSPEC) {
		ob->dst = dec.dst;
		sockaddr_str(&ob->dst, ob->dst_str, sizeof(ob->dst_str));
	}
	if (!ob->mc.s) {
		char principal[SPIFFE_ID_MAX];
		struct metrics_labels l;

		ob_labels(ob, &l, dec.mtls);
		if (dec.remote && dec.w) {
			/* Another network's workload: its trust domain, its
			 * node's cluster (never a same-named one of ours). */
			snprintf(principal, sizeof(principal), "spiffe://%s/ns/%s/sa/%s",
				 dec.remote->trust_domain, dec.w->namespace,
				 dec.w->service_account);
			metrics_labels_destination(&l, d, dec.w, principal);
			l.v[ML_DST_CLUSTER] = dec.node && dec.node->cluster && dec.node->cluster[0] ?
					      dec.node->cluster : dec.remote->network;
		} else {
			metrics_labels_destination(&l, d, dec.w, NULL);
		}
		metrics_labels_service(&l, d, dec.svc);
		metrics_conn_start(d->metrics, &ob->mc, &l);
	}
	if (dec.w)
		snprintf(ob->dst_workload, sizeof(ob->dst_workload), "%s", dec.w->uid);
	switch (dec.route) {
	case OUTBOUND_FAIL:
		ob_fail(ob, dec.flag, dec.why);
		return;
	case OUTBOUND_PASSTHROUGH:
		ob->route = OB_PASSTHROUGH;
		d->stats.passthrough++;
		ob_connect_direct(ob, NULL);
		return;
	case OUTBOUND_SAME_NODE:
		ob->route = OB_SAME_NODE;
		d->stats.same_node++;
		/* Both ends are ours: the destination's policy applies here. */
		ob->az.src = ob->src;
		ob->az.dst_port = sockaddr_port(&ob->dst);
		ob->az.direction = "same-node";
		snprintf(ob->az.dst_uid, sizeof(ob->az.dst_uid), "%s", dec.w->uid);
		snprintf(ob->az.principal, sizeof(ob->az.principal), "%s",
			 ob->pod->ident ? ident_id(ob->pod->ident) : "");
		if (authz_check(d, &ob->az, why, sizeof(why))) {
			ob_fail(ob, "DENY", why);
			return;
		}
		authz_track(&ob->az, ob->relay);
		/* Into the destination's namespace when it is enrolled here;
		 * else out of the source's, like any local traffic. */
		ob_connect_direct(ob, pods_by_ip(d->pods, (struct sockaddr *)&ob->dst));
		return;
	case OUTBOUND_TUNNEL:
	case OUTBOUND_REMOTE:
		ob_tunnel(ob, &dec);
		return;
	}
}

void outbound_accept(struct weftd *d, struct pod *pod, int fd)
{
	socklen_t len = sizeof(struct sockaddr_in);
	char why[160];
	struct ob *ob;

	d->stats.outbound++;
	ob = calloc(1, sizeof(*ob));
	if (!ob) {
		close(fd);
		return;
	}
	ob->d = d;
	ob->pod = pod;
	trace_new(ob->trace);
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ob->orig, &len) < 0) {
		log_warn("outbound from pod %s: no original destination (%m); not captured?",
			 pod->uid);
		close(fd);
		free(ob);
		return;
	}
	len = sizeof(ob->src);
	getpeername(fd, (struct sockaddr *)&ob->src, &len);
	sockaddr_str(&ob->src, ob->src_str, sizeof(ob->src_str));
	sockaddr_str(&ob->orig, ob->orig_str, sizeof(ob->orig_str));
	snprintf(ob->dst_str, sizeof(ob->dst_str), "%s", ob->orig_str);
	ob->relay = relay_accept(d->loop, fd, &ob_hooks, ob);
	if (!ob->relay) {
		free(ob);
		return;
	}
	pod->conns++;
	d->live++;
	ob->lc = (struct live_conn){ .direction = "outbound", .trace = ob->trace,
				     .src = ob->src_str, .dst = ob->dst_str,
				     .src_id = pod->ident ? ident_id(pod->ident) : "",
				     .dst_workload = ob->dst_workload };
	live_add(&ob->lc, loop_now_ms(d->loop));
	if (d->draining) {
		ob_fail(ob, "OVERFLOW", "weftd is shutting down");
		return;
	}
	if (d->live > d->cfg.max_connections) {
		ob_fail(ob, "OVERFLOW", "max_connections reached");
		return;
	}
	if (pods_over_share(pod, why, sizeof(why))) {
		ob_fail(ob, "OVERFLOW", why);
		return;
	}
	ob_route(ob);
}
