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

struct server {
	struct agent *agent;
	struct listener ls;
	struct listener_pending *pending;
	unsigned n_conns;
	char addr[80];
};

static int server_send(void *io, const uint8_t *p, size_t n)
{
	struct agent_conn *ac = io;

	return conn_write(ac->conn, p, n);
}

static size_t server_space(void *io)
{
	struct agent_conn *ac = io;

	return conn_out_space(ac->conn);
}

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

static void server_flush(struct agent_conn *ac)
{
	if (ac->closed)
		return;
	if (grpc_session_flush(ac->grpc)) {
		conn_abort(ac->conn, -EPIPE, "cannot write to client");
		return;
	}
	if (grpc_session_done(ac->grpc))
		conn_close(ac->conn, 0, "gRPC session finished");
}

static void server_on_flush_task(struct loop_task *t)
{
	struct agent_conn *ac = (struct agent_conn *)((char *)t - offsetof(struct agent_conn, flush));

	if (ac->closed) {
		free(ac);
		return;
	}
	server_flush(ac);
	if (!ac->closed)
		server_arm_deadline(ac);
}

void server_conn_kick(struct agent_conn *ac)
{
	if (!ac->closed)
		loop_task_queue(ac->agent->loop, &ac->flush);
}

static void server_on_deadline(struct loop_timer *t)
{
	struct agent_conn *ac = (struct agent_conn *)((char *)t - offsetof(struct agent_conn, deadline));

	server_arm_deadline(ac);
	server_flush(ac);
}

static void server_on_ready(struct conn *c)
{
	struct agent_conn *ac = conn_udata(c);
	struct tls *t = conn_tls(c);

	if (t && tls_peer_id(t, ac->peer_id, sizeof(ac->peer_id)))
		ac->peer_id[0] = 0;
	log_debug("connection from %s ready (%s, client identity %s)", ac->peer,
		  t ? tls_cipher_name(t) : "plain", ac->peer_id[0] ? ac->peer_id : "none");
	server_flush(ac);	/* our SETTINGS */
}

static size_t server_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct agent_conn *ac = conn_udata(c);

	if (grpc_session_feed(ac->grpc, p, n, loop_now_ms(ac->agent->loop))) {
		const char *why = grpc_session_error(ac->grpc);
		char esc[64];

		why = why ? why : "HTTP/2 protocol error";
		log_warn("connection from %s: %s (first bytes \"%s\"), closing",
			 ac->peer, why, log_escape(esc, sizeof(esc), p, n < 16 ? n : 16));
		server_flush(ac);
		if (!ac->closed)
			conn_close(c, -EPROTO, why);
		return n;
	}
	server_flush(ac);
	if (!ac->closed)
		server_arm_deadline(ac);
	return n;
}

static void server_on_writable(struct conn *c)
{
	server_flush(conn_udata(c));
}

static void server_on_close(struct conn *c, int err, const char *why)
{
	struct agent_conn *ac = conn_udata(c);
	struct server *s = ac->agent->server;

	if (err)
		log_info("connection from %s closed: %s", ac->peer, why ? why : strerror(-err));
	else
		log_debug("connection from %s closed", ac->peer);
	ac->closed = 1;
	loop_timer_disarm(ac->agent->loop, &ac->deadline);
	/* Cancels held calls (Watch streams) before the memory goes. */
	grpc_session_free(ac->grpc);
	ac->grpc = NULL;
	/* Free after the current dispatch: callers up the stack (on_data,
	 * a flush) may still look at ac; the flush task sees closed and frees. */
	loop_task_queue(ac->agent->loop, &ac->flush);
	s->n_conns--;
}

static const struct conn_handler server_conn_handler = {
	.on_ready = server_on_ready,
	.on_data = server_on_data,
	.on_writable = server_on_writable,
	.on_close = server_on_close,
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
	struct agent_conn *ac;

	if (a->draining || s->n_conns >= a->cfg->max_connections) {
		log_warn_rl(&rl_full, "connection refused: %u connections open (max_connections %u)",
			    s->n_conns, a->cfg->max_connections);
		close(res);
		return;
	}
	ac = calloc(1, sizeof(*ac));
	if (!ac) {
		close(res);
		return;
	}
	ac->agent = a;
	ac->deadline.cb = server_on_deadline;
	ac->flush.cb = server_on_flush_task;
	ac->grpc = grpc_session_new(service_grpc(a->service), server_send, server_space, ac, ac);
	if (!ac->grpc) {
		free(ac);
		close(res);
		return;
	}
	ac->conn = conn_accept(a->loop, res, a->tls, &server_conn_handler, &o, ac);
	if (!ac->conn) {
		const char *why = listener_pending_refusal(errno);

		if (why)
			log_warn_rl(&rl_pending, "connection refused: TLS handshakes: %s (%u pending)",
				    why, listener_pending_count(s->pending));
		grpc_session_free(ac->grpc);
		free(ac);
		return;
	}
	snprintf(ac->peer, sizeof(ac->peer), "%s", conn_peer_str(ac->conn));
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
	if (!s->pending) {
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
	free(s);
}
