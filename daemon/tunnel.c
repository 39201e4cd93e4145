/* SPDX-License-Identifier: Apache-2.0 */
/* Outbound HBONE tunnels. A key is (source identity, destination node);
 * each key has a list of tunnels (TLS conn + h2tun client session) and a
 * queue of stream requests waiting for one. Only one tunnel per key is
 * opened at a time, so a burst of new connections shares the handshake.
 *
 * Stream udata is the tunnel_req while the CONNECT is pending and the
 * relay once it is open (relay_attach_stream sets it). */
#include <errno.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/conn.h>
#include <weft/h2conn.h>
#include <weft/log.h>
#include <weft/promtext.h>
#include <weft/loop.h>
#include <weft/tls.h>

#include "certs.h"
#include "jsonw.h"
#include "relay.h"
#include "tunnel.h"
#include "weftd.h"

enum tunnel_state {
	TUNNEL_CONNECTING = 1,	/* TCP + TLS handshake */
	TUNNEL_READY,		/* streams may be opened */
	TUNNEL_DRAINING,	/* GOAWAY either way: no new streams */
	TUNNEL_CLOSED,		/* conn gone; freed once its task runs */
};

struct tunnel_key;

struct tunnel {
	struct tunnel *next;
	struct tunnel_key *key;
	struct tunnels *pool;
	enum tunnel_state state;
	struct h2conn h2c;		/* the conn, its session h2; frees us */
	struct h2tun *h2;		/* gone once state is TUNNEL_CLOSED */
	char peer[160];		/* "ip:port" of the node, or a service via a gateway */
	const char *cipher;		/* "" until ready (a static name) */
	struct loop_timer ping;
	struct tunnel_req *inflight;	/* CONNECTs sent, not yet answered */
	uint64_t opened_ms, idle_since_ms, ping_sent_ms;
	uint64_t opened_us;		/* for the set-up time in the log */
	uint64_t streams_total, bytes_out, bytes_in;
	int answered;			/* a CONNECT on it got an answer */
};

struct tunnel_req {
	struct tunnel_req *next;
	struct tunnel_key *key;
	struct tunnel *tun;		/* set once its CONNECT is sent */
	int32_t id;
	tunnel_open_fn cb;
	void *arg;
	char authority[160];
	char forwarded[96];
	char traceparent[64];
	char network[H2TUN_NETWORK_MAX];	/* x-forwarded-network, or "" */
};

/* A key lives while it has a tunnel or a waiting request; it holds its
 * source identity (ident_hold) without keeping it renewing. When no pod
 * uses that identity any more its idle tunnels are closed at once rather
 * than after idle_ms, and the key and its hold go with the last one. */
struct tunnel_key {
	struct tunnel_key *next;
	struct tunnels *pool;
	struct ident *src;		/* hold.id */
	struct ident_hold hold;
	char node[128];
	char expect_id[256];
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct tunnel *tunnels;
	struct tunnel_req *pending;	/* FIFO of requests without a stream */
	unsigned n_pending;
	int opening;			/* a tunnel of this key is CONNECTING */
	struct loop_task dispatch;
	/* A node of another network (tunnel_via): its tunnels run inside
	 * CONNECT streams on the outer tunnel for (src, via_gw). */
	int has_via;
	int unpooled;			/* one stream, then the tunnel closes */
	char via_gw[64];
	char via_expect[256];
	char via_authority[160];
	struct sockaddr_storage via_addr;
	socklen_t via_addrlen;
	struct tunnel_req *dial;	/* the outer CONNECT for the tunnel being opened */
	struct loop_timer dial_timer;	/* its answer is due within connect_timeout */
};

/* Handshake (TCP + TLS) times: upper bounds in ms, and the last bucket is
 * +Inf. */
static const double tunnel_hs_buckets[] = { 1, 2.5, 5, 10, 25, 50, 100, 250, 1000, 5000 };
#define TUNNEL_HS_BUCKETS (sizeof(tunnel_hs_buckets) / sizeof(tunnel_hs_buckets[0]))

struct tunnels {
	struct loop *loop;
	uint64_t opened_ok, opened_failed;	/* weft_tunnels_opened_total */
	uint64_t hs_count[TUNNEL_HS_BUCKETS + 1];
	double hs_sum_s;
	struct tunnel_limits lim;
	struct tunnel_key *keys;
	unsigned n_tunnels;
	int draining;
	int freeing;			/* tunnels_free: no tasks, no callbacks into keys */
};

static const struct h2tun_callbacks tunnel_h2_cb;
static const struct h2conn_hooks tunnel_hooks;
static void tunnel_on_dialed(void *arg, struct h2tun *outer, int32_t id, int status,
			     const char *why, const char *flag);
static void tunnel_dispatch(struct tunnel_key *k);
static void key_check(struct tunnel_key *k);

/* --- requests --------------------------------------------------------------- */

