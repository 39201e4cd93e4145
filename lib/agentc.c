/* SPDX-License-Identifier: Apache-2.0 */
/* A client of weft-agent (weftd's, and weft-agent's for remote
 * registries): a lazily made TLS connection (the agent's
 * SPIFFE ID verified) carrying gRPC calls through grpcc, CreateCertificate
 * requests, and a Registry/Watch stream that is re-opened with exponential
 * backoff whenever it ends. Until the node has its own SVID every call
 * carries the bootstrap token; after agentc_set_identity new connections
 * use mTLS, and a token connection is retired once its unary calls are
 * done (its Watch moves to the new connection).
 *
 * Callbacks given to agentc run from the event loop; they may call any
 * agentc function except agentc_free. */
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <sodium.h>

#include <weft/conn.h>
#include <weft/grpcc.h>
#include <weft/h2conn.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/spiffe.h>
#include <weft/tls.h>

#include "ca.pb-c.h"
#include "google/protobuf/struct.pb-c.h"
#include "registry.pb-c.h"

#include <weft/agentc.h>

#define AGENTC_CREATE_PATH	"/istio.v1.auth.IstioCertificateService/CreateCertificate"
#define AGENTC_WATCH_PATH	"/weft.registry.v1.Registry/Watch"
#define AGENTC_CALL_TIMEOUT_MS	10000	/* one CreateCertificate */
#define AGENTC_HANDSHAKE_MS	5000	/* TCP connect + TLS */
#define AGENTC_BACKOFF_MIN_MS	500
#define AGENTC_BACKOFF_MAX_MS	150000
#define AGENTC_TOKEN_MAX	1024
/* The agent closes connections idle for 5 minutes, and a Watch can be
 * quiet for longer; a PING now and then keeps it (and proves the agent is
 * still there: no answer for AGENTC_DEAD_MS closes the connection). */
#define AGENTC_PING_MS		30000
#define AGENTC_DEAD_MS		75000

/* One connection to the agent and its gRPC session. */
struct agentc_conn {
	struct agentc *a;
	struct agentc_conn *next, **pprev;	/* in a->conns until the conn closes */
	struct h2conn h2c;		/* the conn and grpc; frees us (lib/h2conn.h) */
	struct grpcc_session *grpc;
	struct grpcc_call *watch;	/* the Watch call on this connection */
	unsigned n_unary;		/* CreateCertificate calls in flight */
	bool mtls;			/* made with the node identity */
	bool retiring;			/* close once n_unary reaches 0 */
	bool watch_moving;		/* our own cancel of the Watch */
	uint64_t rx_ms;			/* last bytes from the agent (or connect) */
	char why[160];			/* why the connection ended */
};

/* The kick task lives apart from the agentc so that agentc_free can leave
 * a queued task behind: it then frees itself when it runs. */
struct agentc_kick {
	struct loop_task task;
	struct agentc *a;
};

struct agentc {
	struct loop *loop;
	struct sockaddr_storage sa;
	socklen_t salen;
	char *addr;
	char *server_name;
	char *td;
	char *node;
	char *bundle;
	size_t bundle_len;
	char expect_id[SPIFFE_ID_MAX];
	char *auth;			/* "Bearer <token>", sodium memory */
	size_t auth_cap;
	struct tls_ctx *tls;		/* for new connections */
	uint32_t mark;
	bool have_identity;
	bool freeing;

	struct agentc_conn *conns;
	struct agentc_conn *cur;	/* where new calls go */
	struct agentc_kick *kick;
	struct loop_timer deadline;
	struct loop_timer keepalive;

	/* Registry/Watch */
	bool watching;
	bool watch_up;
	agentc_watch_fn watch_cb;
	agentc_state_fn state_cb;
	void *watch_arg;
	uint8_t *watch_req;
	size_t watch_req_len;
	struct loop_timer reconnect;
	uint32_t backoff_ms;
};

/* One CreateCertificate in flight. */
struct agentc_req {
	struct agentc_conn *ac;
	agentc_cert_fn cb;
	void *arg;
	char **chain;
	size_t n;
	const char *bad;		/* the response was not usable */
};

