/* SPDX-License-Identifier: Apache-2.0 */
/* Inbound traffic. HBONE (15008 on the node IP): mTLS with the node's
 * SVID, the client must present a workload SVID of an accepted trust
 * domain; each CONNECT names a local pod's ip:port, which weftd dials from
 * a socket inside that pod's netns and answers 200 only once connected.
 * Plaintext (15006 inside each pod): traffic from outside the mesh,
 * delivered to the pod the same way. */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <linux/netfilter_ipv4.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/h2conn.h>
#include <weft/h2tun.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/netns.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>
#include <weft/tls.h>

#include "authz.h"
#include "accesslog.h"
#include "boundary.h"
#include "live.h"
#include "certs.h"
#include "gateway.h"
#include "inbound.h"
#include "metrics.h"
#include "pods.h"
#include <weft/regcache.h>
#include "relay.h"
#include "trace.h"
#include "weftd.h"

#define INBOUND_MAX_CONNS 4096
/* TLS handshakes not yet done (§5.1): idle or trickling connects from one
 * address cannot take the slots of another; each ends at its absolute
 * deadline (connect_timeout). A node opens one tunnel per source identity,
 * so a busy peer node may well have a hundred handshakes in flight. */
#define INBOUND_PENDING_MAX 1024
#define INBOUND_PENDING_PER_ADDR 128
/* What one authenticated peer may hold (§5.1), max_connections_per_peer:
 * a node opens one tunnel per (source identity, node) and another past
 * each H2TUN_MAX_STREAMS, so the default 16 connections of one identity is
 * a peer far past honest use. Each holds at most H2TUN_MAX_STREAMS streams
 * and 16 MiB queued toward the peer (h2tun's send budget), and the peer can
 * send at most its 16 MiB connection window before the apps take it: 16 x
 * 32 MiB in all. (Istio's unpooled form opens one per app connection.) */

struct inbound {
	struct weftd *d;
	struct listener ls;
	struct listener_pending *pending;
	unsigned n_conns;
	struct hconn *ready;		/* connections past their handshake */
	char addr[80];
};

/* One HBONE client connection; freed by h2c's on_release (lib/h2conn.h),
 * once the conn has ended and no hstream holds a reference. */
struct hconn {
	struct hconn *next, *prev;	/* in->ready, once h2 is up */
	struct inbound *in;
	struct h2conn h2c;
	struct h2tun *h2;		/* NULL before on_ready and once closed */
	int refused;			/* refusal already logged with its flag */
	char peer[64];
	struct sockaddr_storage peer_addr;	/* the tunnel's TCP peer */
	char peer_id[SPIFFE_ID_MAX];
	char peer_td[SPIFFE_TD_MAX + 1];
};

/* One CONNECT stream, from request to the relay's end. It holds a
 * reference on its hconn (h2conn_hold): the relay may end a loop round
 * after the tunnel closed, and its hooks still read hs->hc. */
struct hstream {
	struct hconn *hc;
	struct relay *relay;
	int32_t id;
	int attached;			/* relay owns the stream */
	int stream_gone;		/* stream closed before the delivery connected */
	struct pod *pod;
	char authority[64];
	char src[96];			/* for logs: the verified claim, or the tunnel peer */
	const char *flag;
	struct authz_conn az;
	struct metrics_conn mc;		/* istio_tcp_*, reporter="destination" */
	char trace[TRACE_ID_LEN + 1];	/* the source's, from its traceparent */
	struct live_conn lc;		/* weftctl connections */
};

/* --- shared helpers ---------------------------------------------------------- */

/* Labels of a connection into pod: the pod's registry workload and
 * identity; the source's workload when its address was proved (src, from
 * a checked claim, else AF_UNSPEC), and the principal its TLS proved. */
static void inbound_labels(struct weftd *d, struct metrics_labels *l, const struct pod *pod,
			   const struct sockaddr_storage *src, const char *principal, int mtls)
{
	const struct reg_workload *dw = d->reg ? regcache_workload(d->reg, pod->uid) : NULL;
	const struct reg_workload *sw = NULL;

	if (d->reg && src && src->ss_family != AF_UNSPEC)
		sw = regcache_workload_by_ip(d->reg, (const struct sockaddr *)src);
	metrics_labels_init(l, 1, mtls);
	metrics_labels_source(l, d, sw, principal);
	metrics_labels_destination(l, d, dw, pod->ident ? ident_id(pod->ident) : NULL);
	if (!dw) {
		l->v[ML_DST_WORKLOAD] = pod->name;
		l->v[ML_DST_NAMESPACE] = pod->ns;
	}
}

