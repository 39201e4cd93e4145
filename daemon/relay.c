/* SPDX-License-Identifier: Apache-2.0 */
/* Byte pump between an app-side conn (A) and a conn or an HBONE stream (B).
 *
 * Backpressure: a side takes only what the other side can queue now
 * (conn_out_space / h2tun_write's count); the rest stays in the source
 * (conn keeps it and stops reading; h2tun keeps it and the window stays
 * shut), and is offered again on the destination's on_writable.
 *
 * Lifetime: the relay lives until both sides have reported their end
 * (conn on_close, stream on_close); it is freed from a loop task, never
 * inside a callback of either side. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/h2glue.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "relay.h"

enum relay_kind {
	RELAY_NONE = 0,
	RELAY_CONN,
	RELAY_STREAM,
};

struct relay_side {
	enum relay_kind kind;
	struct conn *conn;
	struct h2tun *t;
	int32_t id;
	void (*kick)(struct h2tun *t);
	int up;			/* connected (conn) / open (stream) */
	int eof_in;		/* this side sent us FIN / END_STREAM */
	int shut_out;		/* we half-closed toward this side */
	int gone;		/* on_close / stream closed seen */
	int blocked;		/* the other side is waiting for our on_writable */
};

struct relay {
	struct loop *loop;
	const struct relay_hooks *h;
	void *udata;
	struct relay_side s[2];
	struct relay_stats st;
	struct loop_task free_task;
	int done;
	int end_on_eof;		/* relay_end_on_eof */
	char why[320];		/* the first error, whole: the access log, why and explain quote it */
};

static unsigned long relay_live;

static const struct conn_handler relay_conn_handler;

unsigned long relay_live_count(void)
{
	return relay_live;
}

static void relay_set_why(struct relay *r, const char *why)
{
	if (!r->why[0] && why)
		snprintf(r->why, sizeof(r->why), "%s", why);
}

static int relay_side_of(const struct relay *r, const struct conn *c)
{
	return r->s[0].conn == c ? 0 : 1;
}

static void relay_on_free(struct loop_task *t)
{
	struct relay *r = (struct relay *)((char *)t - offsetof(struct relay, free_task));

	free(r);
	relay_live--;
}

/* Both sides gone (or never attached): report and free. */
static void relay_maybe_done(struct relay *r)
{
	for (int i = 0; i < 2; i++)
		if (r->s[i].kind != RELAY_NONE && !r->s[i].gone)
			return;
	if (r->done)
		return;
	r->done = 1;
	r->st.end_ms = loop_now_ms(r->loop);
	r->st.why = r->why[0] ? r->why : NULL;
	if (r->h->on_done)
		r->h->on_done(r, &r->st);
	r->free_task.cb = relay_on_free;
	loop_task_queue(r->loop, &r->free_task);
}

static void relay_kick(struct relay_side *s)
{
	if (s->kind == RELAY_STREAM && s->kick)
		s->kick(s->t);
}

/* Close side i in the way the other side ended: reset stays a reset. */
static void relay_side_end(struct relay *r, int i, int reset)
{
	struct relay_side *s = &r->s[i];

	if (s->gone || s->kind == RELAY_NONE)
		return;
	if (s->kind == RELAY_CONN) {
		if (reset)
			conn_abort(s->conn, -ECONNRESET, r->why[0] ? r->why : "peer reset");
		else
			conn_close(s->conn, 0, NULL);
	} else {
		if (reset) {
			h2tun_reset(s->t, s->id, 0x8 /* CANCEL */);
			relay_kick(s);
		}
		/* An orderly end of a stream needs nothing: END_STREAM went
		 * both ways already. */
	}
}

/* Both directions have finished cleanly: close what is left. */
static void relay_maybe_close(struct relay *r)
{
	if (!(r->s[0].eof_in && r->s[1].eof_in))
		return;
	for (int i = 0; i < 2; i++)
		if (r->s[i].kind == RELAY_CONN && !r->s[i].gone)
			conn_close(r->s[i].conn, 0, NULL);
}

/* Half-close toward side i (the other side sent FIN). */
static void relay_shut(struct relay *r, int i)
{
	struct relay_side *s = &r->s[i];

	if (s->shut_out || s->gone || !s->up)
		return;
	s->shut_out = 1;
	if (s->kind == RELAY_CONN) {
		conn_shutdown(s->conn);
	} else if (s->kind == RELAY_STREAM) {
		h2tun_shutdown(s->t, s->id);
		relay_kick(s);
	}
	relay_maybe_close(r);
}

/* Move bytes that came from side `from` toward the other side. Returns how
 * many were taken. */
