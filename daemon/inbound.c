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
#include <weft/h2tun.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/netns.h>
#include <weft/registry.h>
#include <weft/sockaddr.h>
#include <weft/spiffe.h>
#include <weft/tls.h>

#include "authz.h"
#include "certs.h"
#include "inbound.h"
#include "pods.h"
#include "regcache.h"
#include "relay.h"
#include "weftd.h"

#define INBOUND_MAX_CONNS 4096

struct inbound {
	struct weftd *d;
	int fd;
	struct loop_op accept_op;
	unsigned n_conns;
	unsigned long refused;
	char addr[80];
};

/* One HBONE client connection. */
struct hconn {
	struct inbound *in;
	struct conn *conn;
	struct h2tun *h2;
	struct loop_task flush;
	int closed;
	int refused;			/* refusal already logged with its flag */
	char peer[64];
	char peer_id[SPIFFE_ID_MAX];
};

/* One CONNECT stream, from request to the relay's end. */
struct hstream {
	struct hconn *hc;
	struct relay *relay;
	int32_t id;
	int attached;			/* relay owns the stream */
	int stream_gone;		/* stream closed before the delivery connected */
	struct pod *pod;
	char authority[64];
	char src[96];
	const char *flag;
	struct authz_conn az;
};

/* --- shared helpers ---------------------------------------------------------- */


/*
 * The client address for logs, from the peer's `forwarded: for="ip:port"`.
 * The header is the peer's text: accept only an address that parses, and log
 * our own rendering of it, so a peer cannot put spaces, quotes or made-up
 * key=value fields into the access log. Anything else falls back to the
 * tunnel's TCP peer.
 */
static void inbound_forwarded_src(const char *fwd, const char *peer, char *out, size_t len,
				  struct sockaddr_storage *src)
{
	struct sockaddr_storage ss;
	char tmp[INET6_ADDRSTRLEN + 8];
	socklen_t sl;
	size_t n;

	snprintf(out, len, "%s", peer);
	sockaddr_parse(peer, src, &sl);
	if (!fwd || strncmp(fwd, "for=\"", 5))
		return;
	n = strlen(fwd + 5);
	if (n < 2 || n > sizeof(tmp) || fwd[5 + n - 1] != '"')
		return;
	memcpy(tmp, fwd + 5, n - 1);
	tmp[n - 1] = 0;
	if (sockaddr_parse(tmp, &ss, &sl) || !sockaddr_port(&ss))
		return;
	*src = ss;
	sockaddr_str(&ss, out, len);
}

/* --- HBONE streams --------------------------------------------------------- */

static void hconn_kick(struct h2tun *t)
{
	struct hconn *hc = h2tun_udata(t);

	if (!hc->closed)
		loop_task_queue(hc->in->d->loop, &hc->flush);
}