/* A CONNECT or plaintext connection refused before it was relayed. */
static void inbound_refused_metric(struct weftd *d, const struct pod *pod,
				   const struct sockaddr_storage *src, const char *principal,
				   int mtls, const char *flag)
{
	struct metrics_labels l;
	struct metrics_conn mc = { 0 };

	inbound_labels(d, &l, pod, src, principal, mtls);
	metrics_conn_end(d->metrics, &mc, &l, flag, 0, 0);
}


/* --- HBONE streams --------------------------------------------------------- */

static void hconn_kick(struct h2tun *t)
{
	struct hconn *hc = h2tun_udata(t);

	h2conn_kick(&hc->h2c);
}

static void hs_on_connected(struct relay *r, int side)
{
	struct hstream *hs = relay_udata(r);

	(void)side;
	if (hs->stream_gone || !hs->hc->h2 || h2conn_closing(&hs->hc->h2c)) {
		relay_reset(r, "client went away while connecting");
		return;
	}
	h2tun_respond(hs->hc->h2, hs->id, 200);
	hs->attached = 1;
	relay_attach_stream(r, hs->hc->h2, hs->id, hconn_kick);
	hconn_kick(hs->hc->h2);
}

static void hs_on_connect_failed(struct relay *r, int side, int err, const char *why)
{
	struct hstream *hs = relay_udata(r);

	(void)side;
	(void)err;
	hs->flag = "CONNECT";
	hs->hc->in->d->stats.failed++;
	log_warn("%s %s -> %s from %s: %s connect failed: %s; answering 503",
		 hs->pod ? "inbound" : "gateway", hs->src, hs->authority, hs->hc->peer_id,
		 hs->pod ? "app" : "node", why ? why : "?");
	if (!hs->stream_gone && hs->hc->h2) {
		h2tun_respond(hs->hc->h2, hs->id, 503);
		h2tun_stream_set_udata(hs->hc->h2, hs->id, NULL);
		hs->stream_gone = 1;
		hconn_kick(hs->hc->h2);
	}
}

static void hs_on_done(struct relay *r, const struct relay_stats *st)
{
	struct hstream *hs = relay_udata(r);
	struct weftd *d = hs->hc->in->d;

	authz_forget(&hs->az);
	live_del(&hs->lc);
	metrics_conn_end(d->metrics, &hs->mc, NULL, hs->flag, st->b_to_a, st->a_to_b);
	access_log(d, &(struct access_entry){
		.direction = hs->pod ? "inbound" : "gateway", .trace = hs->trace, .src = hs->src,
		.dst = hs->authority, .src_id = hs->hc->peer_id,
		.dst_workload = hs->pod ? hs->pod->uid : "",
		.sent = st->b_to_a, .received = st->a_to_b, .ms = st->end_ms - st->start_ms,
		.flag = hs->flag, .error = st->why });
	d->live--;
	if (hs->pod)
		pods_conn_done(hs->pod);
	h2conn_put(&hs->hc->h2c);
	free(hs);
}

static const struct relay_hooks hs_hooks = {
	.on_connected = hs_on_connected,
	.on_connect_failed = hs_on_connect_failed,
	.on_done = hs_on_done,
};

/* Gateway mode: an outer CONNECT from another network becomes a byte
 * path to a node's HBONE port here; the inner TLS passes unread. */