#define container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

static void agentc_kick(struct agentc *a);
static void agentc_watch_start(struct agentc *a);

/* --- connections ------------------------------------------------------------------ */

static bool agentc_closing(const struct agentc_conn *ac)
{
	return h2conn_closing(&ac->h2c);
}

static void agentc_conn_close(struct agentc_conn *ac, int err, const char *why)
{
	if (agentc_closing(ac))
		return;
	if (ac->a->cur == ac)
		ac->a->cur = NULL;
	h2conn_close(&ac->h2c, err, why);
}

/* Flush, close a finished session, retire a replaced connection. */
static void agentc_conn_service(struct agentc_conn *ac)
{
	struct agentc *a = ac->a;

	if (agentc_closing(ac))
		return;
	if (ac->retiring && ac->n_unary == 0) {
		if (ac->watch) {
			/* The Watch moves to the new connection; its end
			 * here is ours, not a failure to report. */
			ac->watch_moving = true;
			grpcc_call_cancel(ac->watch);
			ac->watch = NULL;
			if (a->watching)
				agentc_watch_start(a);
		}
		h2conn_flush(&ac->h2c);
		log_debug("agent connection %s: replaced by an mTLS connection", a->addr);
		agentc_conn_close(ac, 0, "replaced by an mTLS connection");
		return;
	}
	h2conn_flush(&ac->h2c);		/* closes a finished or failed session */
	if (agentc_closing(ac) && a->cur == ac)
		a->cur = NULL;
}

static void agentc_on_ready(struct h2conn *h)
{
	struct agentc_conn *ac = h2conn_udata(h);

	log_debug("connected to agent %s (%s, %s)", ac->a->addr,
		  tls_cipher_name(conn_tls(h2conn_conn(h))), ac->mtls ? "mTLS" : "token");
	agentc_kick(ac->a);
}

/* After the agent's bytes were fed: it is alive; calls may have ended. */
static void agentc_on_serviced(struct h2conn *h, int fed)
{
	struct agentc_conn *ac = h2conn_udata(h);

	if (!fed)
		return;
	ac->rx_ms = loop_now_ms(ac->a->loop);
	agentc_conn_service(ac);
	agentc_kick(ac->a);
}

static void agentc_on_proto_error(struct h2conn *h, const char *why, const uint8_t *p, size_t n)
{
	struct agentc_conn *ac = h2conn_udata(h);

	(void)p;
	(void)n;
	log_warn("agent %s: %s, closing the connection", ac->a->addr, why);
	snprintf(ac->why, sizeof(ac->why), "%s", why);
	if (ac->a->cur == ac)
		ac->a->cur = NULL;
}

/* The session goes right after: every call on it ends (certificate
 * requests fail, the Watch schedules its reconnect). */
static void agentc_on_close(struct h2conn *h, int err, const char *why)
{
	struct agentc_conn *ac = h2conn_udata(h);
	struct agentc *a = ac->a;

	if (!ac->why[0])
		snprintf(ac->why, sizeof(ac->why), "%s", why ? why : strerror(-err));
	if (err)
		log_info("agent connection %s closed: %s", a->addr, ac->why);
	*ac->pprev = ac->next;
	if (ac->next)
		ac->next->pprev = ac->pprev;
	if (a->cur == ac)
		a->cur = NULL;
	agentc_kick(a);
}

static void agentc_on_release(struct h2conn *h)
{
	free(h2conn_udata(h));
}

static const struct h2conn_hooks agentc_hooks = {
	.on_ready = agentc_on_ready,
	.on_serviced = agentc_on_serviced,
	.on_proto_error = agentc_on_proto_error,
	.on_close = agentc_on_close,
	.on_release = agentc_on_release,
};

/* The connection new calls go to, made now if there is none. NULL with
 * errno set when no socket or memory could be had. */
static struct agentc_conn *agentc_conn_get(struct agentc *a)
{
	struct conn_opts o = { .handshake_timeout_ms = AGENTC_HANDSHAKE_MS };
	struct agentc_conn *ac;
	int err;

