/* SPDX-License-Identifier: Apache-2.0 */
/* An HTTP/2 session over a conn (h2conn.h has the rule of who frees what).
 * conn.c runs its on_close from a task of its own, never inside a call of
 * ours, so the session is never freed under a feed or a flush. */
#include <errno.h>
#include <stddef.h>

#include <weft/h2conn.h>

#define H2CONN_F_READY		(1u << 0)	/* on_ready came: the session may write */
#define H2CONN_F_CLOSING	(1u << 1)	/* h2conn_close/abort called, or closed */
#define H2CONN_F_CLOSED		(1u << 2)	/* the conn's on_close came */
#define H2CONN_F_RELEASED	(1u << 3)	/* on_release called */
#define H2CONN_F_DETACHED	(1u << 4)	/* h2conn_detach: no hook any more */

static struct h2conn *h2conn_of_task(struct loop_task *t)
{
	return (struct h2conn *)((char *)t - offsetof(struct h2conn, task));
}

/* From the task: release once closed and unreferenced, else flush. */
static void h2conn_on_task(struct loop_task *t)
{
	struct h2conn *h = h2conn_of_task(t);

	if (h->flags & H2CONN_F_DETACHED)
		return;
	if (h->flags & H2CONN_F_CLOSED) {
		if (!h->refs && !(h->flags & H2CONN_F_RELEASED)) {
			h->flags |= H2CONN_F_RELEASED;
			h->hooks->on_release(h);	/* may free h */
		}
		return;
	}
	h2conn_flush(h);
	if (!(h->flags & H2CONN_F_CLOSING) && h->hooks->on_serviced)
		h->hooks->on_serviced(h, 0);
}

void h2conn_init(struct h2conn *h, struct loop *l, const struct h2conn_hooks *hooks,
		 void *udata)
{
	*h = (struct h2conn){ .l = l, .hooks = hooks, .udata = udata };
	h->task.cb = h2conn_on_task;
}

void h2conn_set_session(struct h2conn *h, const struct h2conn_engine *eng, void *sess)
{
	h->eng = eng;
	h->sess = sess;
}

/* --- the conn's side ----------------------------------------------------------- */

static void h2conn_on_ready(struct conn *c)
{
	struct h2conn *h = conn_udata(c);

	if (!h)
		return;
	h->flags |= H2CONN_F_READY;
	if (h->hooks->on_ready)
		h->hooks->on_ready(h);
	h2conn_flush(h);	/* our SETTINGS */
}

static size_t h2conn_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct h2conn *h = conn_udata(c);
	const char *why;

	if (!h || (h->flags & H2CONN_F_CLOSING) || !h->sess)
		return n;
	if (h->eng->feed(h->sess, p, n, loop_now_ms(h->l)) != 0) {
		why = h->eng->error ? h->eng->error(h->sess) : NULL;
		why = why ? why : "HTTP/2 protocol error";
		if (h->hooks->on_proto_error)
			h->hooks->on_proto_error(h, why, p, n);
		h2conn_flush(h);	/* the GOAWAY */
		h2conn_close(h, -EPROTO, why);
		return n;
	}
	h2conn_flush(h);
	if (!(h->flags & H2CONN_F_CLOSING) && h->hooks->on_serviced)
		h->hooks->on_serviced(h, 1);
	return n;
}

static void h2conn_on_writable(struct conn *c)
{
	struct h2conn *h = conn_udata(c);

	if (h)
		h2conn_flush(h);
}

static void h2conn_on_close(struct conn *c, int err, const char *why)
{
	struct h2conn *h = conn_udata(c);
	void *sess;

	if (!h)
		return;		/* detached */
	h->flags |= H2CONN_F_CLOSED | H2CONN_F_CLOSING;
	h->hooks->on_close(h, err, why);
	/* Ends every stream: children see it and drop their references. */
	sess = h->sess;
	h->sess = NULL;
	if (sess)
		h->eng->free(sess);
	h->conn = NULL;		/* conn.c frees it once this returns */
	loop_task_queue(h->l, &h->task);
}