static void gateway_on_connect(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req)
{
	struct hconn *hc = h2tun_udata(t);
	struct weftd *d = hc->in->d;
	struct sockaddr_storage to;
	socklen_t len;
	struct hstream *hs;
	char why[GATEWAY_WHY_MAX], dst[80];
	int rc, fd;

	d->stats.inbound++;
	rc = gateway_route(&d->gateway, d->reg, req->authority, &to, &len, why, sizeof(why));
	if (rc) {
		d->stats.failed++;
		log_warn("gateway CONNECT from %s (%s) refused [%s]: %s; answering %d", hc->peer,
			 hc->peer_id, rc == -EHOSTUNREACH ? "NO_HEALTHY_UPSTREAM" : "NO_ROUTE", why,
			 rc == -EHOSTUNREACH ? 503 : 400);
		h2tun_respond(t, id, rc == -EHOSTUNREACH ? 503 : 400);
		return;
	}
	if (d->draining || d->live >= d->cfg.max_connections) {
		log_warn("gateway CONNECT %s from %s: %s; answering 503", req->authority,
			 hc->peer_id, d->draining ? "shutting down" : "max_connections reached");
		h2tun_respond(t, id, 503);
		return;
	}
	hs = calloc(1, sizeof(*hs));
	fd = hs ? socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
	if (fd < 0) {
		free(hs);
		h2tun_respond(t, id, 503);
		return;
	}
	hs->hc = hc;
	hs->id = id;
	trace_from_parent(req->traceparent, hs->trace);
	snprintf(hs->authority, sizeof(hs->authority), "%s", sockaddr_str(&to, dst, sizeof(dst)));
	snprintf(hs->src, sizeof(hs->src), "%s", hc->peer);
	hs->relay = relay_connect(d->loop, fd, (struct sockaddr *)&to, len, &hs_hooks, hs);
	if (!hs->relay) {
		free(hs);
		h2tun_respond(t, id, 503);
		return;
	}
	h2conn_hold(&hc->h2c);
	d->live++;
	d->stats.gateway_streams++;
	hs->lc = (struct live_conn){ .direction = "gateway", .trace = hs->trace, .src = hs->src,
				     .dst = hs->authority, .src_id = hc->peer_id,
				     .dst_workload = "" };
	live_add(&hs->lc, loop_now_ms(d->loop));
	h2tun_stream_set_udata(t, id, hs);
	log_debug("gateway CONNECT %s from %s (%s) -> %s", req->authority, hc->peer, hc->peer_id,
		  hs->authority);
}

/* Istio's form of the inner CONNECT from another network (DESIGN §8.1): a
 * service hostname, when the gateway picked the node. The endpoint is one
 * of that service's on this node, round-robin; the port its target port.
 * 0 with *dst and *sl, or -ENOENT with why. */
static int inbound_service_endpoint(struct weftd *d, const char *authority,
				    struct sockaddr_storage *dst, socklen_t *sl, char *why,
				    size_t len)
{
	static unsigned rr;
	const struct reg_service *s;
	char name[64], ns[64], esc[96];
	unsigned port, target = 0;

	if (gateway_service_authority(authority, name, ns, &port)) {
		snprintf(why, len, "bad authority \"%s\"",
			 log_escape(esc, sizeof(esc), authority, strnlen(authority, 64)));
		return -ENOENT;
	}
	s = regcache_service(d->reg, ns, name);
	for (size_t i = 0; s && i < s->n_ports && !target; i++)
		if (s->ports[i].port == port)
			target = s->ports[i].target_port;
	if (!target) {
		snprintf(why, len, "no service %s/%s with port %u", ns, name, port);
		return -ENOENT;
	}
	for (size_t k = 0; k < s->n_endpoints; k++) {
		const char *uid = s->endpoints[(rr + k) % s->n_endpoints];
		const struct reg_workload *w = regcache_workload(d->reg, uid);

		if (w && w->n_ips && !strcmp(w->node, d->cfg.node_name) &&
		    !sockaddr_from_ip(w->ips[0], (uint16_t)target, dst, sl)) {
			rr += (unsigned)k + 1;
			return 0;
		}
	}
	snprintf(why, len, "service %s/%s has no endpoint on this node", ns, name);
	return -ENOENT;
}