	if (a->cur && !agentc_closing(a->cur) && !a->cur->retiring)
		return a->cur;
	ac = calloc(1, sizeof(*ac));
	if (!ac) {
		errno = ENOMEM;
		return NULL;
	}
	ac->a = a;
	ac->mtls = a->have_identity;
	ac->rx_ms = loop_now_ms(a->loop);
	h2conn_init(&ac->h2c, a->loop, &agentc_hooks, ac);
	ac->grpc = grpcc_session_new(h2conn_send, h2conn_space, &ac->h2c, a->server_name);
	if (!ac->grpc)
		goto fail_grpc;
	h2conn_set_session(&ac->h2c, &grpcc_session_engine, ac->grpc);
	err = h2conn_connect(&ac->h2c, (struct sockaddr *)&a->sa, a->salen, a->mark, a->tls,
			     a->server_name, a->expect_id, &o);
	if (err) {
		errno = -err;
		goto fail_conn;
	}
	ac->next = a->conns;
	if (ac->next)
		ac->next->pprev = &ac->next;
	ac->pprev = &a->conns;
	a->conns = ac;
	a->cur = ac;
	log_debug("connecting to agent %s (%s)", a->addr, ac->mtls ? "mTLS" : "token");
	if (!a->keepalive.idx)
		loop_timer_arm(a->loop, &a->keepalive, AGENTC_PING_MS);
	agentc_kick(a);
	return ac;

fail_conn:
	err = errno;
	grpcc_session_free(ac->grpc);
	errno = err;
fail_grpc:
	err = errno;
	free(ac);
	errno = err ? err : ENOMEM;
	return NULL;
}

/* Headers for a call on ac: the token unless the connection is mTLS. */
static const char *const *agentc_headers(struct agentc *a, const struct agentc_conn *ac,
					 const char *hdrs[3])
{
	if (ac->mtls || !a->auth)
		return NULL;
	hdrs[0] = "authorization";
	hdrs[1] = a->auth;
	hdrs[2] = NULL;
	return hdrs;
}

/* --- flush task and deadlines --------------------------------------------------------- */

static void agentc_on_kick(struct loop_task *t)
{
	struct agentc_kick *k = container_of(t, struct agentc_kick, task);
	struct agentc *a = k->a;
	struct agentc_conn *ac, *next;
	uint64_t now, soonest = 0;

	if (!a) {
		free(k);	/* agentc_free ran while we were queued */
		return;
	}
	now = loop_now_ms(a->loop);
	for (ac = a->conns; ac; ac = next) {
		next = ac->next;
		if (agentc_closing(ac))
			continue;
		uint64_t at = grpcc_session_expire(ac->grpc, now);

		if (at && (!soonest || at < soonest))
			soonest = at;
		agentc_conn_service(ac);
	}
	if (soonest)
		loop_timer_arm(a->loop, &a->deadline, soonest > now ? soonest - now : 0);
	else
		loop_timer_disarm(a->loop, &a->deadline);
}

static void agentc_kick(struct agentc *a)
{
	if (!a->freeing)
		loop_task_queue(a->loop, &a->kick->task);
}

static void agentc_on_deadline(struct loop_timer *t)
{
	agentc_kick(container_of(t, struct agentc, deadline));
}

static void agentc_on_keepalive(struct loop_timer *t)
{
	struct agentc *a = container_of(t, struct agentc, keepalive);
	uint64_t now = loop_now_ms(a->loop);

	for (struct agentc_conn *ac = a->conns; ac; ac = ac->next) {
		if (agentc_closing(ac))
			continue;
		if (now - ac->rx_ms > AGENTC_DEAD_MS) {
			snprintf(ac->why, sizeof(ac->why), "no answer to keepalive PINGs for %u s",
				 AGENTC_DEAD_MS / 1000);
			agentc_conn_close(ac, -ETIMEDOUT, ac->why);
			continue;
		}
		grpcc_session_ping(ac->grpc);
	}
	if (a->conns)
		loop_timer_arm(a->loop, t, AGENTC_PING_MS);
	agentc_kick(a);
}