static const struct conn_handler h2conn_handler = {
	.on_ready = h2conn_on_ready,
	.on_data = h2conn_on_data,
	.on_writable = h2conn_on_writable,
	.on_close = h2conn_on_close,
};

int h2conn_accept(struct h2conn *h, int fd, struct tls_ctx *tls, const struct conn_opts *o)
{
	h->conn = conn_accept(h->l, fd, tls, &h2conn_handler, o, h);
	return h->conn ? 0 : -(errno ? errno : ENOMEM);
}

int h2conn_connect(struct h2conn *h, const struct sockaddr *sa, socklen_t salen, uint32_t mark,
		   struct tls_ctx *tls, const char *sni, const char *expect_id,
		   const struct conn_opts *o)
{
	h->conn = conn_connect(h->l, sa, salen, mark, tls, sni, expect_id, &h2conn_handler, o, h);
	return h->conn ? 0 : -(errno ? errno : ENOMEM);
}

int h2conn_start_fd(struct h2conn *h, int fd, const char *peer, struct tls_ctx *tls,
		    const char *sni, const char *expect_id, const struct conn_opts *o)
{
	h->conn = conn_start_fd(h->l, fd, peer, tls, sni, expect_id, &h2conn_handler, o, h);
	return h->conn ? 0 : -(errno ? errno : ENOMEM);
}

/* --- the session's side -------------------------------------------------------- */

int h2conn_send(void *io, const uint8_t *p, size_t n)
{
	struct h2conn *h = io;

	return h->conn ? conn_write(h->conn, p, n) : -EPIPE;
}

size_t h2conn_space(void *io)
{
	struct h2conn *h = io;

	return h->conn && !(h->flags & H2CONN_F_CLOSING) ? conn_out_space(h->conn) : 0;
}

void h2conn_flush(struct h2conn *h)
{
	if (!(h->flags & H2CONN_F_READY) || (h->flags & H2CONN_F_CLOSING) || !h->sess)
		return;
	if (h->eng->flush(h->sess) < 0) {
		h2conn_close(h, -EPIPE, "HTTP/2 session failed");
		return;
	}
	if (h->eng->done(h->sess))
		h2conn_close(h, 0, "HTTP/2 session finished");
}

void h2conn_kick(struct h2conn *h)
{
	if (!(h->flags & H2CONN_F_CLOSING))
		loop_task_queue(h->l, &h->task);
}

void h2conn_close(struct h2conn *h, int err, const char *why)
{
	if ((h->flags & H2CONN_F_CLOSED) || !h->conn)
		return;
	/* An error after a graceful close still cuts it short. */
	if ((h->flags & H2CONN_F_CLOSING) && err >= 0)
		return;
	h->flags |= H2CONN_F_CLOSING;
	if (err < 0 && err != -EPROTO)
		conn_abort(h->conn, err, why);
	else
		conn_close(h->conn, err, why);	/* a protocol error: the GOAWAY goes first */
}

void h2conn_hold(struct h2conn *h)
{
	h->refs++;
}

void h2conn_put(struct h2conn *h)
{
	if (!--h->refs && (h->flags & H2CONN_F_CLOSED))
		loop_task_queue(h->l, &h->task);
}

int h2conn_detach(struct h2conn *h)
{
	void *sess = h->sess;

	h->flags |= H2CONN_F_DETACHED | H2CONN_F_CLOSING;
	h->sess = NULL;
	if (h->conn) {
		conn_set_udata(h->conn, NULL);
		conn_abort(h->conn, -ESHUTDOWN, "exiting");
		h->conn = NULL;
	}
	if (sess)
		h->eng->free(sess);
	return !h->task.queued;
}

int h2conn_closing(const struct h2conn *h)
{
	return !!(h->flags & H2CONN_F_CLOSING);
}

int h2conn_closed(const struct h2conn *h)
{
	return !!(h->flags & H2CONN_F_CLOSED);
}

struct conn *h2conn_conn(const struct h2conn *h)
{
	return h->conn;
}

void *h2conn_session(const struct h2conn *h)
{
	return h->sess;
}

void *h2conn_udata(const struct h2conn *h)
{
	return h->udata;
}