static void hconn_on_connect(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req)
{
	struct hconn *hc = h2tun_udata(t);
	struct weftd *d = hc->in->d;
	struct sockaddr_storage dst;
	struct hstream *hs;
	socklen_t len;
	struct pod *pod;
	struct sockaddr_storage deliver_from;
	char why[BOUNDARY_WHY_MAX];
	int fd;

	if (d->cfg.mode == SETTINGS_MODE_GATEWAY) {
		gateway_on_connect(t, id, req);
		return;
	}
	d->stats.inbound++;
	if ((sockaddr_parse(req->authority, &dst, &len) || !sockaddr_port(&dst)) &&
	    inbound_service_endpoint(d, req->authority, &dst, &len, why, sizeof(why))) {
		log_warn("inbound CONNECT from %s (%s): %s; answering 400", hc->peer,
			 hc->peer_id, why);
		h2tun_respond(t, id, 400);
		return;
	}
	if (boundary_is_self(d, (struct sockaddr *)&dst, why, sizeof(why))) {
		d->stats.failed++;
		log_warn("inbound CONNECT from %s (%s) refused [NO_ROUTE]: %s; answering 400",
			 hc->peer, hc->peer_id, why);
		h2tun_respond(t, id, 400);
		return;
	}
	pod = pods_by_ip(d->pods, (struct sockaddr *)&dst);
	if (!pod) {
		log_warn("inbound CONNECT %s from %s (%s): not a pod enrolled on this node; "
			 "answering 400", req->authority, hc->peer, hc->peer_id);
		h2tun_respond(t, id, 400);
		return;
	}
	if (d->draining || d->live >= d->cfg.max_connections) {
		log_warn("inbound CONNECT %s from %s: %s; answering 503", req->authority,
			 hc->peer_id, d->draining ? "shutting down" : "max_connections reached");
		h2tun_respond(t, id, 503);
		return;
	}
	hs = calloc(1, sizeof(*hs));
	if (!hs) {
		h2tun_respond(t, id, 503);
		return;
	}
	hs->hc = hc;
	hs->id = id;
	trace_from_parent(req->traceparent, hs->trace);
	snprintf(hs->authority, sizeof(hs->authority), "%s", req->authority);
	snprintf(hs->src, sizeof(hs->src), "%s", hc->peer);
	/* The claimed source is believed only when the registry backs it
	 * (§5.1); without a claim the source is unknown to policy. */
	if (boundary_source_claim(d, req->forwarded, hc->peer_id,
				  (struct sockaddr *)&hc->peer_addr, pod->ips, pod->n_ips,
				  &hs->az.src, why, sizeof(why))) {
		d->stats.failed++;
		log_warn("inbound CONNECT %s from %s refused [IDENTITY_ERROR]: %s; answering 401",
			 req->authority, hc->peer, why);
		access_log(d, &(struct access_entry){
			.direction = "inbound", .trace = hs->trace, .src = hs->src,
			.dst = hs->authority, .src_id = hc->peer_id, .dst_workload = pod->uid,
			.flag = "IDENTITY_ERROR", .error = why });
		inbound_refused_metric(d, pod, NULL, hc->peer_id, 1, "IDENTITY_ERROR");
		free(hs);
		h2tun_respond(t, id, 401);
		return;
	}
	if (hs->az.src.ss_family != AF_UNSPEC)
		sockaddr_str(&hs->az.src, hs->src, sizeof(hs->src));
	snprintf(hs->az.dst_uid, sizeof(hs->az.dst_uid), "%s", pod->uid);
	snprintf(hs->az.principal, sizeof(hs->az.principal), "%s", hc->peer_id);
	hs->az.dst_port = sockaddr_port(&dst);
	hs->az.direction = "inbound";
	if (authz_check(d, &hs->az, why, sizeof(why))) {
		log_warn("inbound CONNECT %s from %s (%s) denied [DENY]: %s; answering 401",
			 req->authority, hs->src, hc->peer_id, why);
		access_log(d, &(struct access_entry){
			.direction = "inbound", .trace = hs->trace, .src = hs->src,
			.dst = hs->authority, .src_id = hc->peer_id, .dst_workload = pod->uid,
			.flag = "DENY", .error = why });
		inbound_refused_metric(d, pod, &hs->az.src, hc->peer_id, 1, "DENY");
		free(hs);
		h2tun_respond(t, id, 401);
		return;
	}
	/* From the verified source, else from this node's own address. */
	deliver_from = hs->az.src;
	if (deliver_from.ss_family == AF_UNSPEC)
		deliver_from = d->node_addr;
	fd = pods_deliver_socket(pod, &deliver_from, dst.ss_family);
	if (fd < 0) {
		free(hs);
		h2tun_respond(t, id, 503);
		return;
	}
	hs->relay = relay_connect(d->loop, fd, (struct sockaddr *)&dst, len, &hs_hooks, hs);
	if (!hs->relay) {
		free(hs);
		h2tun_respond(t, id, 503);
		return;
	}
	hs->pod = pod;
	h2conn_hold(&hc->h2c);
	pod->conns++;
	d->live++;
	hs->lc = (struct live_conn){ .direction = "inbound", .trace = hs->trace, .src = hs->src,
				     .dst = hs->authority, .src_id = hc->peer_id,
				     .dst_workload = pod->uid };
	live_add(&hs->lc, loop_now_ms(d->loop));
	{
		struct metrics_labels l;

		inbound_labels(d, &l, pod, &hs->az.src, hc->peer_id, 1);
		metrics_conn_start(d->metrics, &hs->mc, &l);
	}
	authz_track(&hs->az, hs->relay);
	h2tun_stream_set_udata(t, id, hs);
}