/* --- CreateCertificate ------------------------------------------------------------------ */

static void agentc_req_free(struct agentc_req *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->chain[i]);
	free(r->chain);
	free(r);
}

static void agentc_cert_on_message(struct grpcc_call *c, const uint8_t *msg, size_t len,
				   void *arg)
{
	struct agentc_req *r = arg;
	Istio__V1__Auth__IstioCertificateResponse *resp;

	(void)c;
	if (r->chain || r->bad) {
		r->bad = "more than one response message";
		return;
	}
	resp = istio__v1__auth__istio_certificate_response__unpack(NULL, len, msg);
	if (!resp) {
		r->bad = "malformed IstioCertificateResponse";
		return;
	}
	if (resp->n_cert_chain == 0) {
		r->bad = "empty certificate chain";
		goto out;
	}
	r->chain = calloc(resp->n_cert_chain, sizeof(*r->chain));
	if (!r->chain) {
		r->bad = "out of memory";
		goto out;
	}
	for (r->n = 0; r->n < resp->n_cert_chain; r->n++) {
		r->chain[r->n] = strdup(resp->cert_chain[r->n]);
		if (!r->chain[r->n]) {
			r->bad = "out of memory";
			break;
		}
	}
out:
	istio__v1__auth__istio_certificate_response__free_unpacked(resp, NULL);
}

static void agentc_cert_on_done(struct grpcc_call *c, enum grpc_status st, const char *msg,
				void *arg)
{
	struct agentc_req *r = arg;
	struct agentc_conn *ac = r->ac;
	char m[256];

	(void)c;
	ac->n_unary--;
	if (st == GRPC_OK && r->bad) {
		st = GRPC_INTERNAL;
		msg = r->bad;
	} else if (st == GRPC_OK && !r->chain) {
		st = GRPC_INTERNAL;
		msg = "no response message";
	} else if (st == GRPC_UNAVAILABLE && ac->why[0]) {
		/* "connection closed" says less than the conn's reason. */
		snprintf(m, sizeof(m), "agent %s: %s", ac->a->addr, ac->why);
		msg = m;
	}
	if (st == GRPC_OK)
		r->cb(r->arg, GRPC_OK, NULL, r->chain, r->n);
	else
		r->cb(r->arg, st, msg, NULL, 0);
	agentc_req_free(r);
	agentc_kick(ac->a);	/* maybe retire the connection */
}

int agentc_create_cert(struct agentc *a, const char *csr_pem, const char *impersonate,
		       uint32_t ttl_s, agentc_cert_fn cb, void *arg)
{
	Istio__V1__Auth__IstioCertificateRequest req =
		ISTIO__V1__AUTH__ISTIO_CERTIFICATE_REQUEST__INIT;
	Google__Protobuf__Struct md = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry e = GOOGLE__PROTOBUF__STRUCT__FIELDS_ENTRY__INIT;
	Google__Protobuf__Struct__FieldsEntry *ep = &e;
	Google__Protobuf__Value v = GOOGLE__PROTOBUF__VALUE__INIT;
	const char *hdrs[3];
	struct agentc_conn *ac;
	struct agentc_req *r;
	uint8_t *buf;
	size_t len;
	int err;

	if (!a || !csr_pem || !cb || a->freeing)
		return -EINVAL;
	req.csr = (char *)csr_pem;
	req.validity_duration = ttl_s;
	if (impersonate && impersonate[0]) {
		v.kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
		v.string_value = (char *)impersonate;
		e.key = "ImpersonatedIdentity";
		e.value = &v;
		md.n_fields = 1;
		md.fields = &ep;
		req.metadata = &md;
	}
	len = istio__v1__auth__istio_certificate_request__get_packed_size(&req);
	buf = malloc(len ? len : 1);
	r = calloc(1, sizeof(*r));
	if (!buf || !r) {
		err = -ENOMEM;
		goto fail;
	}
	istio__v1__auth__istio_certificate_request__pack(&req, buf);
	ac = agentc_conn_get(a);
	if (!ac) {
		err = -errno;
		goto fail;
	}
	r->ac = ac;
	r->cb = cb;
	r->arg = arg;
	if (!grpcc_call_start(ac->grpc, AGENTC_CREATE_PATH, agentc_headers(a, ac, hdrs), buf, len,
			      AGENTC_CALL_TIMEOUT_MS, loop_now_ms(a->loop),
			      agentc_cert_on_message, agentc_cert_on_done, r)) {
		err = -ENOMEM;
		goto fail;
	}
	ac->n_unary++;
	free(buf);
	agentc_kick(a);
	return 0;

fail:
	free(buf);
	free(r);
	return err;
}

