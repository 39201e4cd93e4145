/* SPDX-License-Identifier: Apache-2.0 */
/* The agent's listener and per-connection glue: a conn (TLS on io_uring)
 * carries bytes, a grpc_session turns them into calls. Deadlines of calls
 * are driven by one timer per connection. */
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/grpc.h>
#include <weft/h2conn.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>
#include <weft/sockaddr.h>
#include <weft/tls.h>

#include "agent.h"
#include "config.h"
#include "server.h"
#include "service.h"

#define SERVER_IDLE_MS (5 * 60 * 1000)
/* TLS handshakes in flight (§5.1), each bounded by handshake_timeout_ms
 * from accept: idle connects from one address cannot lock out the nodes. */
#define SERVER_PENDING_MAX 1024
#define SERVER_PENDING_PER_ADDR 64
/* Connections whose caller has not authenticated yet (no call passed the
 * auth check): a node has one or two, so one address holding more is a
 * stranger holding memory (TLS, HTTP/2 state, its window: ~150 KB each,
 * §5.1). Past this it is refused at accept. */
#define SERVER_UNAUTH_MAX 1024
#define SERVER_UNAUTH_PER_ADDR 16

struct server {
	struct agent *agent;
	struct listener ls;
	struct listener_pending *pending;
	struct listener_pending *unauth;	/* per address, SERVER_UNAUTH_* */
	unsigned n_conns;
	char addr[80];
};

static void server_arm_deadline(struct agent_conn *ac)
{
	struct loop *l = ac->agent->loop;
	uint64_t next = grpc_session_expire(ac->grpc, loop_now_ms(l));

	if (next) {
		uint64_t now = loop_now_ms(l);
		loop_timer_arm(l, &ac->deadline, next > now ? next - now : 0);
	} else {
		loop_timer_disarm(l, &ac->deadline);
	}
}

void server_conn_kick(struct agent_conn *ac)
{
	h2conn_kick(&ac->h2c);
}

void server_conn_authenticated(struct agent_conn *ac)
{
	if (!ac->unauth)
		return;
	ac->unauth = 0;
	listener_pending_drop(ac->agent->server->unauth,
			      (const struct sockaddr *)&ac->peer_addr);
}

static void server_on_deadline(struct loop_timer *t)
{
	struct agent_conn *ac = (struct agent_conn *)((char *)t - offsetof(struct agent_conn, deadline));

	server_arm_deadline(ac);
	h2conn_flush(&ac->h2c);
}

static void server_on_ready(struct h2conn *h)
{
	struct agent_conn *ac = h2conn_udata(h);
	struct tls *t = conn_tls(h2conn_conn(h));

	if (t && tls_peer_id(t, ac->peer_id, sizeof(ac->peer_id)))
		ac->peer_id[0] = 0;
	log_debug("connection from %s ready (%s, client identity %s)", ac->peer,
		  t ? tls_cipher_name(t) : "plain", ac->peer_id[0] ? ac->peer_id : "none");
}

/* After bytes were fed or a kick's flush: call deadlines follow the calls. */
static void server_on_serviced(struct h2conn *h, int fed)
{
	(void)fed;
	server_arm_deadline(h2conn_udata(h));
}

static void server_on_proto_error(struct h2conn *h, const char *why, const uint8_t *p, size_t n)
{
	struct agent_conn *ac = h2conn_udata(h);
	char esc[64];

	log_warn("connection from %s: %s (first bytes \"%s\"), closing",
		 ac->peer, why, log_escape(esc, sizeof(esc), p, n < 16 ? n : 16));
}

/* The session goes right after (it cancels held calls, Watch streams). */
static void server_on_close(struct h2conn *h, int err, const char *why)
{
	struct agent_conn *ac = h2conn_udata(h);

	if (err)
		log_info("connection from %s closed: %s", ac->peer, why ? why : strerror(-err));
	else
		log_debug("connection from %s closed", ac->peer);
	loop_timer_disarm(ac->agent->loop, &ac->deadline);
	ac->grpc = NULL;
	server_conn_authenticated(ac);		/* gives its unauthenticated slot back */
	ac->agent->server->n_conns--;
}

static void server_on_release(struct h2conn *h)
{
	free(h2conn_udata(h));
}

static const struct h2conn_hooks server_hooks = {
	.on_ready = server_on_ready,
	.on_serviced = server_on_serviced,
	.on_proto_error = server_on_proto_error,
	.on_close = server_on_close,
	.on_release = server_on_release,
};