static size_t hconn_on_data(struct h2tun *t, int32_t id, const uint8_t *p, size_t n)
{
	struct hstream *hs = h2tun_stream_udata(t, id);

	if (!hs || !hs->attached) {
		/* Data before our 200 is a client error; drop it. */
		h2tun_consume(t, id, n);
		return n;
	}
	return relay_stream_data(hs->relay, p, n);
}

static void hconn_on_eof(struct h2tun *t, int32_t id)
{
	struct hstream *hs = h2tun_stream_udata(t, id);

	if (hs && hs->attached)
		relay_stream_eof(hs->relay);
}

static void hconn_on_stream_writable(struct h2tun *t, int32_t id)
{
	struct hstream *hs = h2tun_stream_udata(t, id);

	if (hs && hs->attached)
		relay_stream_writable(hs->relay);
}

static void hconn_on_stream_close(struct h2tun *t, int32_t id, enum h2tun_end how, uint32_t code)
{
	struct hstream *hs = h2tun_stream_udata(t, id);

	if (!hs)
		return;
	if (hs->attached) {
		relay_stream_closed(hs->relay, how, code);
		return;
	}
	/* Still connecting: the relay learns in on_connected. */
	hs->stream_gone = 1;
	relay_reset(hs->relay, "client reset the stream before delivery");
}

static const struct h2tun_callbacks hconn_h2_cb = {
	.on_connect = hconn_on_connect,
	.on_data = hconn_on_data,
	.on_eof = hconn_on_eof,
	.on_writable = hconn_on_stream_writable,
	.on_close = hconn_on_stream_close,
};

/* --- HBONE connections ------------------------------------------------------ */

/* Connections of the peer identity id that are past their handshake. */
static unsigned inbound_peer_conns(const struct inbound *in, const char *id)
{
	unsigned n = 0;

	for (const struct hconn *x = in->ready; x; x = x->next)
		n += !strcmp(x->peer_id, id);
	return n;
}

/* Who the client is must be a workload: then the HTTP/2 session starts. */
static void hconn_on_ready(struct h2conn *h)
{
	struct hconn *hc = h2conn_udata(h);
	struct tls *tls = conn_tls(h2conn_conn(h));
	struct weftd *d = hc->in->d;
	struct spiffe_id id;
	const char *bad;
	char ns[64], sa[64];

	if (tls_peer_id(tls, hc->peer_id, sizeof(hc->peer_id)) ||
	    spiffe_id_parse(hc->peer_id, strlen(hc->peer_id), &id, &bad) ||
	    spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa))) {
		log_warn("HBONE connection from %s refused [IDENTITY_ERROR]: client identity %s is "
			 "not a workload identity (/ns/<namespace>/sa/<account>)", hc->peer,
			 hc->peer_id[0] ? hc->peer_id : "(none)");
		d->stats.failed++;
		hc->refused = 1;
		h2conn_close(h, -EACCES, "client is not a workload");
		return;
	}
	/* Verified by a context made before the federation changed. */
	if (!certs_td_accepted(d->certs, id.td, strlen(id.td))) {
		log_warn("HBONE connection from %s refused [IDENTITY_ERROR]: trust domain %s of %s "
			 "is no longer accepted (federation changed during the handshake)",
			 hc->peer, id.td, hc->peer_id);
		d->stats.failed++;
		hc->refused = 1;
		h2conn_close(h, -EACCES, "trust domain no longer accepted");
		return;
	}
	snprintf(hc->peer_td, sizeof(hc->peer_td), "%s", id.td);
	if (d->cfg.mode == SETTINGS_MODE_GATEWAY) {
		char why[GATEWAY_WHY_MAX];

		if (gateway_peer_allowed(&d->gateway, id.td, why, sizeof(why))) {
			log_warn("gateway connection from %s refused [IDENTITY_ERROR]: %s: %s",
				 hc->peer, hc->peer_id, why);
			d->stats.failed++;
			hc->refused = 1;
			h2conn_close(h, -EACCES, "trust domain not served by this gateway");
			return;
		}
	}
	if (inbound_peer_conns(hc->in, hc->peer_id) >= d->cfg.max_connections_per_peer) {
		static struct log_rl rl = LOG_RL_INIT;

		log_warn_rl(&rl, "HBONE connection from %s refused [OVERFLOW]: %s already has %u "
			    "connections to this node, the most one peer may hold (each up to %u "
			    "streams and 32 MiB buffered; max_connections_per_peer)", hc->peer,
			    hc->peer_id, d->cfg.max_connections_per_peer, H2TUN_MAX_STREAMS);
		d->stats.failed++;
		hc->refused = 1;
		h2conn_close(h, -EUSERS, "too many connections from this identity");
		return;
	}
	hc->h2 = h2tun_new(H2TUN_SERVER, &hconn_h2_cb, h2conn_send, h2conn_space, h, hc);
	if (!hc->h2) {
		h2conn_close(h, -ENOMEM, "out of memory");
		return;
	}
	h2conn_set_session(h, &h2tun_engine, hc->h2);
	hc->next = hc->in->ready;
	if (hc->next)
		hc->next->prev = hc;
	hc->in->ready = hc;
	log_debug("HBONE connection from %s as %s (%s)", hc->peer, hc->peer_id,
		  tls_cipher_name(tls));
}