/* --- Registry/Watch -------------------------------------------------------------------- */

/* up = 1 is told once per recovery; every failure is told (with why), so
 * the daemon can say why it is not ready yet. */
static void agentc_state(struct agentc *a, int up, const char *why)
{
	if (up && a->watch_up)
		return;
	if (up)
		log_info("registry watch on agent %s open", a->addr);
	else if (a->watch_up)
		log_warn("registry watch on agent %s lost: %s", a->addr, why);
	else
		log_info("registry watch on agent %s failed: %s", a->addr, why);
	a->watch_up = up != 0;
	if (a->state_cb)
		a->state_cb(a->watch_arg, up, why);
}

static void agentc_watch_retry(struct agentc *a)
{
	if (!a->watching || a->freeing)
		return;
	log_debug("registry watch: reconnecting in %u ms", a->backoff_ms);
	loop_timer_arm(a->loop, &a->reconnect, a->backoff_ms);
	a->backoff_ms = a->backoff_ms * 2 > AGENTC_BACKOFF_MAX_MS ? AGENTC_BACKOFF_MAX_MS
								   : a->backoff_ms * 2;
}

static void agentc_watch_on_message(struct grpcc_call *c, const uint8_t *msg, size_t len,
				    void *arg)
{
	struct agentc_conn *ac = arg;
	struct agentc *a = ac->a;

	(void)c;
	if (ac->watch_moving || a->freeing)
		return;
	/* A message means connected, authenticated and served. */
	a->backoff_ms = AGENTC_BACKOFF_MIN_MS;
	agentc_state(a, 1, "registry watch open");
	if (a->watch_cb)
		a->watch_cb(a->watch_arg, msg, len);
}

static void agentc_watch_on_done(struct grpcc_call *c, enum grpc_status st, const char *msg,
				 void *arg)
{
	struct agentc_conn *ac = arg;
	struct agentc *a = ac->a;
	char why[320];

	(void)c;
	if (ac->watch == c)
		ac->watch = NULL;
	if (ac->watch_moving || a->freeing) {
		ac->watch_moving = false;
		return;
	}
	if (st == GRPC_UNAVAILABLE && ac->why[0])
		snprintf(why, sizeof(why), "%s", ac->why);
	else
		snprintf(why, sizeof(why), "%s%s%s", grpc_status_name(st), msg && *msg ? ": " : "",
			 msg ? msg : "");
	agentc_state(a, 0, why);
	agentc_watch_retry(a);
}

static void agentc_watch_start(struct agentc *a)
{
	const char *hdrs[3];
	struct agentc_conn *ac;

	if (!a->watching || a->freeing)
		return;
	loop_timer_disarm(a->loop, &a->reconnect);
	ac = agentc_conn_get(a);
	if (!ac) {
		log_warn("registry watch: cannot connect to agent %s: %s", a->addr,
			 strerror(errno));
		agentc_watch_retry(a);
		return;
	}
	if (ac->watch)
		return;		/* already open on this connection */
	ac->watch = grpcc_call_start(ac->grpc, AGENTC_WATCH_PATH, agentc_headers(a, ac, hdrs),
				     a->watch_req, a->watch_req_len, 0, loop_now_ms(a->loop),
				     agentc_watch_on_message, agentc_watch_on_done, ac);
	if (!ac->watch) {
		agentc_watch_retry(a);
		return;
	}
	agentc_kick(a);
}

static void agentc_on_reconnect(struct loop_timer *t)
{
	agentc_watch_start(container_of(t, struct agentc, reconnect));
}