static void hs_on_connected(struct relay *r, int side)
{
	struct hstream *hs = relay_udata(r);

	(void)side;
	if (hs->stream_gone || hs->hc->closed) {
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
	log_warn("inbound %s -> %s from %s: app connect failed: %s; answering 503", hs->src,
		 hs->authority, hs->hc->peer_id, why ? why : "?");
	if (!hs->stream_gone && !hs->hc->closed) {
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
	weftd_access_log(d, "inbound", hs->src, hs->authority, hs->hc->peer_id,
			 hs->pod ? hs->pod->uid : "", st->b_to_a, st->a_to_b,
			 st->end_ms - st->start_ms, hs->flag, st->why);
	d->live--;
	if (hs->pod)
		pods_conn_done(hs->pod);
	free(hs);
}

static const struct relay_hooks hs_hooks = {
	.on_connected = hs_on_connected,
	.on_connect_failed = hs_on_connect_failed,
	.on_done = hs_on_done,
};

static void hconn_on_connect(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req)
{
	struct hconn *hc = h2tun_udata(t);
	struct weftd *d = hc->in->d;
	struct sockaddr_storage dst;
	struct hstream *hs;
	socklen_t len;
	struct pod *pod;
	char why[300];
	int fd;

	d->stats.inbound++;
	if (sockaddr_parse(req->authority, &dst, &len) || !sockaddr_port(&dst)) {
		log_warn("inbound CONNECT from %s (%s): bad authority; answering 400", hc->peer,
			 hc->peer_id);
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
	snprintf(hs->authority, sizeof(hs->authority), "%s", req->authority);
	inbound_forwarded_src(req->forwarded, hc->peer, hs->src, sizeof(hs->src), &hs->az.src);
	snprintf(hs->az.dst_uid, sizeof(hs->az.dst_uid), "%s", pod->uid);
	snprintf(hs->az.principal, sizeof(hs->az.principal), "%s", hc->peer_id);
	hs->az.dst_port = sockaddr_port(&dst);
	hs->az.direction = "inbound";
	if (authz_check(d, &hs->az, why, sizeof(why))) {
		log_warn("inbound CONNECT %s from %s (%s) denied [DENY]: %s; answering 401",
			 req->authority, hs->src, hc->peer_id, why);
		weftd_access_log(d, "inbound", hs->src, hs->authority, hc->peer_id, pod->uid,
				 0, 0, 0, "DENY", why);
		free(hs);
		h2tun_respond(t, id, 401);
		return;
	}
	fd = pods_deliver_socket(pod, &hs->az.src, dst.ss_family);
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
	pod->conns++;
	d->live++;
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

static int hconn_send(void *io, const uint8_t *p, size_t n)
{
	return conn_write(((struct hconn *)io)->conn, p, n);
}

static size_t hconn_space(void *io)
{
	struct hconn *hc = io;

	return hc->closed ? 0 : conn_out_space(hc->conn);
}

static void hconn_flush(struct hconn *hc)
{
	if (hc->closed || !hc->h2)
		return;
	if (h2tun_flush(hc->h2) < 0) {
		conn_abort(hc->conn, -EPIPE, "HTTP/2 session failed");
		return;
	}
	if (h2tun_done(hc->h2))
		conn_close(hc->conn, 0, "tunnel finished");
}

static void hconn_on_flush_task(struct loop_task *t)
{
	struct hconn *hc = (struct hconn *)((char *)t - offsetof(struct hconn, flush));

	if (hc->closed) {
		free(hc);
		return;
	}
	hconn_flush(hc);
}

static void hconn_on_ready(struct conn *c)
{
	struct hconn *hc = conn_udata(c);
	struct weftd *d = hc->in->d;
	struct spiffe_id id;
	const char *bad;
	char ns[64], sa[64];

	if (tls_peer_id(conn_tls(c), hc->peer_id, sizeof(hc->peer_id)) ||
	    spiffe_id_parse(hc->peer_id, strlen(hc->peer_id), &id, &bad) ||
	    spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa))) {
		log_warn("HBONE connection from %s refused [IDENTITY_ERROR]: client identity %s is "
			 "not a workload identity (/ns/<namespace>/sa/<account>)", hc->peer,
			 hc->peer_id[0] ? hc->peer_id : "(none)");
		d->stats.failed++;
		hc->refused = 1;
		conn_abort(c, -EACCES, "client is not a workload");
		return;
	}
	hc->h2 = h2tun_new(H2TUN_SERVER, &hconn_h2_cb, hconn_send, hconn_space, hc, hc);
	if (!hc->h2) {
		conn_abort(c, -ENOMEM, "out of memory");
		return;
	}
	log_debug("HBONE connection from %s as %s (%s)", hc->peer, hc->peer_id,
		  tls_cipher_name(conn_tls(c)));
	hconn_flush(hc);
}

static size_t hconn_on_conn_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct hconn *hc = conn_udata(c);

	if (!hc->h2)
		return n;
	if (h2tun_feed(hc->h2, p, n) < 0) {
		char esc[64];
		log_warn("HBONE connection from %s (%s): HTTP/2 protocol error (\"%s\")", hc->peer,
			 hc->peer_id, log_escape(esc, sizeof(esc), p, n < 16 ? n : 16));
		hconn_flush(hc);
		if (!hc->closed)
			conn_close(c, -EPROTO, "HTTP/2 protocol error");
		return n;
	}
	hconn_flush(hc);
	return n;
}

static void hconn_on_conn_writable(struct conn *c)
{
	hconn_flush(conn_udata(c));
}

static void hconn_on_close(struct conn *c, int err, const char *why)
{
	struct hconn *hc = conn_udata(c);

	if (err && !hc->h2 && !hc->refused)
		log_warn("HBONE connection from %s failed before HTTP/2 [%s]: %s", hc->peer,
			 why && strstr(why, "SPIFFE") ? "IDENTITY_ERROR" : "TLS_FAILURE",
			 why ? why : strerror(-err));
	else if (err && hc->h2)
		log_info("HBONE connection from %s (%s) closed: %s", hc->peer, hc->peer_id,
			 why ? why : strerror(-err));
	hc->closed = 1;
	h2tun_free(hc->h2);	/* streams: on_close(TUNNEL) -> relays reset */
	hc->h2 = NULL;
	hc->in->n_conns--;
	loop_task_queue(hc->in->d->loop, &hc->flush);	/* frees hc */
}

static const struct conn_handler hconn_handler = {
	.on_ready = hconn_on_ready,
	.on_data = hconn_on_conn_data,
	.on_writable = hconn_on_conn_writable,
	.on_close = hconn_on_close,
};

static void inbound_on_accept(struct loop_op *op, int res, unsigned flags)
{
	struct inbound *in = (struct inbound *)((char *)op - offsetof(struct inbound, accept_op));
	struct weftd *d = in->d;
	struct conn_opts o = {
		.out_cap = 1u << 20,
		.handshake_timeout_ms = d->cfg.connect_timeout_ms,
	};
	struct tls_ctx *ctx;
	struct hconn *hc;

	if (!(flags & IORING_CQE_F_MORE) && in->fd >= 0 &&
	    loop_accept(d->loop, &in->accept_op, in->fd))
		log_error("HBONE listener %s: cannot re-arm accept", in->addr);
	if (res < 0) {
		if (res != -ECANCELED)
			log_warn("HBONE accept failed: %s", strerror(-res));
		return;
	}
	ctx = d->node_ident ? ident_server_ctx(d->node_ident) : NULL;
	if (!ctx || d->draining || in->n_conns >= INBOUND_MAX_CONNS) {
		if (!(in->refused++ % 100))
			log_warn("HBONE connection refused: %s", !ctx ?
				 "this node has no certificate yet" : d->draining ?
				 "shutting down" : "too many HBONE connections");
		close(res);
		return;
	}
	hc = calloc(1, sizeof(*hc));
	if (!hc) {
		close(res);
		return;
	}
	hc->in = in;
	hc->flush.cb = hconn_on_flush_task;
	hc->conn = conn_accept(d->loop, res, ctx, &hconn_handler, &o, hc);
	if (!hc->conn) {
		free(hc);
		return;
	}
	snprintf(hc->peer, sizeof(hc->peer), "%s", conn_peer_str(hc->conn));
	in->n_conns++;
}

struct inbound *inbound_new(struct weftd *d, char *err, size_t errlen)
{
	char spec[80];
	struct sockaddr_storage ss;
	socklen_t len;
	struct inbound *in;
	int one = 1;

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
	in->accept_op.cb = inbound_on_accept;
	snprintf(in->addr, sizeof(in->addr), "%s", spec);
	in->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (in->fd < 0)
		goto fail;
	setsockopt(in->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(in->fd, (struct sockaddr *)&ss, len) || listen(in->fd, 4096))
		goto fail;
	if (loop_accept(d->loop, &in->accept_op, in->fd)) {
		errno = ENOMEM;
		goto fail;
	}
	return in;
fail:
	snprintf(err, errlen, "HBONE listener %s: %s", spec, strerror(errno));
	if (in->fd >= 0)
		close(in->fd);
	free(in);
	return NULL;
}

void inbound_drain(struct inbound *in)
{
	if (!in || in->fd < 0)
		return;
	loop_cancel_fd(in->d->loop, NULL, in->fd);
	close(in->fd);
	in->fd = -1;
}

void inbound_free(struct inbound *in)
{
	if (!in)
		return;
	if (in->fd >= 0)
		close(in->fd);
	free(in);
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
	weftd_access_log(pl->d, "inbound-plaintext", pl->src, pl->dst, "", pl->pod->uid,
			 st->a_to_b, st->b_to_a, st->end_ms - st->start_ms, pl->flag, st->why);
	pl->d->live--;
	pods_conn_done(pl->pod);
	free(pl);
}

static const struct relay_hooks plain_hooks = {
	.on_connect_failed = plain_on_connect_failed,
	.on_done = plain_on_done,
};

void inbound_plain_accept(struct weftd *d, struct pod *pod, int fd)
{
	struct sockaddr_storage orig, src;
	socklen_t len = sizeof(struct sockaddr_in), slen = sizeof(src);
	struct plain *pl;
	struct relay *r;
	char why[300];
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
	if (d->draining || d->live > d->cfg.max_connections) {
		const char *why_full = d->draining ? "weftd is shutting down" :
				       "max_connections reached";

		log_warn("inbound plaintext %s -> %s refused [OVERFLOW]: %s", pl->src, pl->dst,
			 why_full);
		pl->flag = "OVERFLOW";
		d->stats.failed++;
		relay_reset(r, why_full);
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