static void hconn_on_proto_error(struct h2conn *h, const char *why, const uint8_t *p, size_t n)
{
	struct hconn *hc = h2conn_udata(h);
	char esc[64];

	(void)why;
	log_warn("HBONE connection from %s (%s): HTTP/2 protocol error (\"%s\")", hc->peer,
		 hc->peer_id, log_escape(esc, sizeof(esc), p, n < 16 ? n : 16));
}

/* The session goes right after: its streams end (on_close(TUNNEL) resets
 * their relays, each hstream then drops its reference). */
static void hconn_on_close(struct h2conn *h, int err, const char *why)
{
	struct hconn *hc = h2conn_udata(h);

	if (err && !hc->h2 && !hc->refused)
		log_warn("HBONE connection from %s failed before HTTP/2 [%s]: %s", hc->peer,
			 why && (strstr(why, "SPIFFE") || strstr(why, "trust domain"))
			 ? "IDENTITY_ERROR" : "TLS_FAILURE",
			 why ? why : strerror(-err));
	else if (err && hc->h2)
		log_info("HBONE connection from %s (%s) closed: %s", hc->peer, hc->peer_id,
			 why ? why : strerror(-err));
	if (hc->h2) {
		if (hc->prev)
			hc->prev->next = hc->next;
		else
			hc->in->ready = hc->next;
		if (hc->next)
			hc->next->prev = hc->prev;
	}
	hc->h2 = NULL;
	hc->in->n_conns--;
}

static void hconn_on_release(struct h2conn *h)
{
	free(h2conn_udata(h));
}

static const struct h2conn_hooks hconn_hooks = {
	.on_ready = hconn_on_ready,
	.on_proto_error = hconn_on_proto_error,
	.on_close = hconn_on_close,
	.on_release = hconn_on_release,
};

static void inbound_on_accept(struct listener *ls, int fd)
{
	static struct log_rl rl_refused = LOG_RL_INIT, rl_pending = LOG_RL_INIT;
	struct inbound *in = listener_udata(ls);
	struct weftd *d = in->d;
	struct conn_opts o = {
		.out_cap = 1u << 20,
		.handshake_timeout_ms = d->cfg.connect_timeout_ms,
		.pending = in->pending,
	};
	struct tls_ctx *ctx;
	struct hconn *hc;
	int err;

	ctx = d->node_ident ? ident_server_ctx(d->node_ident) : NULL;
	if (!ctx || d->draining || in->n_conns >= INBOUND_MAX_CONNS) {
		log_warn_rl(&rl_refused, "HBONE connection refused: %s", !ctx ?
			    "this node has no certificate yet" : d->draining ?
			    "shutting down" : "too many HBONE connections");
		close(fd);
		return;
	}
	hc = calloc(1, sizeof(*hc));
	if (!hc) {
		close(fd);
		return;
	}
	hc->in = in;
	h2conn_init(&hc->h2c, d->loop, &hconn_hooks, hc);
	err = h2conn_accept(&hc->h2c, fd, ctx, &o);
	if (err) {
		const char *why = listener_pending_refusal(err);

		if (why)
			log_warn_rl(&rl_pending, "HBONE connection refused: TLS handshakes: %s "
				    "(%u pending)", why, listener_pending_count(in->pending));
		free(hc);
		return;
	}
	snprintf(hc->peer, sizeof(hc->peer), "%s", conn_peer_str(h2conn_conn(&hc->h2c)));
	hc->peer_addr = *conn_peer_addr(h2conn_conn(&hc->h2c));
	in->n_conns++;
}