static void req_fail(struct tunnel_req *r, const char *why, const char *flag)
{
	tunnel_open_fn cb = r->cb;
	void *arg = r->arg;

	free(r);
	cb(arg, NULL, 0, 0, why, flag);
}

static void key_fail_pending(struct tunnel_key *k, const char *why, const char *flag)
{
	while (k->pending) {
		struct tunnel_req *r = k->pending;
		k->pending = r->next;
		k->n_pending--;
		req_fail(r, why, flag);
	}
}

static void req_unlink_inflight(struct tunnel_req *r)
{
	for (struct tunnel_req **pp = &r->tun->inflight; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			return;
		}
	}
}

static struct tunnel_req *req_find_inflight(struct tunnel *t, int32_t id)
{
	for (struct tunnel_req *r = t->inflight; r; r = r->next)
		if (r->id == id)
			return r;
	return NULL;
}

void tunnels_cancel(struct tunnel_req *r)
{
	struct tunnel_key *k = r->key;

	if (r->tun) {
		/* CONNECT already sent: reset it; on_close finds no request. */
		req_unlink_inflight(r);
		h2tun_stream_set_udata(r->tun->h2, r->id, NULL);
		h2tun_reset(r->tun->h2, r->id, 0x8 /* CANCEL */);
		tunnels_kick(r->tun->h2);
		free(r);
		return;
	}
	for (struct tunnel_req **pp = &k->pending; *pp; pp = &(*pp)->next) {
		if (*pp == r) {
			*pp = r->next;
			k->n_pending--;
			break;
		}
	}
	free(r);
	key_check(k);
}

/* --- tunnel I/O ------------------------------------------------------------- */

static int tunnel_send(void *io, const uint8_t *p, size_t n)
{
	struct tunnel *t = io;

	t->bytes_out += n;
	return h2conn_send(&t->h2c, p, n);
}

static size_t tunnel_space(void *io)
{
	struct tunnel *t = io;

	return h2conn_space(&t->h2c);
}

/* Nothing before the TLS handshake is done (h2conn waits for on_ready). */
static void tunnel_flush(struct tunnel *t)
{
	h2conn_flush(&t->h2c);
}

void tunnels_kick(struct h2tun *h2)
{
	struct tunnel *t = h2tun_udata(h2);

	h2conn_kick(&t->h2c);
}

static void tunnel_unlink(struct tunnel *t)
{
	struct tunnel_key *k = t->key;

	for (struct tunnel **pp = &k->tunnels; *pp; pp = &(*pp)->next) {
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	}
	t->pool->n_tunnels--;
}

/* --- h2 callbacks ------------------------------------------------------------ */

static void tunnel_on_response(struct h2tun *h2, int32_t id, int status)
{
	struct tunnel_req *r = req_find_inflight(h2tun_udata(h2), id);
	char why[320];

	((struct tunnel *)h2tun_udata(h2))->answered = 1;

	if (!r)
		return;
	req_unlink_inflight(r);
	h2tun_stream_set_udata(h2, id, NULL);
	if (status == 200) {
		tunnel_open_fn cb = r->cb;
		void *arg = r->arg;
		free(r);
		cb(arg, h2, id, 200, NULL, NULL);	/* attaches the relay */
		return;
	}
	snprintf(why, sizeof(why), "destination node answered %d to CONNECT %s%s", status,
		 r->authority, status == 401 ? " (denied by policy)" :
		 status == 400 ? " (not a workload on that node)" :
		 status == 503 ? " (destination refused or unknown)" : "");
	req_fail(r, why, status == 401 ? "DENY" : status == 503 ? "CONNECT" : "NO_ROUTE");
}

static size_t tunnel_on_data(struct h2tun *h2, int32_t id, const uint8_t *p, size_t n)
{
	struct relay *rl = h2tun_stream_udata(h2, id);
	struct tunnel *t = h2tun_udata(h2);

	if (!rl) {
		h2tun_consume(h2, id, n);	/* a cancelled stream's stragglers */
		return n;
	}
	n = relay_stream_data(rl, p, n);
	t->bytes_in += n;
	return n;
}

static void tunnel_on_eof(struct h2tun *h2, int32_t id)
{
	struct relay *rl = h2tun_stream_udata(h2, id);

	if (rl)
		relay_stream_eof(rl);
}

static void tunnel_on_writable(struct h2tun *h2, int32_t id)
{
	struct relay *rl = h2tun_stream_udata(h2, id);

	if (rl)
		relay_stream_writable(rl);
}