static size_t relay_push(struct relay *r, int from, const uint8_t *p, size_t n)
{
	struct relay_side *to = &r->s[!from];
	size_t take = 0;

	if (!to->up || to->gone || to->shut_out)
		return 0;
	if (to->kind == RELAY_CONN) {
		take = conn_out_space(to->conn);
		if (take > n)
			take = n;
		if (take && conn_write(to->conn, p, take) < 0)
			take = 0;
	} else if (to->kind == RELAY_STREAM) {
		ssize_t w = h2tun_write(to->t, to->id, p, n);
		take = w > 0 ? (size_t)w : 0;
		relay_kick(to);
	}
	if (take < n)
		to->blocked = 1;	/* tell `from` when `to` drains */
	if (from == 0)
		r->st.a_to_b += take;
	else
		r->st.b_to_a += take;
	return take;
}

/* Side i can take more: re-offer what its peer side is holding. */
static void relay_resume(struct relay *r, int i)
{
	struct relay_side *other = &r->s[!i];

	if (!r->s[i].blocked)
		return;
	r->s[i].blocked = 0;
	if (other->gone)
		return;
	if (other->kind == RELAY_CONN) {
		conn_pause(other->conn, 0);
	} else if (other->kind == RELAY_STREAM) {
		h2tun_resume_read(other->t, other->id);
		relay_kick(other);
	}
}

/* --- conn sides ------------------------------------------------------------ */

static void relay_conn_on_ready(struct conn *c)
{
	struct relay *r = conn_udata(c);
	int i = relay_side_of(r, c);

	r->s[i].up = 1;
	if (r->h->on_connected)
		r->h->on_connected(r, i);
	/* Bytes the other side held while we were connecting. */
	if (!r->s[!i].gone && r->s[!i].kind == RELAY_CONN)
		conn_pause(r->s[!i].conn, 0);
	/* A FIN that came while we were connecting (relay_conn_on_eof kept
	 * it): conn tells EOF only after every byte was taken, and none could
	 * be taken before now, so there is nothing to send ahead of it. */
	if (r->s[!i].eof_in)
		relay_shut(r, i);
}

static size_t relay_conn_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct relay *r = conn_udata(c);
	size_t take = relay_push(r, relay_side_of(r, c), p, n);

	/* Keep the rest in the conn, and stop reading, until the other side
	 * can take more (relay_resume, the attach, or its on_ready unpause
	 * us): nothing buffers beyond one input buffer per side. */
	if (take < n)
		conn_pause(c, 1);
	return take;
}

static void relay_conn_on_writable(struct conn *c)
{
	struct relay *r = conn_udata(c);

	relay_resume(r, relay_side_of(r, c));
}

static void relay_conn_on_eof(struct conn *c)
{
	struct relay *r = conn_udata(c);
	int i = relay_side_of(r, c);

	r->s[i].eof_in = 1;
	if (r->end_on_eof && i == 0) {
		/* Its bytes carry their own close (TLS): no half-close for
		 * the peer of B to hold open. */
		relay_side_end(r, 1, 1);
		relay_side_end(r, 0, 0);
		return;
	}
	if (r->s[!i].kind == RELAY_NONE || !r->s[!i].up) {
		/* FIN before the other side exists: carry it once it is up. */
		return;
	}
	relay_shut(r, !i);
}

static void relay_conn_on_close(struct conn *c, int err, const char *why)
{
	struct relay *r = conn_udata(c);
	int i = relay_side_of(r, c);
	struct relay_side *s = &r->s[i];
	int was_up = s->up;

	s->gone = 1;
	if (err) {
		relay_set_why(r, why);
		if (!was_up && s->kind == RELAY_CONN && r->h->on_connect_failed &&
		    !(i == 0 && r->s[1].kind != RELAY_NONE && r->s[1].up)) {
			r->h->on_connect_failed(r, i, err, why);
		}
		r->st.reset = 1;
		relay_side_end(r, !i, 1);
	} else if (!(s->eof_in && r->s[!i].eof_in)) {
		/* Closed without both FINs (idle timeout, shutdown): the
		 * other side cannot complete either. */
		relay_side_end(r, !i, 1);
	}
	relay_maybe_done(r);
}

static const struct conn_handler relay_conn_handler = {
	.on_ready = relay_conn_on_ready,
	.on_data = relay_conn_on_data,
	.on_writable = relay_conn_on_writable,
	.on_eof = relay_conn_on_eof,
	.on_close = relay_conn_on_close,
};

static struct relay *relay_alloc(struct loop *l, const struct relay_hooks *h, void *udata)
{
	struct relay *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->loop = l;
	r->h = h;
	r->udata = udata;
	r->st.start_ms = loop_now_ms(l);
	relay_live++;
	return r;
}