struct inbound *inbound_new(struct weftd *d, char *err, size_t errlen)
{
	char spec[80], name[sizeof(((struct listener *)0)->name)];
	struct sockaddr_storage ss;
	socklen_t len;
	struct inbound *in;
	int fd;

	snprintf(spec, sizeof(spec), strchr(d->cfg.node_ip, ':') ? "[%s]:%u" : "%s:%u",
		 d->cfg.node_ip, d->cfg.hbone_port);
	if (sockaddr_parse(spec, &ss, &len)) {
		snprintf(err, errlen, "bad HBONE listen address %s", spec);
		return NULL;
	}
	in = calloc(1, sizeof(*in));
	if (!in) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	in->d = d;
	snprintf(in->addr, sizeof(in->addr), "%s", spec);
	in->pending = listener_pending_new(INBOUND_PENDING_MAX, INBOUND_PENDING_PER_ADDR);
	if (!in->pending) {
		fd = -ENOMEM;
		goto fail;
	}
	fd = listener_socket((struct sockaddr *)&ss, len, 4096);
	if (fd < 0)
		goto fail;
	snprintf(name, sizeof(name), "HBONE listener %s", spec);
	listener_start(&in->ls, d->loop, fd, name, inbound_on_accept, NULL, in);
	return in;
fail:
	snprintf(err, errlen, "HBONE listener %s: %s", spec, strerror(-fd));
	listener_pending_free(in->pending);
	free(in);
	return NULL;
}

/* Stop accepting; the connections go on until they finish. */
void inbound_drain(struct inbound *in)
{
	if (in)
		listener_close(&in->ls);
}

void inbound_free(struct inbound *in)
{
	if (!in)
		return;
	listener_deinit(&in->ls);
	listener_pending_free(in->pending);
	free(in);
}

void inbound_trust_changed(struct inbound *in)
{
	struct hconn *hc, *next;

	for (hc = in ? in->ready : NULL; hc; hc = next) {
		next = hc->next;
		if (certs_td_accepted(in->d->certs, hc->peer_td, strlen(hc->peer_td)))
			continue;
		log_warn("HBONE connection from %s (%s) closed [IDENTITY_ERROR]: trust domain %s is "
			 "no longer federated", hc->peer, hc->peer_id, hc->peer_td);
		in->d->stats.failed++;
		h2conn_close(&hc->h2c, -EACCES, "trust domain no longer federated");
	}
}

unsigned inbound_conn_count(const struct inbound *in)
{
	return in->n_conns;
}

/* --- plaintext inbound (15006) ---------------------------------------------- */

struct plain {
	struct weftd *d;
	struct pod *pod;
	char src[64], dst[64];
	const char *flag;
	struct authz_conn az;
	struct metrics_conn mc;		/* counted at the end: no start to wait for */
	char trace[TRACE_ID_LEN + 1];
	struct live_conn lc;
};

static void plain_on_connect_failed(struct relay *r, int side, int err, const char *why)
{
	struct plain *pl = relay_udata(r);

	(void)err;
	(void)why;
	/* Side 0 is the accepted client socket (see ob_on_connect_failed);
	 * a refusal already set its own flag. */
	if (side != 1 || pl->flag)
		return;
	pl->flag = "CONNECT";
}

static void plain_on_done(struct relay *r, const struct relay_stats *st)
{
	struct plain *pl = relay_udata(r);

	authz_forget(&pl->az);
	live_del(&pl->lc);
	{
		struct metrics_labels l;

		inbound_labels(pl->d, &l, pl->pod, NULL, NULL, 0);
		metrics_conn_end(pl->d->metrics, &pl->mc, &l, pl->flag, st->a_to_b, st->b_to_a);
	}
	access_log(pl->d, &(struct access_entry){
		.direction = "inbound-plaintext", .trace = pl->trace, .src = pl->src,
		.dst = pl->dst, .src_id = "", .dst_workload = pl->pod->uid, .sent = st->a_to_b,
		.received = st->b_to_a, .ms = st->end_ms - st->start_ms, .flag = pl->flag,
		.error = st->why });
	pl->d->live--;
	pods_conn_done(pl->pod);
	free(pl);
}

