/* SPDX-License-Identifier: Apache-2.0 */
/* Stream connections on the io_uring loop: one socket, optionally TLS (the
 * memory-buffer struct tls), bounded input and output, orderly close with a
 * time bound, reset on abort, and a deferred free once no operation that
 * points at the conn is in flight.
 *
 * Contract with the upper layer, beyond conn.h:
 * - Every conn gets on_ready before any on_data (accepted plain TCP conns
 *   too, from a task right after conn_accept returns), unless it closes
 *   first; every conn gets on_close exactly once, always from a task, never
 *   from inside a conn_* call.
 * - on_data is called again with the remainder while it consumes bytes.
 *   When it keeps bytes and the input buffer (16 KiB) is full, reading
 *   stops until conn_pause(c, 0), which re-offers what is kept.
 * - conn_close: queued output is sent, then close_notify (TLS), then FIN;
 *   the conn then waits for the peer's FIN (discarding input) so the close
 *   is not turned into a reset; 5 s bound on the whole. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/listener.h>
#include <weft/loop.h>
#include <weft/sockaddr.h>
#include <weft/tls.h>

/* Socket input per recv, and TLS plaintext kept for the upper layer. 16 KiB
 * is one TLS record and HAProxy's default buffer: enough for line rate on a
 * single stream while an idle connection stays small. */
#define CONN_IN_CAP (16u * 1024)
#define CONN_PT_CAP (16u * 1024)
/* Output is queued in chunks of this size (bigger writes get bigger ones). */
#define CONN_CHUNK_MIN (16u * 1024)
/* Plaintext fed to tls_write at once, so its output buffer stays bounded. */
#define CONN_TLS_WRITE_MAX (16u * 1024)
#define CONN_OUT_CAP_DEFAULT (256u * 1024)
#define CONN_HANDSHAKE_MS_DEFAULT 10000u
#define CONN_CLOSE_MS 5000u

enum conn_state {
	CONN_CONNECTING = 1,	/* TCP connect in flight (client) */
	CONN_HANDSHAKE,		/* TLS handshake in progress */
	CONN_OPEN,		/* ready: data flows */
	CONN_CLOSING,		/* conn_close(): flushing queued output */
	CONN_LINGER,		/* SHUT_WR sent; waiting for the peer's FIN */
	CONN_CLOSED,		/* fd closed; on_close queued or done */
};

#define CONN_F_RECVING     (1u << 0)	/* a recv is in flight */
#define CONN_F_SENDING     (1u << 1)	/* a send is in flight */
#define CONN_F_PAUSED      (1u << 2)	/* upper layer asked to stop reading */
#define CONN_F_EOF         (1u << 3)	/* peer FIN or close_notify seen */
#define CONN_F_EOF_TOLD    (1u << 4)	/* on_eof delivered */
#define CONN_F_BLOCKED     (1u << 5)	/* writer hit the cap: owe on_writable */
#define CONN_F_TLS_DRAINED (1u << 6)	/* last tls_read said -EAGAIN */
#define CONN_F_READY_TASK  (1u << 7)	/* on_ready owed from the task */
#define CONN_F_PUMP_TASK   (1u << 8)	/* re-offer kept input from the task */
#define CONN_F_CLOSE_TASK  (1u << 9)	/* on_close owed from the task */
#define CONN_F_CLOSE_TOLD  (1u << 10)	/* on_close delivered */
#define CONN_F_SHUT_WANT   (1u << 11)	/* conn_shutdown: FIN once output drains */
#define CONN_F_SHUT_DONE   (1u << 12)	/* SHUT_WR done: no more writes */
#define CONN_F_RECV_POOLED (1u << 13)	/* the recv in flight takes a pool buffer */
#define CONN_F_POOL_EMPTY  (1u << 14)	/* the pool ran dry: next recv into `in` */
#define CONN_F_START_TASK  (1u << 15)	/* conn_start_fd: the connect is done already */

struct conn_chunk {
	struct conn_chunk *next;
	size_t off;		/* first unsent byte */
	size_t len;		/* bytes filled */
	size_t cap;
	uint8_t data[];
};

struct conn_queue {
	struct conn_chunk *head;
	struct conn_chunk *tail;
};

struct conn {
	struct loop *loop;
	int fd;
	enum conn_state state;
	unsigned flags;
	unsigned nops;			/* operations in flight that point here */
	struct tls *tls;
	const struct conn_handler *h;
	void *udata;
	size_t out_cap;
	size_t recv_max;		/* plain TCP: bytes per recv */
	uint32_t hs_ms;
	uint32_t idle_ms;
	struct listener_pending *pending;	/* counts us until the handshake is over */
	uint64_t active_ms;		/* last I/O, for the idle timer */

	struct loop_op recv_op;
	struct loop_op send_op;
	struct loop_op connect_op;
	struct loop_timer hs_timer;
	struct loop_timer idle_timer;
	struct loop_timer close_timer;
	struct loop_task task;

	/* Own recv buffer: plaintext (TCP) or ciphertext (TLS). With the
	 * loop's pool it exists only while plaintext is kept or the pool ran
	 * dry; `fresh` is the pool buffer being offered meanwhile. */
	uint8_t *in;
	size_t in_len;
	const uint8_t *fresh;
	size_t fresh_len;
	size_t recv_at;			/* offset in `in` the recv in flight fills */
	uint8_t *pt;			/* TLS plaintext kept for on_data */
	size_t pt_len;