void agentc_watch(struct agentc *a, agentc_watch_fn cb, agentc_state_fn state, void *arg)
{
	Weft__Registry__V1__WatchRequest req = WEFT__REGISTRY__V1__WATCH_REQUEST__INIT;

	if (!a || a->freeing)
		return;
	a->watch_cb = cb;
	a->state_cb = state;
	a->watch_arg = arg;
	if (a->watching)
		return;
	req.node = a->node;
	a->watch_req_len = weft__registry__v1__watch_request__get_packed_size(&req);
	a->watch_req = malloc(a->watch_req_len ? a->watch_req_len : 1);
	if (!a->watch_req) {
		log_error("registry watch: out of memory");
		return;
	}
	weft__registry__v1__watch_request__pack(&req, a->watch_req);
	a->watching = true;
	agentc_watch_start(a);
}

/* --- identity ----------------------------------------------------------------------------- */

static struct tls_ctx *agentc_tls_new(struct agentc *a, const char *chain, size_t chain_len,
				      const char *key, size_t key_len, char *err, size_t errlen)
{
	const char *tds[] = { a->td, NULL };
	struct tls_ctx_opts o = {
		.role = TLS_CLIENT,
		.peer_auth = TLS_PEER_REQUIRE,
		.chain_pem = chain,
		.chain_len = chain_len,
		.key_pem = key,
		.key_len = key_len,
		.bundle_pem = a->bundle,
		.bundle_len = a->bundle_len,
		.trust_domains = tds,
		.alpn = "h2",
	};

	return tls_ctx_new(&o, err, errlen);
}

int agentc_set_identity(struct agentc *a, const char *chain_pem, size_t chain_len,
			const char *key_pem, size_t key_len)
{
	char err[TLS_ERR_MAX];
	struct tls_ctx *t;

	if (!a || !chain_pem || !key_pem)
		return -EINVAL;
	t = agentc_tls_new(a, chain_pem, chain_len, key_pem, key_len, err, sizeof(err));
	if (!t) {
		log_error("agent client: cannot use the node certificate: %s", err);
		return -EINVAL;
	}
	/* Live connections hold their own reference to the old context. */
	tls_ctx_free(a->tls);
	a->tls = t;
	if (!a->have_identity)
		log_info("agent client: node identity in place, using mTLS from now on");
	a->have_identity = true;
	/* A token connection gives way once its unary calls are done; an
	 * mTLS one stays (its certificate was valid when it was checked). */
	for (struct agentc_conn *ac = a->conns; ac; ac = ac->next) {
		if (!ac->mtls && !ac->retiring) {
			ac->retiring = true;
			if (a->cur == ac)
				a->cur = NULL;
		}
	}
	agentc_kick(a);
	return 0;
}

/* --- lifetime ----------------------------------------------------------------------------- */

static int agentc_resolve(struct agentc *a, const char *addr, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res;
	char host[256];
	const char *colon = strrchr(addr, ':');
	size_t hl;
	int rc;

	if (!colon || colon == addr || !colon[1]) {
		snprintf(err, errlen, "agent address \"%s\" is not host:port", addr);
		return -EINVAL;
	}
	hl = (size_t)(colon - addr);
	if (addr[0] == '[' && colon[-1] == ']') {
		addr++;
		hl -= 2;
	}
	if (hl >= sizeof(host)) {
		snprintf(err, errlen, "agent address \"%s\": host too long", addr);
		return -EINVAL;
	}
	memcpy(host, addr, hl);
	host[hl] = '\0';
	/* Numeric addresses need no lookup; a name is resolved once, here. */
	rc = getaddrinfo(host, colon + 1, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "agent address \"%s\": %s", a->addr, gai_strerror(rc));
		return -EINVAL;
	}
	memcpy(&a->sa, res->ai_addr, res->ai_addrlen);
	a->salen = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

struct agentc *agentc_new(struct loop *l, const struct agentc_opts *o, char *err, size_t errlen)
{
	struct agentc *a;
	size_t tlen;