static void tunnel_on_close(struct h2tun *h2, int32_t id, enum h2tun_end how, uint32_t code)
{
	struct tunnel *t = h2tun_udata(h2);
	struct tunnel_req *r = req_find_inflight(t, id);
	void *u = h2tun_stream_udata(h2, id);

	if (h2tun_stream_count(h2) <= 1) {
		t->idle_since_ms = loop_now_ms(t->pool->loop);
		if (!ident_in_use(t->key->src) || t->key->unpooled)
			key_check(t->key);
	}
	if (r) {
		/* No answer to the CONNECT before the stream ended. */
		req_unlink_inflight(r);
		req_fail(r, how != H2TUN_END_TUNNEL ? "CONNECT refused by the destination node" :
			 t->answered ? "tunnel failed before the CONNECT was answered" :
			 /* TLS 1.3: the server judges our certificate after our
			  * side of the handshake is done, so a refusal of this
			  * identity shows as a tunnel that closes unanswered. */
			 "the destination node closed the new tunnel without answering: it did not "
			 "accept this source identity (trust domain or certificate) or is going "
			 "down; its log says which",
			 how != H2TUN_END_TUNNEL ? "NO_ROUTE" :
			 /* A gateway doing so refused us (tunnel_on_dialed). */
			 !t->answered && r->cb == tunnel_on_dialed ? "TLS_FAILURE" : "CONNECT");
	} else if (u) {
		relay_stream_closed(u, how, code);
	}
	/* A stream slot freed up: waiting requests may use it. */
	if (t->state == TUNNEL_READY && t->key->pending)
		tunnel_dispatch(t->key);
}

static void tunnel_on_goaway(struct h2tun *h2)
{
	struct tunnel *t = h2tun_udata(h2);

	if (t->state == TUNNEL_READY)
		t->state = TUNNEL_DRAINING;
	if (t->key->pending)
		tunnel_dispatch(t->key);
}

static const struct h2tun_callbacks tunnel_h2_cb = {
	.on_response = tunnel_on_response,
	.on_data = tunnel_on_data,
	.on_eof = tunnel_on_eof,
	.on_writable = tunnel_on_writable,
	.on_close = tunnel_on_close,
	.on_goaway = tunnel_on_goaway,
};

/* --- conn callbacks ----------------------------------------------------------- */

/* The loop's clock ticks in ms; a tunnel comes up in well under one. */
static uint64_t tunnel_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void tunnel_on_ready(struct h2conn *h)
{
	struct tunnel *t = h2conn_udata(h);
	struct conn *c = h2conn_conn(h);
	struct tls *tls = conn_tls(c);

	t->state = TUNNEL_READY;
	t->cipher = tls ? tls_cipher_name(tls) : "";
	t->key->opening = 0;
	t->idle_since_ms = loop_now_ms(t->pool->loop);
	log_info("tunnel %s -> node %s (%s) up: %s, %llu us", ident_id(t->key->src),
		 t->key->node, conn_peer_str(c), tls ? tls_cipher_name(tls) : "?",
		 (unsigned long long)(tunnel_clock_us() - t->opened_us));
	loop_timer_arm(t->pool->loop, &t->ping, t->pool->lim.ping_ms);
	{
		double ms = (double)(tunnel_clock_us() - t->opened_us) / 1000.0;
		size_t b = 0;

		while (b < TUNNEL_HS_BUCKETS && ms > tunnel_hs_buckets[b])
			b++;
		t->pool->hs_count[b]++;
		t->pool->hs_sum_s += ms / 1000.0;
		t->pool->opened_ok++;
	}
	tunnel_dispatch(t->key);	/* h2conn flushes our SETTINGS and these */
	if (t->key->unpooled && !t->key->pending)
		key_check(t->key);	/* its one connection went meanwhile */
}

static void tunnel_on_proto_error(struct h2conn *h, const char *why, const uint8_t *p, size_t n)
{
	struct tunnel *t = h2conn_udata(h);

	(void)why;
	(void)p;
	(void)n;
	log_warn("tunnel %s -> node %s: HTTP/2 protocol error from peer", ident_id(t->key->src),
		 t->key->node);
}

/* The response_flags word for a tunnel that failed to open. */
static const char *tunnel_flag(const char *why)
{
	if (why && (strstr(why, "SPIFFE") || strstr(why, "expected") || strstr(why, "identity")))
		return "IDENTITY_ERROR";
	if (why && (strstr(why, "TLS") || strstr(why, "certificate") || strstr(why, "alert") ||
		    strstr(why, "handshake")))
		return "TLS_FAILURE";
	return "CONNECT";
}

/* The conn ended; h2conn frees the session right after (live streams:
 * on_close(TUNNEL) -> their relays reset), then releases us. */
static void tunnel_on_conn_closed(struct h2conn *h, int err, const char *why)
{
	struct tunnel *t = h2conn_udata(h);
	struct conn *c = h2conn_conn(h);
	struct tunnel_key *k = t->key;
	int was_connecting;
	char msg[256];

	was_connecting = t->state == TUNNEL_CONNECTING;

	loop_timer_disarm(t->pool->loop, &t->ping);
	t->state = TUNNEL_CLOSED;
	tunnel_unlink(t);
	if (was_connecting) {
		k->opening = 0;
		snprintf(msg, sizeof(msg), "tunnel to node %s (%s) as %s failed: %s", k->node,
			 conn_peer_str(c), ident_id(k->src), why ? why : strerror(-err));
		log_warn("%s", msg);
		/* Through a gateway the hop that failed is the inner mTLS with
		 * the remote node: its words tell it apart from the outer. */
		key_fail_pending(k, msg, k->has_via ? (strcmp(tunnel_flag(why), "CONNECT") ?
						       "INNER_TLS_FAILURE" : "INNER_CONNECT")
						    : tunnel_flag(why));
		t->pool->opened_failed++;
	} else {
		log_info("tunnel %s -> node %s closed after %llu streams: %s", ident_id(k->src),
			 k->node, (unsigned long long)t->streams_total, why ? why : "done");
	}
	if (k->pending)
		tunnel_dispatch(k);
	key_check(k);
}