static void server_on_accept(struct listener *ls, int res)
{
	static struct log_rl rl_full = LOG_RL_INIT, rl_pending = LOG_RL_INIT;
	struct server *s = listener_udata(ls);
	struct agent *a = s->agent;
	struct conn_opts o = {
		.handshake_timeout_ms = a->cfg->handshake_timeout_ms,
		.idle_timeout_ms = SERVER_IDLE_MS,
		.pending = s->pending,
	};
	static struct log_rl rl_unauth = LOG_RL_INIT;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	struct agent_conn *ac;
	char where[64];
	int err;

	if (a->draining || s->n_conns >= a->cfg->max_connections) {
		log_warn_rl(&rl_full, "connection refused: %u connections open (max_connections %u)",
			    s->n_conns, a->cfg->max_connections);
		close(res);
		return;
	}
	if (getpeername(res, (struct sockaddr *)&peer, &plen) < 0) {
		close(res);
		return;
	}
	err = listener_pending_take(s->unauth, (struct sockaddr *)&peer);
	if (err) {
		sockaddr_str(&peer, where, sizeof(where));
		log_warn_rl(&rl_unauth, "connection from %s refused: %u of its address's "
			    "connections have not authenticated yet (at most %u per address, %u "
			    "in all)", where, listener_pending_of(s->unauth, (struct sockaddr *)&peer),
			    SERVER_UNAUTH_PER_ADDR, SERVER_UNAUTH_MAX);
		close(res);
		return;
	}
	ac = calloc(1, sizeof(*ac));
	if (!ac) {
		listener_pending_drop(s->unauth, (struct sockaddr *)&peer);
		close(res);
		return;
	}
	ac->agent = a;
	ac->peer_addr = peer;
	ac->unauth = 1;
	ac->deadline.cb = server_on_deadline;
	h2conn_init(&ac->h2c, a->loop, &server_hooks, ac);
	ac->grpc = grpc_session_new(service_grpc(a->service), h2conn_send, h2conn_space, &ac->h2c,
				    ac);
	if (!ac->grpc) {
		listener_pending_drop(s->unauth, (struct sockaddr *)&peer);
		free(ac);
		close(res);
		return;
	}
	h2conn_set_session(&ac->h2c, &grpc_session_engine, ac->grpc);
	err = h2conn_accept(&ac->h2c, res, a->tls, &o);
	if (err) {
		const char *why = listener_pending_refusal(err);

		if (why)
			log_warn_rl(&rl_pending, "connection refused: TLS handshakes: %s (%u pending)",
				    why, listener_pending_count(s->pending));
		grpc_session_free(ac->grpc);
		listener_pending_drop(s->unauth, (struct sockaddr *)&peer);
		free(ac);
		return;
	}
	snprintf(ac->peer, sizeof(ac->peer), "%s", conn_peer_str(h2conn_conn(&ac->h2c)));
	s->n_conns++;
}


struct server *server_new(struct agent *a, char *err, size_t errlen)
{
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct server *s;
	char name[sizeof(s->ls.name)];
	int fd;

	if (sockaddr_parse(a->cfg->listen, &ss, &sslen)) {
		snprintf(err, errlen, "listen: \"%s\" is not host:port with a numeric IP",
			 a->cfg->listen);
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->agent = a;
	s->pending = listener_pending_new(SERVER_PENDING_MAX, SERVER_PENDING_PER_ADDR);
	s->unauth = listener_pending_new(SERVER_UNAUTH_MAX, SERVER_UNAUTH_PER_ADDR);
	if (!s->pending || !s->unauth) {
		fd = -ENOMEM;
		goto fail;
	}
	fd = listener_socket((struct sockaddr *)&ss, sslen, 4096);
	if (fd < 0)
		goto fail;
	/* Report the real port (listen may have asked for port 0). */
	sslen = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sslen);
	sockaddr_str(&ss, s->addr, sizeof(s->addr));
	snprintf(name, sizeof(name), "listener %s", s->addr);
	listener_start(&s->ls, a->loop, fd, name, server_on_accept, NULL, s);
	return s;
fail:
	snprintf(err, errlen, "listen %s: %s", a->cfg->listen, strerror(-fd));
	listener_pending_free(s->pending);
	listener_pending_free(s->unauth);
	free(s);
	return NULL;
}

/* Stop accepting; open connections go on until they finish. */
void server_drain(struct server *s)
{
	if (s)
		listener_close(&s->ls);
}

unsigned server_conn_count(const struct server *s)
{
	return s->n_conns;
}

const char *server_addr(const struct server *s)
{
	return s->addr;
}

void server_free(struct server *s)
{
	if (!s)
		return;
	listener_deinit(&s->ls);
	listener_pending_free(s->pending);
	listener_pending_free(s->unauth);
	free(s);
}