	if (!l || !o || !o->addr || !o->trust_domain || !o->bundle_pem || !o->node) {
		snprintf(err, errlen, "agent client: addr, trust_domain, bundle and node are required");
		return NULL;
	}
	if (!spiffe_td_valid(o->trust_domain)) {
		snprintf(err, errlen, "agent client: invalid trust domain \"%s\"", o->trust_domain);
		return NULL;
	}
	if (sodium_init() < 0) {
		snprintf(err, errlen, "agent client: libsodium init failed");
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a)
		goto fail_nomem;
	a->loop = l;
	a->backoff_ms = AGENTC_BACKOFF_MIN_MS;
	a->mark = o->mark;
	a->deadline.cb = agentc_on_deadline;
	a->reconnect.cb = agentc_on_reconnect;
	a->keepalive.cb = agentc_on_keepalive;
	a->addr = strdup(o->addr);
	a->server_name = strdup(o->server_name ? o->server_name : "weft-agent");
	a->td = strdup(o->trust_domain);
	a->node = strdup(o->node);
	a->bundle_len = o->bundle_len ? o->bundle_len : strlen(o->bundle_pem);
	a->bundle = malloc(a->bundle_len + 1);
	a->kick = calloc(1, sizeof(*a->kick));
	if (!a->addr || !a->server_name || !a->td || !a->node || !a->bundle || !a->kick)
		goto fail_free;
	memcpy(a->bundle, o->bundle_pem, a->bundle_len);
	a->bundle[a->bundle_len] = '\0';
	a->kick->a = a;
	a->kick->task.cb = agentc_on_kick;
	snprintf(a->expect_id, sizeof(a->expect_id), "spiffe://%s/weft/agent", a->td);
	if (o->token && o->token[0]) {
		tlen = strnlen(o->token, AGENTC_TOKEN_MAX + 1);
		if (tlen > AGENTC_TOKEN_MAX) {
			snprintf(err, errlen, "agent client: token longer than %d bytes",
				 AGENTC_TOKEN_MAX);
			goto fail;
		}
		a->auth_cap = tlen + 8;
		a->auth = sodium_malloc(a->auth_cap);
		if (!a->auth)
			goto fail_free;
		memcpy(a->auth, "Bearer ", 7);
		memcpy(a->auth + 7, o->token, tlen);
		a->auth[7 + tlen] = '\0';
		/* Only ever read from now on; a stray write faults instead of
		 * changing or leaking it. sodium_free makes it writable again
		 * to wipe it. */
		sodium_mprotect_readonly(a->auth);
	}
	if (agentc_resolve(a, o->addr, err, errlen))
		goto fail;
	a->tls = agentc_tls_new(a, NULL, 0, NULL, 0, err, errlen);
	if (!a->tls)
		goto fail;
	return a;

fail_free:
	snprintf(err, errlen, "agent client: out of memory");
fail:
	agentc_free(a);
	return NULL;
fail_nomem:
	snprintf(err, errlen, "agent client: out of memory");
	return NULL;
}

void agentc_free(struct agentc *a)
{
	struct agentc_conn *ac;

	if (!a)
		return;
	a->freeing = true;
	a->watching = false;
	loop_timer_disarm(a->loop, &a->deadline);
	loop_timer_disarm(a->loop, &a->reconnect);
	loop_timer_disarm(a->loop, &a->keepalive);
	/* Pending requests get UNAVAILABLE now; the conns close on their own
	 * and no longer call back into us. */
	while ((ac = a->conns)) {
		a->conns = ac->next;
		snprintf(ac->why, sizeof(ac->why), "agent client shutting down");
		if (h2conn_detach(&ac->h2c))	/* frees the session: its calls end */
			free(ac);		/* else its queued task holds it */
	}
	if (a->kick) {
		if (a->kick->task.queued)
			a->kick->a = NULL;	/* frees itself when it runs */
		else
			free(a->kick);
	}
	tls_ctx_free(a->tls);
	if (a->auth)
		sodium_free(a->auth);	/* wipes */
	free(a->watch_req);
	free(a->addr);
	free(a->server_name);
	free(a->td);
	free(a->node);
	free(a->bundle);
	free(a);
}