static void tunnel_on_release(struct h2conn *h)
{
	free(h2conn_udata(h));
}

static const struct h2conn_hooks tunnel_hooks = {
	.on_ready = tunnel_on_ready,
	.on_proto_error = tunnel_on_proto_error,
	.on_close = tunnel_on_conn_closed,
	.on_release = tunnel_on_release,
};

static void tunnel_on_ping(struct loop_timer *tm)
{
	struct tunnel *t = (struct tunnel *)((char *)tm - offsetof(struct tunnel, ping));
	const struct tunnel_limits *lim = &t->pool->lim;
	uint64_t now = loop_now_ms(t->pool->loop);

	if (t->state == TUNNEL_CLOSED)
		return;
	if (h2tun_ping_outstanding(t->h2) && now - t->ping_sent_ms >= lim->ping_timeout_ms) {
		h2conn_close(&t->h2c, -ETIMEDOUT, "PING not answered: peer gone");
		return;
	}
	if (h2tun_stream_count(t->h2) == 0 && now - t->idle_since_ms >= lim->idle_ms) {
		h2tun_goaway(t->h2);
		t->state = TUNNEL_DRAINING;
		tunnel_flush(t);
		h2conn_close(&t->h2c, 0, "idle");
		return;
	}
	if (!h2tun_ping_outstanding(t->h2)) {
		h2tun_ping(t->h2);
		t->ping_sent_ms = now;
		tunnel_flush(t);
	}
	loop_timer_arm(t->pool->loop, &t->ping, lim->ping_ms < lim->ping_timeout_ms ?
		       lim->ping_ms : lim->ping_timeout_ms);
}

/* A tunnel of k with its session, not started yet; NULL when out of memory
 * or the source identity has no certificate. */
static struct tunnel *tunnel_new(struct tunnel_key *k, struct tls_ctx **ctx)
{
	struct tunnels *p = k->pool;
	struct tunnel *t;

	*ctx = ident_client_ctx(k->src);
	if (!*ctx)
		return NULL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->key = k;
	t->pool = p;
	t->state = TUNNEL_CONNECTING;
	h2conn_init(&t->h2c, p->loop, &tunnel_hooks, t);
	t->cipher = "";
	t->ping.cb = tunnel_on_ping;
	t->opened_ms = loop_now_ms(p->loop);
	t->opened_us = tunnel_clock_us();
	t->h2 = h2tun_new(H2TUN_CLIENT, &tunnel_h2_cb, tunnel_send, tunnel_space, t, t);
	if (!t->h2) {
		free(t);
		return NULL;
	}
	h2conn_set_session(&t->h2c, &h2tun_engine, t->h2);
	return t;
}

static void tunnel_link(struct tunnel_key *k, struct tunnel *t)
{
	t->next = k->tunnels;
	k->tunnels = t;
	k->opening = 1;
	k->pool->n_tunnels++;
}

static struct tunnel *tunnel_open(struct tunnel_key *k)
{
	struct conn_opts o = {
		.out_cap = 1u << 20,
		.handshake_timeout_ms = k->pool->lim.connect_timeout_ms,
	};
	struct tls_ctx *ctx;
	struct tunnel *t = tunnel_new(k, &ctx);

	if (!t)
		return NULL;
	if (h2conn_connect(&t->h2c, (struct sockaddr *)&k->addr, k->addrlen, WEFTD_MARK, ctx,
			   NULL, k->expect_id, &o)) {
		h2tun_free(t->h2);
		free(t);
		return NULL;
	}
	snprintf(t->peer, sizeof(t->peer), "%s", conn_peer_str(h2conn_conn(&t->h2c)));
	tunnel_link(k, t);
	return t;
}

/* --- through a gateway (DESIGN §8.1) ------------------------------------------ */

/* The byte path to a remote node: one end of a socket pair is the inner
 * tunnel's conn (TLS with the remote node, end to end), the other a relay
 * into the outer tunnel's CONNECT stream. Either side ending ends the
 * other: the outer stream reset (the gateway gone) resets the inner
 * tunnel and so every stream on it. */
static const struct relay_hooks tunnel_via_hooks = { 0 };