	struct conn_queue out;		/* bytes for the socket */
	struct conn_queue early;	/* TLS plaintext written before the handshake */
	size_t out_bytes;		/* both queues, unsent */

	int err;
	char why[160];
	struct sockaddr_storage peer;
	socklen_t peer_len;
	char peer_str[64];
};

static unsigned long conn_live;

#define conn_of(ptr, member) ((struct conn *)((char *)(ptr) - offsetof(struct conn, member)))

static void conn_on_recv(struct loop_op *op, int res, unsigned flags);
static void conn_on_send(struct loop_op *op, int res, unsigned flags);
static void conn_on_connect(struct loop_op *op, int res, unsigned flags);
static void conn_on_task(struct loop_task *t);
static void conn_on_hs_timer(struct loop_timer *t);
static void conn_on_idle_timer(struct loop_timer *t);
static void conn_on_close_timer(struct loop_timer *t);
static void conn_finish(struct conn *c, int abort);
static void conn_close_step(struct conn *c);
static void conn_recv_want(struct conn *c);
static void conn_shutdown_step(struct conn *c);

unsigned long conn_live_count(void)
{
	return __atomic_load_n(&conn_live, __ATOMIC_RELAXED);
}

/* --- output queue --------------------------------------------------------- */

static void conn_queue_free(struct conn_queue *q)
{
	struct conn_chunk *ch = q->head;

	while (ch) {
		struct conn_chunk *next = ch->next;

		free(ch);
		ch = next;
	}
	q->head = q->tail = NULL;
}

/* Copy n bytes to the tail of q; 0 or -ENOMEM (nothing partial is lost:
 * what was appended stays queued, the caller fails the connection). */
static int conn_queue_put(struct conn_queue *q, const uint8_t *p, size_t n)
{
	while (n) {
		struct conn_chunk *ch = q->tail;
		size_t room, k;

		if (!ch || ch->len == ch->cap) {
			size_t cap = n > CONN_CHUNK_MIN ? n : CONN_CHUNK_MIN;

			ch = malloc(sizeof(*ch) + cap);
			if (!ch)
				return -ENOMEM;
			ch->next = NULL;
			ch->off = ch->len = 0;
			ch->cap = cap;
			if (q->tail)
				q->tail->next = ch;
			else
				q->head = ch;
			q->tail = ch;
		}
		room = ch->cap - ch->len;
		k = n < room ? n : room;
		memcpy(ch->data + ch->len, p, k);
		ch->len += k;
		p += k;
		n -= k;
	}
	return 0;
}

/* Drop n sent bytes from the head. */
static void conn_queue_consume(struct conn_queue *q, size_t n)
{
	while (n && q->head) {
		struct conn_chunk *ch = q->head;
		size_t k = ch->len - ch->off;

		if (n < k) {
			ch->off += n;
			return;
		}
		n -= k;
		q->head = ch->next;
		if (!q->head)
			q->tail = NULL;
		free(ch);
	}
}

/* --- helpers -------------------------------------------------------------- */

static void conn_why_set(struct conn *c, int err, const char *why)
{
	if (c->why[0])
		return;		/* the first reason is the real one */
	c->err = err;
	snprintf(c->why, sizeof(c->why), "%s", why && why[0] ? why :
		 err ? strerror(-err) : "closed");
}

static void conn_peer_fmt(struct conn *c)
{
	sockaddr_str(&c->peer, c->peer_str, sizeof(c->peer_str));
}

static void conn_task_want(struct conn *c, unsigned flag)
{
	c->flags |= flag;
	loop_task_queue(c->loop, &c->task);
}

/* Free once closed, told, and no operation points here. Never called from a
 * completion: the last completion queues the task instead. */
static void conn_free_maybe(struct conn *c)
{
	if (c->state != CONN_CLOSED || !(c->flags & CONN_F_CLOSE_TOLD) || c->nops)
		return;
	if (c->task.queued)
		return;		/* the queued task will come back here */
	tls_free(c->tls);
	conn_queue_free(&c->out);
	conn_queue_free(&c->early);
	free(c->in);
	free(c->pt);
	free(c);
	__atomic_fetch_sub(&conn_live, 1, __ATOMIC_RELAXED);
}

/* A completion finished: if it was the last one of a closed conn, free it
 * later from a task. */
static void conn_op_done(struct conn *c)
{
	c->nops--;
	if (c->state == CONN_CLOSED && !c->nops)
		loop_task_queue(c->loop, &c->task);
}

static void conn_touch(struct conn *c)
{
	c->active_ms = loop_now_ms(c->loop);
}

static int conn_hs_done(const struct conn *c)
{
	return c->state >= CONN_OPEN;
}

/* --- send path ------------------------------------------------------------ */

static void conn_send_kick(struct conn *c)
{
	struct conn_chunk *ch = c->out.head;
	int ret;

	if (c->fd < 0 || (c->flags & CONN_F_SENDING) || !ch ||
	    c->state == CONN_CONNECTING || c->state == CONN_CLOSED)
		return;
	ret = loop_send(c->loop, &c->send_op, c->fd, ch->data + ch->off, ch->len - ch->off);
	if (ret < 0) {
		conn_why_set(c, ret, "send: no submission queue entry");
		conn_finish(c, 1);
		return;
	}
	c->flags |= CONN_F_SENDING;
	c->nops++;
}