static const struct relay_hooks plain_hooks = {
	.on_connect_failed = plain_on_connect_failed,
	.on_done = plain_on_done,
};

/* 1 (with why) when a connection captured on pod's 15006 must not be
 * delivered: it was not redirected (it was made to weftd's listener itself),
 * it names another of weftd's ports, or it is addressed to someone other
 * than the pod (a packet routed to the pod's interface for another address
 * would make weftd dial out of the pod's namespace on a stranger's behalf). */
static int inbound_plain_refused(const struct weftd *d, const struct pod *pod,
				 const struct sockaddr *orig, char *why, size_t len)
{
	char addr[80];

	if (boundary_is_self(d, orig, why, len))
		return 1;
	if (sockaddr_ip_in(pod->ips, pod->n_ips, orig))
		return 0;
	snprintf(why, len, "%s is not this pod's address",
		 sockaddr_str((const struct sockaddr_storage *)orig, addr, sizeof(addr)));
	return 1;
}

/* Refuse pl before any delivery: flag, one log line, the client reset. */
static void plain_fail(struct plain *pl, struct relay *r, const char *flag, const char *why)
{
	log_warn("inbound plaintext %s -> %s refused [%s]: %s", pl->src, pl->dst, flag, why);
	pl->flag = flag;
	pl->d->stats.failed++;
	relay_reset(r, why);
}

void inbound_plain_accept(struct weftd *d, struct pod *pod, int fd)
{
	struct sockaddr_storage orig, src;
	socklen_t len = sizeof(struct sockaddr_in), slen = sizeof(src);
	struct plain *pl;
	struct relay *r;
	char why[BOUNDARY_WHY_MAX];
	int dfd;

	d->stats.inbound_plain++;
	if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &len) < 0) {
		close(fd);
		return;
	}
	pl = calloc(1, sizeof(*pl));
	if (!pl) {
		close(fd);
		return;
	}
	pl->d = d;
	trace_new(pl->trace);
	pl->pod = pod;
	getpeername(fd, (struct sockaddr *)&src, &slen);
	sockaddr_str(&src, pl->src, sizeof(pl->src));
	sockaddr_str(&orig, pl->dst, sizeof(pl->dst));
	r = relay_accept(d->loop, fd, &plain_hooks, pl);
	if (!r) {
		free(pl);
		return;
	}
	pod->conns++;
	d->live++;
	pl->lc = (struct live_conn){ .direction = "inbound-plaintext", .trace = pl->trace,
				     .src = pl->src, .dst = pl->dst, .src_id = "",
				     .dst_workload = pod->uid };
	live_add(&pl->lc, loop_now_ms(d->loop));
	if (d->draining || d->live > d->cfg.max_connections) {
		plain_fail(pl, r, "OVERFLOW", d->draining ? "weftd is shutting down" :
			   "max_connections reached");
		return;
	}
	if (pods_over_share(pod, why, sizeof(why))) {
		plain_fail(pl, r, "OVERFLOW", why);
		return;
	}
	if (inbound_plain_refused(d, pod, (struct sockaddr *)&orig, why, sizeof(why))) {
		plain_fail(pl, r, "NO_ROUTE", why);
		return;
	}
	/* No identity: only policies without principals/namespaces can allow. */
	pl->az.src = src;
	pl->az.dst_port = sockaddr_port(&orig);
	pl->az.direction = "inbound-plaintext";
	snprintf(pl->az.dst_uid, sizeof(pl->az.dst_uid), "%s", pod->uid);
	if (authz_check(d, &pl->az, why, sizeof(why))) {
		log_warn("inbound plaintext %s -> %s denied [DENY]: %s", pl->src, pl->dst, why);
		pl->flag = "DENY";
		relay_reset(r, why);
		return;
	}
	authz_track(&pl->az, r);
	dfd = pods_deliver_socket(pod, &src, AF_INET);
	if (dfd < 0 || relay_attach_connect(r, dfd, (struct sockaddr *)&orig, len)) {
		pl->flag = "CONNECT";
		relay_reset(r, "cannot connect to the app");
	}
}