/* The app socket stays idle-bounded: a relay whose both sides went quiet
 * for an hour is dropped (long-lived idle TCP is still allowed that long).
 * App bytes are read in pieces of one DATA frame that fills one TLS
 * record: a 16 KiB read would become a full record plus a 9-byte one. */
static const struct conn_opts relay_conn_opts = {
	.out_cap = 256 * 1024,
	.idle_timeout_ms = 60u * 60 * 1000,
	.recv_max = H2GLUE_DATA_FIT,
};

struct relay *relay_accept(struct loop *l, int fd, const struct relay_hooks *h, void *udata)
{
	struct relay *r = relay_alloc(l, h, udata);

	if (!r) {
		close(fd);
		return NULL;
	}
	r->s[0].kind = RELAY_CONN;
	r->s[0].conn = conn_accept(l, fd, NULL, &relay_conn_handler, &relay_conn_opts, r);
	if (!r->s[0].conn) {
		free(r);
		relay_live--;
		return NULL;
	}
	return r;
}

struct relay *relay_connect(struct loop *l, int fd, const struct sockaddr *sa, socklen_t salen,
			    const struct relay_hooks *h, void *udata)
{
	struct relay *r = relay_alloc(l, h, udata);

	if (!r) {
		close(fd);
		return NULL;
	}
	r->s[0].kind = RELAY_CONN;
	r->s[0].conn = conn_connect_fd(l, fd, sa, salen, NULL, NULL, NULL, &relay_conn_handler,
				       &relay_conn_opts, r);
	if (!r->s[0].conn) {
		free(r);
		relay_live--;
		return NULL;
	}
	return r;
}

int relay_attach_connect(struct relay *r, int fd, const struct sockaddr *sa, socklen_t salen)
{
	struct conn *c;

	c = conn_connect_fd(r->loop, fd, sa, salen, NULL, NULL, NULL, &relay_conn_handler,
			    &relay_conn_opts, r);
	if (!c)
		return -errno;
	r->s[1].kind = RELAY_CONN;
	r->s[1].conn = c;
	return 0;
}

void relay_attach_stream(struct relay *r, struct h2tun *t, int32_t id,
			 void (*kick)(struct h2tun *t))
{
	struct relay_side *s = &r->s[1];

	s->kind = RELAY_STREAM;
	s->t = t;
	s->id = id;
	s->kick = kick;
	s->up = 1;
	if (r->s[0].gone) {
		relay_side_end(r, 1, 1);
		return;
	}
	/* The app may have sent bytes, or even FIN, while the stream opened. */
	conn_pause(r->s[0].conn, 0);
	if (r->s[0].eof_in)
		relay_shut(r, 1);
}

/* --- stream side (always side 1) ------------------------------------------- */

size_t relay_stream_data(struct relay *r, const uint8_t *p, size_t n)
{
	size_t take = relay_push(r, 1, p, n);

	if (take)
		h2tun_consume(r->s[1].t, r->s[1].id, take);
	relay_kick(&r->s[1]);
	return take;
}

void relay_stream_eof(struct relay *r)
{
	r->s[1].eof_in = 1;
	relay_shut(r, 0);
}

void relay_stream_writable(struct relay *r)
{
	relay_resume(r, 1);
}

void relay_stream_closed(struct relay *r, enum h2tun_end how, uint32_t h2_error)
{
	struct relay_side *s = &r->s[1];
	char why[96];

	s->gone = 1;
	if (how != H2TUN_END_CLOSED) {
		snprintf(why, sizeof(why), "%s (HTTP/2 error %u)",
			 how == H2TUN_END_RESET ? "stream reset by peer" :
			 how == H2TUN_END_REFUSED ? "stream refused" : "tunnel failed", h2_error);
		relay_set_why(r, why);
		r->st.reset = 1;
		relay_side_end(r, 0, 1);
	} else if (!r->s[0].gone) {
		/* Both END_STREAMs passed; the app side closes after its
		 * queued bytes are out. */
		r->s[1].eof_in = 1;
		r->s[0].eof_in = 1;
		relay_maybe_close(r);
	}
	relay_maybe_done(r);
}

void relay_end_on_eof(struct relay *r)
{
	r->end_on_eof = 1;
}

void relay_reset(struct relay *r, const char *why)
{
	relay_set_why(r, why);
	r->st.reset = 1;
	relay_side_end(r, 0, 1);
	relay_side_end(r, 1, 1);
}

struct conn *relay_conn(const struct relay *r, int side)
{
	return r->s[side].kind == RELAY_CONN ? r->s[side].conn : NULL;
}

void *relay_udata(const struct relay *r)
{
	return r->udata;
}