/* Move the TLS layer's pending ciphertext to the output queue and send.
 * Returns 0, or < 0 when the connection was failed (closed) meanwhile. */
static int conn_tls_flush(struct conn *c)
{
	const uint8_t *p;
	size_t n;

	while ((n = tls_out_peek(c->tls, &p)) > 0) {
		/* Copied, not sent in place: a later tls_write may move the
		 * TLS layer's buffer while our send is in flight. */
		if (conn_queue_put(&c->out, p, n) < 0) {
			conn_why_set(c, -ENOMEM, "out of memory");
			conn_finish(c, 1);
			return -ENOMEM;
		}
		tls_out_consume(c->tls, n);
		c->out_bytes += n;
	}
	/* TLS-made output (alerts, KeyUpdate) counts against the cap too, so
	 * a writer that sees conn_out_space() == 0 is always owed on_writable. */
	if (c->out_bytes >= c->out_cap)
		c->flags |= CONN_F_BLOCKED;
	conn_send_kick(c);
	return c->state == CONN_CLOSED ? -EPIPE : 0;
}

/* Encrypt plaintext into the output queue in bounded pieces. */
static int conn_tls_put(struct conn *c, const uint8_t *p, size_t n)
{
	while (n) {
		size_t k = n < CONN_TLS_WRITE_MAX ? n : CONN_TLS_WRITE_MAX;
		ssize_t w = tls_write(c->tls, p, k);

		int ret;

		if (w <= 0) {
			conn_why_set(c, -EPROTO, tls_error(c->tls));
			conn_finish(c, 1);
			return -EPROTO;
		}
		ret = conn_tls_flush(c);
		if (ret < 0)
			return ret;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

int conn_write(struct conn *c, const void *p, size_t n)
{
	int ret;

	if (c->state >= CONN_CLOSING || (c->flags & CONN_F_SHUT_WANT))
		return -EPIPE;
	if (n == 0)
		return 0;
	if (c->out_bytes + n > 4 * c->out_cap) {
		c->flags |= CONN_F_BLOCKED;
		return -ENOBUFS;
	}
	if (c->tls && !conn_hs_done(c)) {
		/* Kept as plaintext until the handshake is done; the peer
		 * is not verified yet, so nothing may be encrypted to it. */
		ret = conn_queue_put(&c->early, p, n);
		if (ret < 0)
			goto fail_nomem;
		c->out_bytes += n;
	} else if (c->tls) {
		ret = conn_tls_put(c, p, n);
		if (ret < 0)
			return ret;
	} else {
		ret = conn_queue_put(&c->out, p, n);
		if (ret < 0)
			goto fail_nomem;
		c->out_bytes += n;
		conn_send_kick(c);
	}
	if (c->out_bytes >= c->out_cap)
		c->flags |= CONN_F_BLOCKED;
	return c->state == CONN_CLOSED ? -EPIPE : 0;

fail_nomem:
	conn_why_set(c, -ENOMEM, "out of memory");
	conn_finish(c, 1);
	return -ENOMEM;
}

size_t conn_out_space(const struct conn *c)
{
	if (c->state >= CONN_CLOSING || c->out_bytes >= c->out_cap)
		return 0;
	return c->out_cap - c->out_bytes;
}

static void conn_on_send(struct loop_op *op, int res, unsigned flags)
{
	struct conn *c = conn_of(op, send_op);

	(void)flags;
	c->flags &= ~CONN_F_SENDING;
	if (c->state == CONN_CLOSED) {
		conn_op_done(c);
		return;
	}
	c->nops--;	/* the conn is live: no free can be due here */
	if (res <= 0) {
		char why[96];

		if (res == 0)
			res = -EPIPE;
		snprintf(why, sizeof(why), "send: %s", strerror(-res));
		conn_why_set(c, res, why);
		conn_finish(c, 1);
		return;
	}
	conn_queue_consume(&c->out, (size_t)res);
	c->out_bytes -= (size_t)res;
	conn_touch(c);
	if ((c->flags & CONN_F_BLOCKED) && c->out_bytes < c->out_cap / 2 &&
	    c->state == CONN_OPEN) {
		c->flags &= ~CONN_F_BLOCKED;
		if (c->h->on_writable)
			c->h->on_writable(c);
		if (c->state == CONN_CLOSED)
			return;
	}
	conn_send_kick(c);
	if (c->state == CONN_CLOSING)
		conn_close_step(c);
	else
		conn_shutdown_step(c);
}

/* --- receive path --------------------------------------------------------- */

/* Input goes to a pool buffer when nothing is kept; to the conn's own
 * buffer (made on demand) when plaintext is kept, so new bytes land after
 * it, or when the pool was found empty. */
static int conn_in_own(struct conn *c)
{
	if (c->in)
		return 0;
	c->in = malloc(CONN_IN_CAP);
	return c->in ? 0 : -ENOMEM;
}

/* The TLS plaintext buffer, made when there is ciphertext to decrypt. */
static int conn_pt_own(struct conn *c)
{
	if (c->pt)
		return 0;
	c->pt = malloc(CONN_PT_CAP);
	return c->pt ? 0 : -ENOMEM;
}

static void conn_recv_want(struct conn *c)
{
	uint8_t *buf;
	size_t len;
	int ret;

	if (c->fd < 0 || (c->flags & CONN_F_RECVING))
		return;
	switch (c->state) {
	case CONN_LINGER:
		/* Discard what still comes until the peer's FIN. */
		len = CONN_IN_CAP;
		break;
	case CONN_HANDSHAKE:
		if (c->flags & CONN_F_EOF)
			return;
		len = CONN_IN_CAP;
		break;
	case CONN_OPEN:
		if (c->flags & (CONN_F_EOF | CONN_F_PAUSED))
			return;
		if (c->tls) {
			/* Only read ciphertext when the plaintext already
			 * inside the TLS layer has been taken out: that keeps
			 * its input buffer bounded by one recv. */
			if (!(c->flags & CONN_F_TLS_DRAINED) || c->pt_len == CONN_PT_CAP)
				return;
			len = CONN_IN_CAP;
		} else {
			if (c->in_len == CONN_IN_CAP || c->fresh_len)
				return;		/* full: wait for conn_pause(c, 0) */
			len = CONN_IN_CAP - c->in_len;
			if (len > c->recv_max)
				len = c->recv_max;
		}
		break;
	default:
		return;
	}
	c->recv_at = c->in_len;
	if (c->in_len == 0 && !(c->flags & CONN_F_POOL_EMPTY) && loop_pool_size(c->loop) >= len) {
		/* Nothing kept and nothing can land in `in` now: give it
		 * back while the conn waits. */
		free(c->in);
		c->in = NULL;
		ret = loop_recv_pooled(c->loop, &c->recv_op, c->fd, len);
		c->flags |= CONN_F_RECV_POOLED;
	} else {
		c->flags &= ~(CONN_F_RECV_POOLED | CONN_F_POOL_EMPTY);
		ret = conn_in_own(c);
		buf = c->in + c->in_len;
		if (ret == 0)
			ret = loop_recv(c->loop, &c->recv_op, c->fd, buf, len);
	}
	if (ret < 0) {
		conn_why_set(c, ret, ret == -ENOMEM ? "out of memory" :
			     "recv: no submission queue entry");
		conn_finish(c, 1);
		return;
	}
	c->flags |= CONN_F_RECVING;
	c->nops++;
}

static void conn_eof_tell(struct conn *c)
{
	c->flags |= CONN_F_EOF_TOLD;
	if (c->h->on_eof)
		c->h->on_eof(c);
	else
		conn_close(c, 0, "peer closed");
}

/* Offer kept and new input to on_data until it stops taking bytes, then
 * tell EOF if it came, then read more if there is room. */
static void conn_pump(struct conn *c)
{
	for (;;) {
		uint8_t *buf;
		size_t *len, n;

		if (c->state != CONN_OPEN || (c->flags & (CONN_F_PAUSED | CONN_F_READY_TASK)))
			return;
		if (c->tls) {
			if (!(c->flags & CONN_F_TLS_DRAINED) && conn_pt_own(c) < 0) {
				conn_why_set(c, -ENOMEM, "out of memory");
				conn_finish(c, 1);
				return;
			}
			while (!(c->flags & CONN_F_TLS_DRAINED) && c->pt_len < CONN_PT_CAP) {
				ssize_t r = tls_read(c->tls, c->pt + c->pt_len,
						     CONN_PT_CAP - c->pt_len);

				if (r > 0) {
					c->pt_len += (size_t)r;
				} else if (r == 0) {
					c->flags |= CONN_F_EOF | CONN_F_TLS_DRAINED;
				} else if (r == -EAGAIN) {
					c->flags |= CONN_F_TLS_DRAINED;
				} else {
					conn_why_set(c, -EPROTO, tls_error(c->tls));
					conn_finish(c, 1);
					return;
				}
			}
			/* Post-handshake messages (tickets, KeyUpdate) may
			 * have produced output. */
			if (conn_tls_flush(c) < 0)
				return;
			buf = c->pt;
			len = &c->pt_len;
			if (!buf)
				break;		/* nothing decrypted, nothing kept */
		} else if (c->fresh_len) {
			/* A pool buffer, offered in place; what is left of it
			 * moves to `in` once conn_on_recv is done with it. */
			buf = (uint8_t *)c->fresh;
			len = &c->fresh_len;
		} else {
			buf = c->in;
			len = &c->in_len;
		}
		if (*len == 0)
			break;
		n = c->h->on_data ? c->h->on_data(c, buf, *len) : *len;
		if (c->state != CONN_OPEN)
			return;
		if (n > *len)
			n = *len;
		if (n == 0)
			break;
		if (buf == c->fresh)
			c->fresh += n;
		else
			memmove(buf, buf + n, *len - n);
		*len -= n;
	}
	/* FIN comes after the data: tell it only once on_data has taken
	 * every kept byte, or a consumer that was not ready yet (a relay whose
	 * other side is still opening) would forward the FIN first and lose
	 * the bytes. */
	if ((c->flags & (CONN_F_EOF | CONN_F_EOF_TOLD | CONN_F_PAUSED)) == CONN_F_EOF &&
	    (c->tls ? c->pt_len : c->in_len + c->fresh_len) == 0) {
		conn_eof_tell(c);
		if (c->state != CONN_OPEN)
			return;
	}
	/* All plaintext taken: an idle TLS conn holds no plaintext buffer. */
	if (c->pt && !c->pt_len) {
		free(c->pt);
		c->pt = NULL;
	}
	conn_recv_want(c);
}

/* The connection no longer counts as pending for its source address. */
static void conn_pending_release(struct conn *c)
{
	if (!c->pending)
		return;
	listener_pending_drop(c->pending, (struct sockaddr *)&c->peer);
	c->pending = NULL;
}

/* The handshake finished: the peer is verified; release early plaintext. */
static void conn_ready(struct conn *c)
{
	struct conn_chunk *ch;

	loop_timer_disarm(c->loop, &c->hs_timer);
	conn_pending_release(c);
	c->state = CONN_OPEN;
	if (c->tls) {
		ch = c->early.head;
		c->early.head = c->early.tail = NULL;
		while (ch) {
			struct conn_chunk *next = ch->next;
			size_t n = ch->len - ch->off;

			c->out_bytes -= n;
			/* After a failure conn_finish ran: drop the rest. */
			if (c->state == CONN_OPEN)
				conn_tls_put(c, ch->data + ch->off, n);
			free(ch);
			ch = next;
		}
		if (c->state != CONN_OPEN)
			return;
	} else {
		conn_send_kick(c);
	}
	if (c->h->on_ready)
		c->h->on_ready(c);
}

/* What on_data left of a pool buffer moves to the conn's own buffer (the
 * pool buffer goes back when the completion returns), then reading goes on
 * behind it. */
static void conn_keep_fresh(struct conn *c)
{
	size_t n = c->fresh_len;

	c->fresh_len = 0;
	if (!n || c->state != CONN_OPEN)
		return;
	if (conn_in_own(c) < 0) {
		conn_why_set(c, -ENOMEM, "out of memory");
		conn_finish(c, 1);
		return;
	}
	memcpy(c->in, c->fresh, n);	/* in_len was 0: the recv went to the pool */
	c->in_len = n;
	conn_recv_want(c);
}

/* res bytes arrived at data: a pool buffer, or the conn's own at recv_at. */
static void conn_recv_done(struct conn *c, int res, const uint8_t *data)
{
	char why[96];
	int ret;

	c->flags &= ~CONN_F_RECVING;
	if (c->state == CONN_CLOSED) {
		conn_op_done(c);
		return;
	}
	c->nops--;
	if (res == -ENOBUFS && (c->flags & CONN_F_RECV_POOLED)) {
		/* Every pool buffer is taken: this conn reads into its own. */
		c->flags |= CONN_F_POOL_EMPTY;
		conn_recv_want(c);
		return;
	}
	if (c->state == CONN_LINGER) {
		if (res > 0) {
			conn_recv_want(c);
			return;
		}
		conn_finish(c, 0);
		return;
	}
	if (c->state == CONN_CLOSING) {
		/* Input after conn_close() is dropped; FIN lets the close
		 * skip the linger. Errors show up on the send side. */
		if (res == 0)
			c->flags |= CONN_F_EOF;
		return;
	}
	if (res < 0) {
		snprintf(why, sizeof(why), "recv: %s", strerror(-res));
		conn_why_set(c, res, why);
		conn_finish(c, 1);
		return;
	}
	conn_touch(c);
	if (res == 0) {
		c->flags |= CONN_F_EOF;
		if (c->state == CONN_HANDSHAKE) {
			conn_close(c, -ECONNRESET, "peer closed during the TLS handshake");
			return;
		}
		/* Over TLS a FIN without close_notify is a truncation; we
		 * still treat it as EOF, as the tunnel protocol has its own
		 * framing to notice a cut stream. */
		conn_pump(c);
		return;
	}
	if (!c->tls && (c->flags & CONN_F_RECV_POOLED)) {
		c->fresh = data;
		c->fresh_len = (size_t)res;
		conn_pump(c);
		conn_keep_fresh(c);
		return;
	}
	if (!c->tls) {
		/* Kept input taken while the recv was in flight: close the
		 * gap (recv_at >= in_len; memmove tolerates the overlap). */
		if (c->recv_at != c->in_len)
			memmove(c->in + c->in_len, c->in + c->recv_at, (size_t)res);
		c->in_len += (size_t)res;
		conn_pump(c);
		return;
	}
	ret = tls_feed(c->tls, data, (size_t)res);
	if (ret < 0) {
		conn_why_set(c, -EPROTO, "TLS input buffer overflow");
		conn_finish(c, 1);
		return;
	}
	if (c->state == CONN_HANDSHAKE) {
		ret = tls_handshake(c->tls);
		if (conn_tls_flush(c) < 0)
			return;
		if (ret == -EAGAIN) {
			conn_recv_want(c);
			return;
		}
		if (ret < 0) {
			/* conn_close sends the alert the TLS layer queued. */
			conn_close(c, -EPROTO, tls_error(c->tls));
			return;
		}
		conn_ready(c);
	}
	c->flags &= ~CONN_F_TLS_DRAINED;
	conn_pump(c);
}

static void conn_on_recv(struct loop_op *op, int res, unsigned flags)
{
	struct conn *c = conn_of(op, recv_op);
	struct loop *l = c->loop;	/* c may be closed by the time we put */
	const uint8_t *pooled = loop_pool_buf(l, flags);

	conn_recv_done(c, res, pooled ? pooled : c->in ? c->in + c->recv_at : NULL);
	loop_pool_put(l, flags);
}

void conn_pause(struct conn *c, int paused)
{
	if (paused) {
		c->flags |= CONN_F_PAUSED;
		return;
	}
	c->flags &= ~CONN_F_PAUSED;
	/* Re-offer from a task, not from inside the caller's callback. */
	if (c->state == CONN_OPEN)
		conn_task_want(c, CONN_F_PUMP_TASK);
}

/* --- connect -------------------------------------------------------------- */

static void conn_connected(struct conn *c);

static void conn_on_connect(struct loop_op *op, int res, unsigned flags)
{
	struct conn *c = conn_of(op, connect_op);
	char why[128];

	(void)flags;
	if (c->state == CONN_CLOSED) {
		conn_op_done(c);
		return;
	}
	c->nops--;
	if (res < 0) {
		snprintf(why, sizeof(why), "connect to %s: %s", c->peer_str, strerror(-res));
		conn_why_set(c, res, why);
		conn_finish(c, 0);
		return;
	}
	conn_connected(c);
}

/* TCP is up (or the socket came connected): plain conns are ready, TLS
 * clients send their ClientHello. */
static void conn_connected(struct conn *c)
{
	int ret;

	conn_touch(c);
	if (!c->tls) {
		conn_ready(c);
		if (c->state == CONN_OPEN)
			conn_pump(c);
		return;
	}
	c->state = CONN_HANDSHAKE;
	ret = tls_handshake(c->tls);	/* writes the ClientHello */
	if (conn_tls_flush(c) < 0)
		return;
	if (ret < 0 && ret != -EAGAIN) {
		conn_close(c, -EPROTO, tls_error(c->tls));
		return;
	}
	conn_recv_want(c);
}

/* --- timers and task ------------------------------------------------------ */

static void conn_on_hs_timer(struct loop_timer *t)
{
	struct conn *c = conn_of(t, hs_timer);

	if (c->state == CONN_CONNECTING)
		conn_close(c, -ETIMEDOUT, "connect timed out");
	else if (c->state == CONN_HANDSHAKE)
		conn_close(c, -ETIMEDOUT, "TLS handshake timed out");
}

/* Activity only stamps active_ms; the timer re-arms itself for the rest of
 * the period instead of moving in the heap on every read and write. */
static void conn_on_idle_timer(struct loop_timer *t)
{
	struct conn *c = conn_of(t, idle_timer);
	uint64_t now = loop_now_ms(c->loop), idle = now - c->active_ms;

	if (c->state >= CONN_CLOSING)
		return;
	if (idle >= c->idle_ms) {
		conn_close(c, -ETIMEDOUT, "idle timeout");
		return;
	}
	loop_timer_arm(c->loop, &c->idle_timer, c->idle_ms - idle);
}

static void conn_on_close_timer(struct loop_timer *t)
{
	struct conn *c = conn_of(t, close_timer);

	/* Output that could not be flushed in time is dropped: reset. A
	 * peer that just never sent its FIN gets a plain close. */
	conn_why_set(c, -ETIMEDOUT, "close timed out");
	conn_finish(c, c->state == CONN_CLOSING);
}

static void conn_on_task(struct loop_task *t)
{
	struct conn *c = conn_of(t, task);

	if (c->flags & CONN_F_READY_TASK) {
		c->flags &= ~CONN_F_READY_TASK;
		if (c->state == CONN_OPEN && c->h->on_ready)
			c->h->on_ready(c);
		if (c->state == CONN_OPEN)
			conn_pump(c);
	}
	if (c->flags & CONN_F_START_TASK) {
		c->flags &= ~CONN_F_START_TASK;
		if (c->state == CONN_CONNECTING)
			conn_connected(c);
	}
	if (c->flags & CONN_F_PUMP_TASK) {
		c->flags &= ~CONN_F_PUMP_TASK;
		if (c->state == CONN_OPEN)
			conn_pump(c);
	}
	if (c->flags & CONN_F_CLOSE_TASK) {
		c->flags &= ~CONN_F_CLOSE_TASK;
		c->flags |= CONN_F_CLOSE_TOLD;
		if (c->h->on_close)
			c->h->on_close(c, c->err, c->why);
	}
	conn_free_maybe(c);
}

/* --- close ---------------------------------------------------------------- */

/* Close the socket now. abort: SO_LINGER 0, so the peer sees a reset.
 * on_close follows from the task; memory goes when the last op completes. */
static void conn_finish(struct conn *c, int abort)
{
	if (c->state == CONN_CLOSED)
		return;
	c->state = CONN_CLOSED;
	conn_pending_release(c);
	loop_timer_disarm(c->loop, &c->hs_timer);
	loop_timer_disarm(c->loop, &c->idle_timer);
	loop_timer_disarm(c->loop, &c->close_timer);
	if (c->fd >= 0) {
		if (abort) {
			struct linger lg = { .l_onoff = 1, .l_linger = 0 };

			setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		}
		/* Cancel first: an in-flight recv holds a file reference,
		 * and a close alone would leave the socket open under it.
		 * Both are processed in order in the same submission. */
		if (loop_cancel_fd(c->loop, NULL, c->fd) < 0 ||
		    loop_close(c->loop, NULL, c->fd) < 0) {
			/* No SQE: wake the in-flight recv by hand (SHUT_RD
			 * sends nothing, so an abort still resets). */
			shutdown(c->fd, abort ? SHUT_RD : SHUT_RDWR);
			close(c->fd);
		}
		c->fd = -1;
	}
	if (!c->why[0])
		conn_why_set(c, 0, "closed");
	conn_task_want(c, CONN_F_CLOSE_TASK);
}

static void conn_close_step(struct conn *c)
{
	if (c->state != CONN_CLOSING)
		return;
	if ((c->flags & CONN_F_SENDING) || c->out.head) {
		conn_send_kick(c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	if (c->flags & CONN_F_EOF) {
		conn_finish(c, 0);
		return;
	}
	c->state = CONN_LINGER;
	conn_recv_want(c);
}

/* Half-close: once queued output is sent, FIN (plain TCP) — reading goes
 * on. TLS has no half-close that peers honour, so there it is a close. */
static void conn_shutdown_step(struct conn *c)
{
	if (!(c->flags & CONN_F_SHUT_WANT) || (c->flags & CONN_F_SHUT_DONE) ||
	    c->state != CONN_OPEN || (c->flags & CONN_F_SENDING) || c->out.head)
		return;
	c->flags |= CONN_F_SHUT_DONE;
	shutdown(c->fd, SHUT_WR);
}

void conn_shutdown(struct conn *c)
{
	if (c->tls) {
		conn_close(c, 0, "half-closed");
		return;
	}
	if (c->state >= CONN_CLOSING || (c->flags & CONN_F_SHUT_WANT))
		return;
	c->flags |= CONN_F_SHUT_WANT;
	if (c->state == CONN_OPEN)
		conn_shutdown_step(c);
}

void conn_close(struct conn *c, int err, const char *why)
{
	if (c->state >= CONN_CLOSING)
		return;
	conn_why_set(c, err, why);
	if (c->state == CONN_CONNECTING) {
		conn_finish(c, 0);
		return;
	}
	loop_timer_disarm(c->loop, &c->hs_timer);
	loop_timer_disarm(c->loop, &c->idle_timer);
	loop_timer_arm(c->loop, &c->close_timer, CONN_CLOSE_MS);
	conn_queue_free(&c->early);
	if (c->tls && c->state == CONN_OPEN) {
		tls_shutdown(c->tls);
		c->state = CONN_CLOSING;
		if (conn_tls_flush(c) < 0)
			return;
	}
	c->state = CONN_CLOSING;
	conn_close_step(c);
}

void conn_abort(struct conn *c, int err, const char *why)
{
	if (c->state == CONN_CLOSED)
		return;
	conn_why_set(c, err, why);
	conn_finish(c, 1);
}

/* --- construction --------------------------------------------------------- */

static struct conn *conn_alloc(struct loop *l, const struct conn_handler *h,
			       const struct conn_opts *o, void *udata)
{
	struct conn *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	/* The recv buffer comes on demand (conn_in_own): none while the
	 * loop's pool serves the reads; so does TLS plaintext (conn_pt_own). */
	c->loop = l;
	c->fd = -1;
	c->h = h;
	c->udata = udata;
	c->out_cap = o && o->out_cap ? o->out_cap : CONN_OUT_CAP_DEFAULT;
	c->recv_max = o && o->recv_max && o->recv_max < CONN_IN_CAP ? o->recv_max : CONN_IN_CAP;
	c->hs_ms = o && o->handshake_timeout_ms ? o->handshake_timeout_ms :
		   CONN_HANDSHAKE_MS_DEFAULT;
	c->idle_ms = o ? o->idle_timeout_ms : 0;
	c->recv_op.cb = conn_on_recv;
	c->send_op.cb = conn_on_send;
	c->connect_op.cb = conn_on_connect;
	c->hs_timer.cb = conn_on_hs_timer;
	c->idle_timer.cb = conn_on_idle_timer;
	c->close_timer.cb = conn_on_close_timer;
	c->task.cb = conn_on_task;
	c->active_ms = loop_now_ms(l);
	__atomic_fetch_add(&conn_live, 1, __ATOMIC_RELAXED);
	return c;
}

/* Undo conn_alloc before any operation was queued. */
static void conn_alloc_undo(struct conn *c)
{
	tls_free(c->tls);
	free(c->in);
	free(c->pt);
	free(c);
	__atomic_fetch_sub(&conn_live, 1, __ATOMIC_RELAXED);
}

static void conn_nodelay(int fd)
{
	int one = 1;

	/* Fails harmlessly on non-TCP sockets. Latency matters more than
	 * segment count for a proxy: the app already chose its writes. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* Takes ownership of fd. Plain TCP: on_ready runs from a task right after
 * this returns, so every conn sees on_ready before data. */
struct conn *conn_accept(struct loop *l, int fd, struct tls_ctx *tls_ctx,
			 const struct conn_handler *h, const struct conn_opts *o, void *udata)
{
	struct conn *c = conn_alloc(l, h, o, udata);
	int err = ENOMEM;

	if (!c)
		goto fail_alloc;
	c->peer_len = sizeof(c->peer);
	if (getpeername(fd, (struct sockaddr *)&c->peer, &c->peer_len) < 0)
		c->peer_len = 0;
	if (o && o->pending) {
		/* Checked before any TLS state exists: a refused peer costs
		 * a getpeername and a close. */
		int rc = c->peer_len ? listener_pending_take(o->pending,
							     (struct sockaddr *)&c->peer) : -ENOTCONN;
		if (rc) {
			err = -rc;
			goto fail_tls;
		}
		c->pending = o->pending;
	}
	if (tls_ctx) {
		c->tls = tls_new(tls_ctx, NULL);
		if (!c->tls)
			goto fail_pending;
	}
	c->fd = fd;
	conn_peer_fmt(c);
	conn_nodelay(fd);
	if (c->idle_ms)
		loop_timer_arm(l, &c->idle_timer, c->idle_ms);
	if (c->tls) {
		c->state = CONN_HANDSHAKE;
		loop_timer_arm(l, &c->hs_timer, c->hs_ms);
	} else {
		c->state = CONN_OPEN;
		c->flags |= CONN_F_TLS_DRAINED;
		conn_task_want(c, CONN_F_READY_TASK);
	}
	conn_recv_want(c);
	return c;

fail_pending:
	conn_pending_release(c);
fail_tls:
	conn_alloc_undo(c);
fail_alloc:
	close(fd);
	errno = err;
	return NULL;
}

/* Returns NULL with errno set when the socket cannot be made or memory is
 * short; no callback runs then. Otherwise every outcome, including a failed
 * connect, ends in on_close. The handshake timeout bounds connect + TLS. */
struct conn *conn_connect(struct loop *l, const struct sockaddr *sa, socklen_t salen,
			  uint32_t mark, struct tls_ctx *tls_ctx, const char *sni,
			  const char *expect_id, const struct conn_handler *h,
			  const struct conn_opts *o, void *udata)
{
	int fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	if (mark && setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0) {
		err = errno;
		close(fd);
		errno = err;
		return NULL;
	}
	return conn_connect_fd(l, fd, sa, salen, tls_ctx, sni, expect_id, h, o, udata);
}

struct conn *conn_connect_fd(struct loop *l, int fd, const struct sockaddr *sa,
			     socklen_t salen, struct tls_ctx *tls_ctx, const char *sni,
			     const char *expect_id, const struct conn_handler *h,
			     const struct conn_opts *o, void *udata)
{
	struct conn *c;
	int ret;

	if (salen > sizeof(c->peer)) {
		errno = EINVAL;
		goto fail_sock;
	}
	if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6)
		conn_nodelay(fd);
	c = conn_alloc(l, h, o, udata);
	if (!c) {
		errno = ENOMEM;
		goto fail_sock;
	}
	if (tls_ctx) {
		c->tls = tls_new(tls_ctx, sni);
		if (!c->tls) {
			errno = ENOMEM;
			goto fail_conn;
		}
		if (expect_id) {
			ret = tls_expect_peer(c->tls, expect_id);
			if (ret < 0) {
				errno = -ret;
				goto fail_conn;
			}
		}
	}
	c->fd = fd;
	memcpy(&c->peer, sa, salen);
	c->peer_len = salen;
	conn_peer_fmt(c);
	ret = loop_connect(l, &c->connect_op, fd, (struct sockaddr *)&c->peer, salen);
	if (ret < 0) {
		errno = -ret;
		goto fail_conn;
	}
	c->nops++;
	c->state = CONN_CONNECTING;
	c->flags |= CONN_F_TLS_DRAINED;
	loop_timer_arm(l, &c->hs_timer, c->hs_ms);
	if (c->idle_ms)
		loop_timer_arm(l, &c->idle_timer, c->idle_ms);
	return c;

fail_conn:
	conn_alloc_undo(c);
fail_sock:
	ret = errno;
	close(fd);
	errno = ret;
	return NULL;
}

struct conn *conn_start_fd(struct loop *l, int fd, const char *peer, struct tls_ctx *tls_ctx,
			   const char *sni, const char *expect_id, const struct conn_handler *h,
			   const struct conn_opts *o, void *udata)
{
	struct conn *c = conn_alloc(l, h, o, udata);
	int ret = ENOMEM;

	if (!c)
		goto fail_sock;
	if (tls_ctx) {
		c->tls = tls_new(tls_ctx, sni);
		if (!c->tls || (expect_id && (ret = -tls_expect_peer(c->tls, expect_id)))) {
			ret = c->tls ? ret : ENOMEM;
			conn_alloc_undo(c);
			goto fail_sock;
		}
	}
	c->fd = fd;
	c->peer.ss_family = AF_UNSPEC;
	snprintf(c->peer_str, sizeof(c->peer_str), "%s", peer ? peer : "?");
	c->state = CONN_CONNECTING;
	c->flags |= CONN_F_TLS_DRAINED;
	loop_timer_arm(l, &c->hs_timer, c->hs_ms);
	if (c->idle_ms)
		loop_timer_arm(l, &c->idle_timer, c->idle_ms);
	conn_task_want(c, CONN_F_START_TASK);
	return c;
fail_sock:
	close(fd);
	errno = ret;
	return NULL;
}

/* --- accessors ------------------------------------------------------------ */

void *conn_udata(const struct conn *c)
{
	return c->udata;
}

void conn_set_udata(struct conn *c, void *udata)
{
	c->udata = udata;
}

struct tls *conn_tls(const struct conn *c)
{
	return c->tls;
}

const struct sockaddr_storage *conn_peer_addr(const struct conn *c)
{
	return &c->peer;
}

const char *conn_peer_str(const struct conn *c)
{
	return c->peer_str;
}

struct loop *conn_loop(const struct conn *c)
{
	return c->loop;
}