static void tunnel_dial_fail(struct tunnel_key *k, const char *why, const char *flag)
{
	k->opening = 0;
	k->pool->opened_failed++;
	log_warn("tunnel %s -> node %s via gateway %s failed: %s", ident_id(k->src), k->node,
		 k->via_gw, why);
	key_fail_pending(k, why, flag);
	key_check(k);
}

/* The outer CONNECT's answer: on 200 the inner tunnel starts on it. */
static void tunnel_on_dialed(void *arg, struct h2tun *outer, int32_t id, int status,
			     const char *why, const char *flag)
{
	struct tunnel_key *k = arg;
	struct conn_opts o = {
		.out_cap = 1u << 20,
		.handshake_timeout_ms = k->pool->lim.connect_timeout_ms,
	};
	struct tls_ctx *ctx;
	struct tunnel *t;
	struct relay *rl;
	char msg[400];
	int sv[2];

	k->dial = NULL;
	loop_timer_disarm(k->pool->loop, &k->dial_timer);
	if (status != 200) {
		/* The outer hop: the gateway unreachable or refusing us (its
		 * TLS), or refusing the path (its answer). */
		snprintf(msg, sizeof(msg), "gateway %s: %s", k->via_gw, why ? why : "refused");
		tunnel_dial_fail(k, msg, !flag || !strcmp(flag, "CONNECT") ? "GATEWAY_CONNECT" :
				 !strcmp(flag, "TLS_FAILURE") || !strcmp(flag, "IDENTITY_ERROR") ?
				 "GATEWAY_REFUSED" : "GATEWAY_NO_ROUTE");
		return;
	}
	if (!k->pending) {
		/* Its connections went while the gateway answered: no tunnel
		 * nobody waits for (the key goes from its task). */
		h2tun_reset(outer, id, 0x8 /* CANCEL */);
		tunnels_kick(outer);
		k->opening = 0;
		key_check(k);
		return;
	}
	t = tunnel_new(k, &ctx);
	if (!t || socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		goto fail_stream;
	rl = relay_accept(k->pool->loop, sv[1], &tunnel_via_hooks, NULL);
	if (!rl) {
		close(sv[0]);
		goto fail_stream;
	}
	h2tun_stream_set_udata(outer, id, rl);	/* the outer tunnel routes to it */
	relay_attach_stream(rl, outer, id, tunnels_kick);
	relay_end_on_eof(rl);
	snprintf(msg, sizeof(msg), "%s via %s", k->via_authority, k->via_gw);
	if (h2conn_start_fd(&t->h2c, sv[0], msg, ctx, NULL, k->expect_id, &o)) {
		relay_reset(rl, "the inner tunnel could not start");
		h2tun_free(t->h2);
		free(t);
		tunnel_dial_fail(k, "cannot start the inner tunnel (out of memory)", "CONNECT");
		return;
	}
	snprintf(t->peer, sizeof(t->peer), "%s", k->via_authority);
	tunnel_link(k, t);
	return;
fail_stream:
	if (t) {
		h2tun_free(t->h2);
		free(t);
	}
	h2tun_reset(outer, id, 0x8 /* CANCEL */);
	tunnels_kick(outer);
	tunnel_dial_fail(k, t ? "cannot make the inner tunnel's socket pair" :
			 "source identity has no certificate", t ? "CONNECT" : "IDENTITY_ERROR");
}

static void tunnel_on_dial_forgotten(void *arg, struct h2tun *outer, int32_t id, int status,
				     const char *why, const char *flag)
{
	(void)arg; (void)outer; (void)id; (void)status; (void)why; (void)flag;
}

/* Ask the outer tunnel for a byte path to k's node. 0, or -errno. */
static int tunnel_dial(struct tunnel_key *k)
{
	struct h2tun_connect_req cr = { .authority = k->via_authority };

	if (!ident_client_ctx(k->src))
		return -ENOKEY;
	k->dial = tunnels_open_stream(k->pool, k->src, k->via_gw, (struct sockaddr *)&k->via_addr,
				      k->via_addrlen, k->via_expect, NULL, &cr, tunnel_on_dialed, k);
	if (!k->dial)
		return -ENOMEM;
	k->opening = 1;
	loop_timer_arm(k->pool->loop, &k->dial_timer, k->pool->lim.connect_timeout_ms);
	return 0;
}

/* The gateway took the outer tunnel but does not answer the CONNECT: the
 * connections waiting for this node fail, the next one dials again. */
static void tunnel_on_dial_timeout(struct loop_timer *tm)
{
	struct tunnel_key *k = (struct tunnel_key *)((char *)tm -
						     offsetof(struct tunnel_key, dial_timer));
	char msg[320];

	if (!k->dial)
		return;
	tunnels_cancel(k->dial);
	k->dial = NULL;
	snprintf(msg, sizeof(msg), "gateway %s did not answer the CONNECT to %s within %u ms",
		 k->via_gw, k->via_authority, k->pool->lim.connect_timeout_ms);
	tunnel_dial_fail(k, msg, "GATEWAY_CONNECT");
}

/* Give waiting requests streams on ready tunnels; open a tunnel when none
 * has room and none is being opened. */
static void tunnel_dispatch(struct tunnel_key *k)
{
	struct tunnels *p = k->pool;

	while (k->pending) {
		struct tunnel *use = NULL;

		for (struct tunnel *t = k->tunnels; t; t = t->next) {
			if (t->state == TUNNEL_READY && h2tun_streams_available(t->h2) > 0 &&
			    h2tun_stream_count(t->h2) < p->lim.max_streams) {
				use = t;
				break;
			}
		}
		if (!use) {
			if (k->opening || p->draining)
				return;
			if (p->n_tunnels >= p->lim.max_tunnels) {
				key_fail_pending(k, "tunnel limit reached (max_tunnels)",
						 "UPSTREAM_OVERFLOW");
				return;
			}
			if (k->has_via ? tunnel_dial(k) != 0 : !tunnel_open(k)) {
				key_fail_pending(k, ident_client_ctx(k->src) ?
						 "cannot open a tunnel (out of memory or sockets)" :
						 "source identity has no certificate",
						 ident_client_ctx(k->src) ? "CONNECT" : "IDENTITY_ERROR");
			}
			return;
		}
		struct tunnel_req *r = k->pending;
		struct h2tun_connect_req cr = {
			.authority = r->authority,
			.forwarded = r->forwarded[0] ? r->forwarded : NULL,
			.traceparent = r->traceparent[0] ? r->traceparent : NULL,
			.network = r->network[0] ? r->network : NULL,
		};
		int32_t id = h2tun_connect(use->h2, &cr, NULL);
		if (id == -EAGAIN) {
			/* The peer's stream limit: count it as full. */
			break;
		}
		k->pending = r->next;
		k->n_pending--;
		if (id < 0) {
			req_fail(r, "cannot open a stream on the tunnel", "CONNECT");
			continue;
		}
		r->tun = use;
		r->id = id;
		r->next = use->inflight;
		use->inflight = r;
		use->streams_total++;
		tunnels_kick(use->h2);
	}
}

/* --- pool ------------------------------------------------------------------ */

/* Look at k from its task soon: it may have lost its last user. */
static void key_check(struct tunnel_key *k)
{
	if (!k->pool->freeing)
		loop_task_queue(k->pool->loop, &k->dispatch);
}

static void key_on_unused(struct ident_hold *h)
{
	key_check((struct tunnel_key *)((char *)h - offsetof(struct tunnel_key, hold)));
}

/* Close the tunnels of a key whose identity no pod uses any more: none of
 * them carries a stream then (a stream belongs to a pod's connection,
 * which keeps its pod's reference), and nothing will ask for one. */
static void key_close_unused(struct tunnel_key *k)
{
	struct tunnel *t, *next;

	if (k->dial) {
		tunnels_cancel(k->dial);
		k->dial = NULL;
		k->opening = 0;
		loop_timer_disarm(k->pool->loop, &k->dial_timer);
	}
	for (t = k->tunnels; t; t = next) {
		next = t->next;
		if (t->state == TUNNEL_CLOSED || (t->h2 && h2tun_stream_count(t->h2) > 0))
			continue;
		if (t->state == TUNNEL_CONNECTING) {
			h2conn_close(&t->h2c, -ECANCELED, "source identity no longer used");
			continue;
		}
		if (t->state == TUNNEL_READY) {
			h2tun_goaway(t->h2);
			t->state = TUNNEL_DRAINING;
			tunnel_flush(t);
		}
		if (t->state != TUNNEL_CLOSED)
			h2conn_close(&t->h2c, 0, "source identity no longer used by any pod");
	}
}

/* The key's task: serve waiting requests, close what no pod needs, and
 * free the key with its identity hold once it has neither a tunnel nor a
 * request. Only here, so no queued task ever points at a freed key. */
static void key_on_dispatch(struct loop_task *task)
{
	struct tunnel_key *k = (struct tunnel_key *)((char *)task -
						     offsetof(struct tunnel_key, dispatch));
	struct tunnels *p = k->pool;

	tunnel_dispatch(k);
	/* An unpooled key's one stream ended: its tunnel goes too. */
	if (!k->pending && (!ident_in_use(k->src) || (k->unpooled && k->tunnels && k->tunnels->h2 &&
						       k->tunnels->state == TUNNEL_READY &&
						       !h2tun_stream_count(k->tunnels->h2))))
		key_close_unused(k);
	if (k->tunnels || k->pending || k->dispatch.queued || k->dial)
		return;
	for (struct tunnel_key **pp = &p->keys; *pp; pp = &(*pp)->next) {
		if (*pp == k) {
			*pp = k->next;
			break;
		}
	}
	loop_timer_disarm(p->loop, &k->dial_timer);
	ident_unhold(&k->hold);
	free(k);
}

/* Where k's tunnels go through (its gateway, which may have moved). */
static void key_set_via(struct tunnel_key *k, const struct tunnel_via *via)
{
	snprintf(k->via_gw, sizeof(k->via_gw), "%s", via->gateway);
	snprintf(k->via_expect, sizeof(k->via_expect), "%s", via->expect_id);
	snprintf(k->via_authority, sizeof(k->via_authority), "%s", via->authority);
	memcpy(&k->via_addr, via->addr, via->addrlen);
	k->via_addrlen = via->addrlen;
}

static struct tunnel_key *key_get(struct tunnels *p, struct ident *src, const char *node,
				  const struct sockaddr *addr, socklen_t addrlen,
				  const char *expect_id, const struct tunnel_via *via)
{
	struct tunnel_key *k;

	/* A key is one kind of peer: a node direct, a node through a gateway
	 * or a gateway, told apart by the identity expected too, so that no
	 * name a remote registry chooses makes one stand for another. */
	for (k = via && via->unpooled ? NULL : p->keys; k; k = k->next)
		if (k->src == src && !k->unpooled && k->has_via == !!via &&
		    !strcmp(k->node, node) && !strcmp(k->expect_id, expect_id))
			break;
	if (k) {
		/* The node (or its gateway) may have moved; new tunnels go to
		 * the new address. */
		memcpy(&k->addr, addr, addrlen);
		k->addrlen = addrlen;
		if (via) {
			key_set_via(k, via);
		}
		return k;
	}
	k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->pool = p;
	k->src = src;
	ident_hold(src, &k->hold, key_on_unused);
	k->dispatch.cb = key_on_dispatch;
	k->dial_timer.cb = tunnel_on_dial_timeout;
	snprintf(k->node, sizeof(k->node), "%s", node);
	snprintf(k->expect_id, sizeof(k->expect_id), "%s", expect_id);
	memcpy(&k->addr, addr, addrlen);
	k->addrlen = addrlen;
	if (via) {
		k->has_via = 1;
		k->unpooled = via->unpooled;
		key_set_via(k, via);
	}
	k->next = p->keys;
	p->keys = k;
	return k;
}

struct tunnel_req *tunnels_open_stream(struct tunnels *p, struct ident *src, const char *node,
				       const struct sockaddr *node_addr, socklen_t addrlen,
				       const char *expect_id, const struct tunnel_via *via,
				       const struct h2tun_connect_req *req,
				       tunnel_open_fn cb, void *arg)
{
	struct tunnel_key *k;
	struct tunnel_req *r, **tail;

	if (p->draining || (via && (via->addrlen > sizeof(k->via_addr) ||
				    addrlen > sizeof(k->addr))))
		return NULL;
	k = key_get(p, src, node, node_addr, addrlen, expect_id, via);
	if (!k || k->n_pending >= p->lim.max_pending)
		return NULL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	r->key = k;
	r->cb = cb;
	r->arg = arg;
	snprintf(r->authority, sizeof(r->authority), "%s", req->authority);
	if (req->forwarded)
		snprintf(r->forwarded, sizeof(r->forwarded), "%s", req->forwarded);
	if (req->traceparent)
		snprintf(r->traceparent, sizeof(r->traceparent), "%s", req->traceparent);
	if (req->network)
		snprintf(r->network, sizeof(r->network), "%s", req->network);
	for (tail = &k->pending; *tail; tail = &(*tail)->next)
		;
	*tail = r;
	k->n_pending++;
	/* Dispatch from a task: the caller gets r before any callback runs. */
	loop_task_queue(p->loop, &k->dispatch);
	return r;
}

void tunnels_metrics(const struct tunnels *p, struct promtext *t)
{
	static const char *const rk[] = { "result" };
	static const char *const ok[] = { "ok" }, *const failed[] = { "failed" };
	static const char *const lk[] = { "le" };
	uint64_t cum = 0;

	promtext_family(t, "weft_tunnels_opened_total", "counter",
			"HBONE tunnels this node opened, by result (TCP + TLS to the peer).");
	promtext_sample_u64(t, "weft_tunnels_opened_total", rk, ok, 1, p->opened_ok);
	promtext_sample_u64(t, "weft_tunnels_opened_total", rk, failed, 1, p->opened_failed);
	promtext_family(t, "weft_tunnel_handshake_seconds", "histogram",
			"Time from connect to a verified TLS 1.3 session, per tunnel opened.");
	for (size_t b = 0; b <= TUNNEL_HS_BUCKETS; b++) {
		char le[32];
		const char *lv[] = { le };

		cum += p->hs_count[b];
		if (b < TUNNEL_HS_BUCKETS)
			snprintf(le, sizeof(le), "%g", tunnel_hs_buckets[b] / 1000.0);
		else
			snprintf(le, sizeof(le), "+Inf");
		promtext_sample_u64(t, "weft_tunnel_handshake_seconds_bucket", lk, lv, 1, cum);
	}
	promtext_sample(t, "weft_tunnel_handshake_seconds_sum", NULL, NULL, 0, p->hs_sum_s);
	promtext_sample_u64(t, "weft_tunnel_handshake_seconds_count", NULL, NULL, 0, cum);
	promtext_family(t, "weft_tunnel_streams", "gauge", "Streams open on each tunnel now.");
	for (const struct tunnel_key *k = p->keys; k; k = k->next)
		for (const struct tunnel *x = k->tunnels; x; x = x->next) {
			static const char *const sk[] = { "source", "node", "peer" };
			const char *sv[] = { ident_id(k->src), k->node, x->peer };

			if (x->state != TUNNEL_CLOSED && x->h2)
				promtext_sample_u64(t, "weft_tunnel_streams", sk, sv, 3,
						    h2tun_stream_count(x->h2));
		}
}

const char *tunnels_state(const struct tunnels *p, const struct ident *src, const char *node)
{
	enum tunnel_state best = TUNNEL_CLOSED;

	for (const struct tunnel_key *k = p ? p->keys : NULL; k; k = k->next) {
		if (k->src != src || strcmp(k->node, node))
			continue;
		for (const struct tunnel *t = k->tunnels; t; t = t->next)
			if (t->state == TUNNEL_READY || (t->state < best && best != TUNNEL_READY))
				best = t->state;
	}
	return best == TUNNEL_READY ? "ready" : best == TUNNEL_CONNECTING ? "connecting" :
	       best == TUNNEL_DRAINING ? "draining" : "none";
}

struct tunnels *tunnels_new(struct loop *l, const struct tunnel_limits *lim)
{
	struct tunnels *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->loop = l;
	p->lim = *lim;
	return p;
}

void tunnels_drain(struct tunnels *p)
{
	p->draining = 1;
	for (struct tunnel_key *k = p->keys; k; k = k->next) {
		key_fail_pending(k, "weftd is shutting down", "CONNECT");
		for (struct tunnel *t = k->tunnels; t; t = t->next) {
			if (t->state == TUNNEL_READY || t->state == TUNNEL_DRAINING) {
				t->state = TUNNEL_DRAINING;
				h2tun_goaway(t->h2);
				tunnels_kick(t->h2);
			}
		}
	}
}

void tunnels_free(struct tunnels *p)
{
	if (!p)
		return;
	/* A dial is a request of another key, which fails it below: by then
	 * its own key may be gone, so it calls nothing. */
	p->freeing = 1;
	for (struct tunnel_key *k = p->keys; k; k = k->next)
		if (k->dial) {
			k->dial->cb = tunnel_on_dial_forgotten;
			k->dial->arg = NULL;
		}
	while (p->keys) {
		struct tunnel_key *k = p->keys;
		p->keys = k->next;
		key_fail_pending(k, "weftd is shutting down", "CONNECT");
		while (k->tunnels) {
			struct tunnel *t = k->tunnels;
			k->tunnels = t->next;
			loop_timer_disarm(p->loop, &t->ping);
			t->state = TUNNEL_CLOSED;
			if (h2conn_detach(&t->h2c))
				free(t);	/* else its queued task holds it to the end */
		}
		loop_timer_disarm(p->loop, &k->dial_timer);
		ident_unhold(&k->hold);
		free(k);
	}
	free(p);
}

unsigned tunnels_count(const struct tunnels *p)
{
	return p->n_tunnels;
}

size_t tunnels_json(const struct tunnels *p, char *buf, size_t len)
{
	static const char *const st[] = { "", "connecting", "ready", "draining", "closed" };
	uint64_t now = loop_now_ms(p->loop);
	struct jw w = { buf, len, 0 };
	int first = 1;

	/* Node and gateway names may come from a remote network's registry:
	 * every string is escaped. */
	jw_put(&w, "[");
	for (const struct tunnel_key *k = p->keys; k; k = k->next) {
		for (const struct tunnel *t = k->tunnels; t; t = t->next) {
			jw_put(&w, "%s{\"source\":", first ? "" : ",");
			jw_str(&w, ident_id(k->src));
			jw_put(&w, ",\"node\":");
			jw_str(&w, k->node);
			jw_put(&w, ",\"peer\":");
			jw_str(&w, t->peer);
			jw_put(&w, ",\"state\":\"%s\",\"streams\":%u,\"streams_total\":%llu,"
			       "\"bytes_sent\":%llu,\"bytes_received\":%llu,\"age_ms\":%llu,"
			       "\"cipher\":", st[t->state], t->h2 ? h2tun_stream_count(t->h2) : 0,
			       (unsigned long long)t->streams_total, (unsigned long long)t->bytes_out,
			       (unsigned long long)t->bytes_in,
			       (unsigned long long)(now - t->opened_ms));
			jw_str(&w, t->cipher);
			jw_put(&w, ",\"via\":");
			jw_str(&w, k->via_gw);
			jw_put(&w, ",\"pooled\":%s}", k->unpooled ? "false" : "true");
			first = 0;
		}
	}
	jw_put(&w, "]");
	return jw_end(&w);
}
