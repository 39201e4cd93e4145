/* SPDX-License-Identifier: Apache-2.0 */
/* HBONE tunnels: TCP streams carried as HTTP/2 CONNECT streams over one
 * connection, client and server side, on nghttp2. Pure like grpc.c: bytes in
 * through h2tun_feed, bytes out through the caller's send callback, no
 * sockets, clock or logging, so conn.c, the unit tests and a fuzzer drive it
 * the same way.
 *
 * Flow control is end to end. nghttp2 runs with NO_AUTO_WINDOW_UPDATE: a
 * window re-opens only through h2tun_consume, which the user calls once the
 * bytes were written to the app's socket. Bytes on_data does not take are
 * kept per stream; the peer cannot send more than the stream window (4 MiB)
 * before they are consumed, nor more than the connection window (16 MiB)
 * over all streams, so that is also the bound on what a tunnel buffers
 * inbound. Outbound, each stream queues at most H2TUN_SENDQ_MAX bytes;
 * h2tun_write takes what fits and on_writable says when to come back.
 *
 * Reentrancy rules:
 * - Callbacks run only from h2tun_feed, h2tun_flush, h2tun_resume_read
 *   (on_data/on_eof for the re-offered bytes) and h2tun_free (on_close).
 *   h2tun_connect, _respond, _write, _shutdown, _reset, _consume, _ping and
 *   _goaway never call back.
 * - From a callback, any of those may be used on any stream, and so may
 *   h2tun_resume_read on another stream. h2tun_feed, h2tun_flush and
 *   h2tun_free may not: nghttp2 is in the middle of a frame.
 * - A stream is freed only by h2tun, after its on_close returns; calls made
 *   from a callback never free the stream the callback is about. During
 *   on_close the stream still has its udata and is still counted by
 *   h2tun_stream_count, but takes no writes.
 * - on_close comes exactly once for every stream the user knows (an id from
 *   h2tun_connect, or one named by on_connect), also for streams the user
 *   reset itself. Streams h2tun answered 400 itself are never reported.
 * - Server: DATA that arrives before h2tun_respond is offered to on_data as
 *   usual; return 0 to keep it until the app connection is up.
 * - Client: nothing is sent on a stream before its 200 arrives; h2tun_write
 *   and h2tun_shutdown before that are queued. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

#include <weft/h2conn.h>
#include <weft/h2glue.h>
#include <weft/h2tun.h>

#define H2TUN_SENDQ_MAX		(256u << 10)	/* queued outbound bytes per stream */
/* ... and over all streams of the tunnel: what one peer that stops
 * reading can make us hold (H2TUN_MAX_STREAMS x H2TUN_SENDQ_MAX would be
 * 250 MiB); a few bulk streams still get their whole queue each. */
#define H2TUN_CONN_SENDQ_MAX	(16u << 20)
#define H2TUN_FRAME_MAX		16384		/* SETTINGS_MAX_FRAME_SIZE (the default) */
#define H2TUN_BLOCK_MIN		4096		/* byte queue block sizes */
#define H2TUN_BLOCK_MAX		16384
#define H2TUN_BUCKETS		1024		/* stream table, power of two */
#define H2TUN_VALUE_MAX		256		/* kept request header values, with NUL */
#define H2TUN_HDR_LIST_MAX	(16u << 10)	/* SETTINGS_MAX_HEADER_LIST_SIZE */
/* Streams in the table: nghttp2 caps the live ones at H2TUN_MAX_STREAMS;
 * this also caps finished ones still holding bytes for a slow app. */
#define H2TUN_TABLE_MAX		(2 * H2TUN_MAX_STREAMS)
/* RST_STREAM a server takes from its client before it sends GOAWAY
 * (nghttp2's rapid-reset guard, CVE-2023-44487). Its default, 1000 then
 * 33/s, is for browsers; a tunnel resets a stream whenever an app resets a
 * connection, and its peer is an authenticated node, so allow a full set
 * of streams twice over and a busy node's rate. */
#define H2TUN_RESET_BURST	(2 * H2TUN_MAX_STREAMS)
#define H2TUN_RESET_RATE	1000		/* per second */

/* Stream flags. */
#define ST_KNOWN	(1u << 0)	/* the user knows the id: on_close is owed */
#define ST_OPEN		(1u << 1)	/* 200 sent (server) / received (client) */
#define ST_RESP		(1u << 2)	/* final response sent (server) / received (client) */
#define ST_REFUSED	(1u << 3)	/* non-200 answer, or a malformed one */
#define ST_RESET	(1u << 4)	/* we reset it (RST_STREAM queued) */
#define ST_RST_RECV	(1u << 5)	/* the peer reset it */
#define ST_DEFERRED	(1u << 6)	/* our data provider returned DEFERRED */
#define ST_SHUT		(1u << 7)	/* END_STREAM wanted after the queue */
#define ST_EOF_SENT	(1u << 8)	/* END_STREAM handed to nghttp2 */
#define ST_EOF_RECV	(1u << 9)	/* the peer's END_STREAM arrived */
#define ST_EOF_DONE	(1u << 10)	/* on_eof delivered */
#define ST_PAUSED	(1u << 11)	/* on_data took less; wait for resume_read */
#define ST_DELIVERING	(1u << 12)	/* inside on_data for this stream */
#define ST_RESUMED	(1u << 13)	/* resume_read called during on_data */
#define ST_WANT_WR	(1u << 14)	/* h2tun_write was short: on_writable owed */
#define ST_H2_GONE	(1u << 15)	/* nghttp2 closed it; held bytes remain */
#define ST_COUNTED	(1u << 16)	/* client stream counted in t->n_local */
#define ST_CLOSING	(1u << 17)	/* inside on_close; freed after */
#define ST_DUE_WR	(1u << 18)	/* on_writable to run after this flush */
#define ST_DUE_END	(1u << 19)	/* on_close to run after this flush */

struct h2tun_block {
	struct h2tun_block *next;
	uint32_t off, len, cap;
	uint8_t data[];
};

/* A bounded-by-the-caller FIFO of bytes in blocks of 4..16 KiB: tiny
 * frames from the peer coalesce, so overhead stays a fraction of len. */
struct h2tun_bq {
	struct h2tun_block *head, *tail;
	size_t len;
};

/* Server: request headers until the HEADERS frame is complete. */
struct h2tun_req_hdrs {
	char method[16];
	char authority[H2TUN_VALUE_MAX];
	char forwarded[H2TUN_VALUE_MAX];
	char traceparent[H2TUN_VALUE_MAX];
	char network[H2TUN_NETWORK_MAX];
	bool bad;			/* answer 400 */
};

struct h2tun_stream {
	struct h2tun_stream *hnext;	/* table chain */
	int32_t id;
	unsigned flags;
	void *udata;
	struct h2tun_bq sq;		/* outbound, at most H2TUN_SENDQ_MAX */
	struct h2tun_bq hold;		/* inbound, not yet taken by on_data */
	size_t unacked;			/* received, not yet passed to nghttp2_session_consume */
	int status;			/* client: :status being parsed */
	uint32_t rst_code;		/* RST_STREAM code sent or received */
	uint32_t close_code;		/* nghttp2's code when it closed the stream */
	struct h2tun_req_hdrs *req;
};

struct h2tun {
	nghttp2_session *h2;
	enum h2tun_role role;
	struct h2tun_callbacks cb;
	struct h2glue_sink sink;
	void *udata;
	struct h2tun_stream *table[H2TUN_BUCKETS];
	unsigned n_streams;		/* in the table */
	unsigned n_local;		/* client streams nghttp2 has not closed */
	unsigned n_due;			/* streams with ST_DUE_* set */
	size_t sq_total;		/* bytes in all streams' sq */
	bool sq_starved;		/* a write was cut by H2TUN_CONN_SENDQ_MAX */
	uint64_t sq_cuts;		/* how often (h2tun_send_cuts) */
	/* Every DATA byte nghttp2 hands us must go back to the connection
	 * window exactly once, or the tunnel slowly chokes; the unit tests
	 * check these two meet once the streams are gone. */
	uint64_t data_in;		/* DATA payload received */
	uint64_t data_acked;		/* of that, given back (consumed) */
	uint64_t ping_seq;		/* opaque of the last PING sent */
	bool ping_out;
	bool goaway_sent, goaway_recv;
	bool proto_err;			/* connection error: GOAWAY queued or sent */
	bool fatal;			/* the sink or nghttp2 failed */
	bool freeing;
};

/* --- byte queues ------------------------------------------------------------ */

static size_t bq_append(struct h2tun_bq *q, const uint8_t *p, size_t n)
{
	size_t done = 0;

	while (done < n) {
		struct h2tun_block *b = q->tail;
		size_t take;

		if (!b || b->len == b->cap) {
			size_t cap = n - done;

			if (cap < H2TUN_BLOCK_MIN)
				cap = H2TUN_BLOCK_MIN;
			if (cap > H2TUN_BLOCK_MAX)
				cap = H2TUN_BLOCK_MAX;
			b = malloc(sizeof(*b) + cap);
			if (!b)
				break;
			b->next = NULL;
			b->off = b->len = 0;
			b->cap = (uint32_t)cap;
			if (q->tail)
				q->tail->next = b;
			else
				q->head = b;
			q->tail = b;
		}
		take = b->cap - b->len;
		if (take > n - done)
			take = n - done;
		memcpy(b->data + b->len, p + done, take);
		b->len += (uint32_t)take;
		done += take;
		q->len += take;
	}
	return done;
}

static void bq_drop(struct h2tun_bq *q, size_t n)
{
	while (n > 0 && q->head) {
		struct h2tun_block *b = q->head;
		size_t avail = b->len - b->off;
		size_t take = n < avail ? n : avail;

		b->off += (uint32_t)take;
		q->len -= take;
		n -= take;
		if (b->off == b->len) {
			q->head = b->next;
			if (!q->head)
				q->tail = NULL;
			free(b);
		}
	}
}

static size_t bq_read(struct h2tun_bq *q, uint8_t *out, size_t n)
{
	size_t done = 0;

	while (done < n && q->head) {
		struct h2tun_block *b = q->head;
		size_t take = b->len - b->off;

		if (take > n - done)
			take = n - done;
		memcpy(out + done, b->data + b->off, take);
		done += take;
		bq_drop(q, take);
	}
	return done;
}

static void bq_clear(struct h2tun_bq *q)
{
	bq_drop(q, q->len);
	/* Blocks with off == len cannot stay queued, but be safe. */
	while (q->head) {
		struct h2tun_block *b = q->head;

		q->head = b->next;
		free(b);
	}
	q->tail = NULL;
	q->len = 0;
}

/* --- stream table ----------------------------------------------------------- */

static unsigned tun_bucket(int32_t id)
{
	return ((uint32_t)id * 2654435761u) >> 22;	/* 32 - log2(H2TUN_BUCKETS) */
}

static struct h2tun_stream *tun_stream(const struct h2tun *t, int32_t id)
{
	struct h2tun_stream *s;

	if (id <= 0)
		return NULL;
	for (s = t->table[tun_bucket(id)]; s; s = s->hnext)
		if (s->id == id)
			return s;
	return NULL;
}

static struct h2tun_stream *tun_stream_add(struct h2tun *t, int32_t id)
{
	struct h2tun_stream *s = calloc(1, sizeof(*s));
	unsigned b = tun_bucket(id);

	if (!s)
		return NULL;
	s->id = id;
	s->hnext = t->table[b];
	t->table[b] = s;
	t->n_streams++;
	return s;
}

static void tun_stream_unlink(struct h2tun *t, struct h2tun_stream *s)
{
	struct h2tun_stream **pp;

	for (pp = &t->table[tun_bucket(s->id)]; *pp; pp = &(*pp)->hnext) {
		if (*pp == s) {
			*pp = s->hnext;
			t->n_streams--;
			return;
		}
	}
}

/* Any stream of the table, or NULL: lets loops that call back survive the
 * user opening or resetting streams meanwhile. */
static struct h2tun_stream *tun_stream_any(const struct h2tun *t)
{
	for (unsigned i = 0; i < H2TUN_BUCKETS; i++)
		if (t->table[i])
			return t->table[i];
	return NULL;
}

/* --- streams ---------------------------------------------------------------- */

/* Give n received bytes back to the windows; once nghttp2 has closed the
 * stream only the connection window is left to re-open. */
static void stream_ack(struct h2tun *t, struct h2tun_stream *s, size_t n)
{
	if (n > s->unacked)
		n = s->unacked;
	if (n == 0)
		return;
	s->unacked -= n;
	t->data_acked += n;
	if (t->freeing)
		return;
	if (s->flags & ST_H2_GONE)
		nghttp2_session_consume_connection(t->h2, n);
	else
		nghttp2_session_consume(t->h2, s->id, n);
}

static void stream_drop_hold(struct h2tun *t, struct h2tun_stream *s)
{
	stream_ack(t, s, s->hold.len);
	bq_clear(&s->hold);
	s->flags &= ~ST_PAUSED;
}

static void stream_due(struct h2tun *t, struct h2tun_stream *s, unsigned flag)
{
	if (!(s->flags & (ST_DUE_WR | ST_DUE_END)))
		t->n_due++;
	s->flags |= flag;
}

/* The tunnel's send budget is half free again after a cut: every stream
 * that was cut (and has room of its own) gets its on_writable. */
static void sq_wake(struct h2tun *t)
{
	if (!t->sq_starved || t->sq_total >= H2TUN_CONN_SENDQ_MAX / 2)
		return;
	t->sq_starved = false;
	for (unsigned b = 0; b < H2TUN_BUCKETS; b++)
		for (struct h2tun_stream *s = t->table[b]; s; s = s->hnext)
			if ((s->flags & ST_WANT_WR) && !(s->flags & ST_CLOSING) &&
			    s->sq.len < H2TUN_SENDQ_MAX / 2) {
				s->flags &= ~ST_WANT_WR;
				stream_due(t, s, ST_DUE_WR);
			}
}

/* Empty a stream's send queue, giving its bytes back to the budget. */
static void sq_clear(struct h2tun *t, struct h2tun_stream *s)
{
	t->sq_total -= s->sq.len;
	bq_clear(&s->sq);
	sq_wake(t);
}

/* nghttp2 is done with the stream (closed, or its HEADERS never went). */
static void stream_h2_gone(struct h2tun *t, struct h2tun_stream *s)
{
	if (s->flags & ST_H2_GONE)
		return;
	s->flags |= ST_H2_GONE;
	if (s->flags & ST_COUNTED) {
		s->flags &= ~ST_COUNTED;
		t->n_local--;
	}
}

/* Tell the user (once) and free. */
static void stream_finish(struct h2tun *t, struct h2tun_stream *s,
			  enum h2tun_end how, uint32_t code)
{
	if (s->flags & ST_CLOSING)
		return;
	s->flags |= ST_CLOSING;
	if ((s->flags & ST_KNOWN) && t->cb.on_close)
		t->cb.on_close(t, s->id, how, code);
	if (s->flags & (ST_DUE_WR | ST_DUE_END))
		t->n_due--;
	tun_stream_unlink(t, s);
	stream_ack(t, s, s->unacked);
	sq_clear(t, s);
	bq_clear(&s->hold);
	free(s->req);
	free(s);
}

/* Why the stream ended, from what we saw on it. */
static void stream_reason(const struct h2tun_stream *s, enum h2tun_end *how,
			  uint32_t *code)
{
	*code = s->close_code;
	if (s->flags & ST_REFUSED) {
		*how = H2TUN_END_REFUSED;
	} else if (s->flags & (ST_RESET | ST_RST_RECV)) {
		*code = s->rst_code;
		*how = s->rst_code == NGHTTP2_REFUSED_STREAM ? H2TUN_END_REFUSED
							     : H2TUN_END_RESET;
	} else if (s->close_code == NGHTTP2_REFUSED_STREAM) {
		*how = H2TUN_END_REFUSED;
	} else if (s->close_code == NGHTTP2_NO_ERROR) {
		*how = H2TUN_END_CLOSED;
	} else {
		*how = H2TUN_END_RESET;	/* nghttp2 reset it: a stream error */
	}
}

static void stream_finish_why(struct h2tun *t, struct h2tun_stream *s)
{
	enum h2tun_end how;
	uint32_t code;

	stream_reason(s, &how, &code);
	stream_finish(t, s, how, code);
}

/* Reset from inside h2tun (bad peer input, out of memory). */
static void stream_abort(struct h2tun *t, struct h2tun_stream *s, uint32_t code)
{
	if (s->flags & (ST_RESET | ST_CLOSING))
		return;
	s->flags |= ST_RESET;
	s->rst_code = code;
	stream_drop_hold(t, s);
	sq_clear(t, s);
	if (s->flags & ST_H2_GONE)
		stream_due(t, s, ST_DUE_END);
	else
		nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, s->id, code);
}

static bool stream_can_deliver(const struct h2tun_stream *s)
{
	return (s->flags & ST_KNOWN) &&
	       !(s->flags & (ST_RESET | ST_REFUSED | ST_CLOSING));
}

/* Offer held bytes to on_data until it takes less, then on_eof once the
 * hold is empty and the peer has finished. */
static void stream_deliver(struct h2tun *t, struct h2tun_stream *s)
{
	while (s->hold.len > 0 && !(s->flags & ST_PAUSED) && stream_can_deliver(s)) {
		struct h2tun_block *b = s->hold.head;
		size_t n = b->len - b->off, took;

		s->flags |= ST_DELIVERING;
		s->flags &= ~ST_RESUMED;
		took = t->cb.on_data ? t->cb.on_data(t, s->id, b->data + b->off, n) : n;
		s->flags &= ~ST_DELIVERING;
		if (!stream_can_deliver(s))
			return;		/* reset meanwhile: the hold is gone */
		if (took > n)
			took = n;
		bq_drop(&s->hold, took);
		if (took < n && !(s->flags & ST_RESUMED))
			s->flags |= ST_PAUSED;
	}
	if (s->hold.len > 0 || !stream_can_deliver(s))
		return;
	if ((s->flags & ST_EOF_RECV) && !(s->flags & ST_EOF_DONE)) {
		s->flags |= ST_EOF_DONE;
		if (t->cb.on_eof)
			t->cb.on_eof(t, s->id);
	}
	if ((s->flags & ST_H2_GONE) && !(s->flags & ST_CLOSING))
		stream_due(t, s, ST_DUE_END);
}

static void stream_eof_recv(struct h2tun *t, struct h2tun_stream *s)
{
	s->flags |= ST_EOF_RECV;
	if (t->role == H2TUN_CLIENT && !(s->flags & ST_RESP)) {
		/* The server ended its side without a final answer. */
		s->flags |= ST_REFUSED;
		if (!(s->flags & ST_RESET))
			nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, s->id,
						  NGHTTP2_CANCEL);
		return;
	}
	stream_deliver(t, s);
}

/* --- request validation (server) ------------------------------------------ */

/* "host:port" with a numeric port 1..65535; host is a name, an IPv4
 * address or a bracketed IPv6 address. Which hosts are local is the
 * caller's business. */
static bool authority_valid(const char *a)
{
	const char *colon = strrchr(a, ':');
	unsigned long port = 0;
	size_t hlen, i;

	if (!colon)
		return false;
	hlen = (size_t)(colon - a);
	if (hlen == 0)
		return false;
	if (a[0] == '[') {
		if (hlen < 3 || a[hlen - 1] != ']')
			return false;
	} else {
		for (i = 0; i < hlen; i++)
			if (a[i] == '[' || a[i] == ']' || a[i] == ':' ||
			    a[i] == '@' || a[i] == '/')
				return false;
	}
	if (colon[1] == '\0' || strlen(colon + 1) > 5)
		return false;
	for (i = 1; colon[i]; i++) {
		if (colon[i] < '0' || colon[i] > '9')
			return false;
		port = port * 10 + (unsigned long)(colon[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Header values we keep must be printable ASCII: they reach the user as C
 * strings, so no NUL, and no control bytes for logs. */
static bool value_copy(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	if (n == 0 || n >= cap)
		return false;
	for (size_t i = 0; i < n; i++)
		if (v[i] < 0x20 || v[i] > 0x7e)
			return false;
	memcpy(dst, v, n);
	dst[n] = '\0';
	return true;
}

static void req_header(struct h2tun_req_hdrs *r, const uint8_t *name, size_t nlen,
		       const uint8_t *value, size_t vlen)
{
	char *dst = NULL;
	size_t cap = 0;

#define IS(lit) (nlen == sizeof(lit) - 1 && memcmp(name, lit, nlen) == 0)
	if (IS(":method")) {
		dst = r->method;
		cap = sizeof(r->method);
	} else if (IS(":authority")) {
		dst = r->authority;
		cap = sizeof(r->authority);
	} else if (IS("forwarded")) {
		dst = r->forwarded;
		cap = sizeof(r->forwarded);
	} else if (IS("traceparent")) {
		dst = r->traceparent;
		cap = sizeof(r->traceparent);
	} else if (IS("x-forwarded-network")) {
		dst = r->network;
		cap = sizeof(r->network);
	} else if (nlen > 0 && name[0] == ':') {
		/* :scheme/:path/:protocol are not for a plain CONNECT
		 * (RFC 9113 §8.5), and nothing else is defined. */
		r->bad = true;
		return;
	} else {
		return;		/* other fields carry nothing we use */
	}
#undef IS
	if (dst[0] != '\0' || !value_copy(dst, cap, value, vlen))
		r->bad = true;	/* repeated, empty, too long or not printable */
}

/* nghttp2 is told to leave HTTP semantics to us (NO_HTTP_MESSAGING) so a
 * bad CONNECT gets a 400 rather than a bare RST_STREAM. */
static void req_answer(struct h2tun *t, struct h2tun_stream *s)
{
	struct h2tun_req_hdrs *r = s->req;
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)"400", 7, 3,
			  NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE };

	s->req = NULL;
	if (!r->bad && strcmp(r->method, "CONNECT") == 0 && authority_valid(r->authority)) {
		struct h2tun_connect_req req = {
			.authority = r->authority,
			.forwarded = r->forwarded[0] ? r->forwarded : NULL,
			.traceparent = r->traceparent[0] ? r->traceparent : NULL,
			.network = r->network[0] ? r->network : NULL,
		};

		s->flags |= ST_KNOWN;
		if (t->cb.on_connect)
			t->cb.on_connect(t, s->id, &req);
		free(r);
		return;
	}
	free(r);
	s->flags |= ST_REFUSED | ST_RESP;
	/* The END_STREAM of this HEADERS ends our side; on_frame_send resets
	 * the stream if the client is still sending. */
	if (nghttp2_submit_response(t->h2, s->id, &nv, 1, NULL) != 0)
		nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, s->id,
					  NGHTTP2_INTERNAL_ERROR);
}

/* --- client responses ------------------------------------------------------- */

static int status_parse(const uint8_t *v, size_t n)
{
	if (n != 3 || v[0] < '1' || v[0] > '5' || v[1] < '0' || v[1] > '9' ||
	    v[2] < '0' || v[2] > '9')
		return -1;
	return (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
}

static void resp_headers(struct h2tun *t, struct h2tun_stream *s)
{
	int st = s->status;

	s->status = 0;
	if (s->flags & ST_RESP)
		return;		/* trailers: nothing in them for us */
	if (st >= 100 && st < 200)
		return;		/* interim: the final answer follows */
	s->flags |= ST_RESP;
	if (s->flags & ST_RESET)
		return;		/* the user gave up on it already */
	if (st == 200) {
		s->flags |= ST_OPEN;
		if (t->cb.on_response)
			t->cb.on_response(t, s->id, 200);
		if ((s->flags & ST_DEFERRED) && !(s->flags & (ST_RESET | ST_CLOSING))) {
			s->flags &= ~ST_DEFERRED;
			nghttp2_session_resume_data(t->h2, s->id);
		}
		return;
	}
	s->flags |= ST_REFUSED;
	sq_clear(t, s);
	stream_drop_hold(t, s);
	if (st > 0 && t->cb.on_response)
		t->cb.on_response(t, s->id, st);
	/* Our direction is pointless now; the server may not reset it. */
	if (!(s->flags & ST_RESET) && !(s->flags & ST_H2_GONE))
		nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
}

/* --- nghttp2 callbacks ------------------------------------------------------ */

static ssize_t stream_data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf,
				size_t len, uint32_t *data_flags,
				nghttp2_data_source *src, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s = tun_stream(t, sid);
	size_t n;

	(void)h2;
	(void)src;
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;	/* RSTs it */
	/* A reset or refused stream is about to close; a client stream waits
	 * for its 200 before anything goes out. */
	if ((s->flags & (ST_RESET | ST_REFUSED | ST_CLOSING)) ||
	    (t->role == H2TUN_CLIENT && !(s->flags & ST_OPEN))) {
		s->flags |= ST_DEFERRED;
		return NGHTTP2_ERR_DEFERRED;
	}
	n = bq_read(&s->sq, buf, len);
	t->sq_total -= n;
	if ((s->flags & ST_WANT_WR) && s->sq.len < H2TUN_SENDQ_MAX / 2 &&
	    (!t->sq_starved || t->sq_total < H2TUN_CONN_SENDQ_MAX / 2)) {
		s->flags &= ~ST_WANT_WR;
		stream_due(t, s, ST_DUE_WR);	/* not from inside nghttp2 */
	}
	sq_wake(t);
	if (s->sq.len == 0 && (s->flags & ST_SHUT)) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
		s->flags |= ST_EOF_SENT;
		return (ssize_t)n;
	}
	if (n > 0)
		return (ssize_t)n;
	s->flags |= ST_DEFERRED;
	return NGHTTP2_ERR_DEFERRED;
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST || t->role != H2TUN_SERVER)
		return 0;
	if (t->n_streams >= H2TUN_TABLE_MAX || tun_stream(t, frame->hd.stream_id)) {
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
					  NGHTTP2_REFUSED_STREAM);
		return 0;
	}
	s = tun_stream_add(t, frame->hd.stream_id);
	if (!s)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;	/* RSTs the stream */
	s->req = calloc(1, sizeof(*s->req));
	if (!s->req) {
		tun_stream_unlink(t, s);
		free(s);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s;

	(void)h2;
	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	s = tun_stream(t, frame->hd.stream_id);
	if (!s)
		return 0;
	if (t->role == H2TUN_SERVER) {
		if (s->req && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
			req_header(s->req, name, namelen, value, valuelen);
		return 0;
	}
	if (!(s->flags & ST_RESP) && namelen == 7 && memcmp(name, ":status", 7) == 0)
		s->status = s->status ? -1 : status_parse(value, valuelen);
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s = NULL;

	(void)h2;
	if (frame->hd.stream_id > 0)
		s = tun_stream(t, frame->hd.stream_id);
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if (!s || (s->flags & ST_CLOSING))
			return 0;
		if (t->role == H2TUN_SERVER) {
			if (s->req && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
				req_answer(t, s);
		} else {
			resp_headers(t, s);
		}
		break;
	case NGHTTP2_DATA:
		break;
	case NGHTTP2_RST_STREAM:
		if (s && !(s->flags & ST_RESET)) {
			s->flags |= ST_RST_RECV;
			s->rst_code = frame->rst_stream.error_code;
		}
		return 0;
	case NGHTTP2_GOAWAY:
		if (!t->goaway_recv) {
			t->goaway_recv = true;
			if (t->cb.on_goaway)
				t->cb.on_goaway(t);
		}
		return 0;
	case NGHTTP2_PING:
		if ((frame->hd.flags & NGHTTP2_FLAG_ACK) &&
		    memcmp(frame->ping.opaque_data, &t->ping_seq, 8) == 0)
			t->ping_out = false;
		return 0;
	default:
		return 0;
	}
	if (s && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
	    !(s->flags & (ST_EOF_RECV | ST_CLOSING)))
		stream_eof_recv(t, s);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *h2, uint8_t flags, int32_t sid,
			      const uint8_t *data, size_t len, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s = tun_stream(t, sid);
	size_t took;

	(void)flags;
	t->data_in += len;
	/* Bytes nobody will read still count against the connection window:
	 * give them back at once. */
	if (!s || !stream_can_deliver(s) ||
	    (t->role == H2TUN_CLIENT && !(s->flags & ST_OPEN))) {
		t->data_acked += len;
		nghttp2_session_consume(h2, sid, len);
		return 0;
	}
	s->unacked += len;
	if (s->hold.len == 0 && !(s->flags & ST_PAUSED)) {
		s->flags |= ST_DELIVERING;
		s->flags &= ~ST_RESUMED;
		took = t->cb.on_data ? t->cb.on_data(t, sid, data, len) : len;
		s->flags &= ~ST_DELIVERING;
		if (!stream_can_deliver(s))
			return 0;
		if (took >= len)
			return 0;
		data += took;
		len -= took;
		if (!(s->flags & ST_RESUMED))
			s->flags |= ST_PAUSED;
	}
	/* The peer cannot exceed the stream window (nghttp2 enforces it), so
	 * this never grows past it; checked anyway, it is our memory. */
	if (s->hold.len + len > H2TUN_STREAM_WINDOW ||
	    bq_append(&s->hold, data, len) != len) {
		stream_abort(t, s, NGHTTP2_FLOW_CONTROL_ERROR);
		return 0;
	}
	if (!(s->flags & ST_PAUSED))	/* resumed from inside on_data */
		stream_deliver(t, s);
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s;

	if (h2glue_goaway_failed(frame))
		t->proto_err = true;
	if (frame->hd.type != NGHTTP2_HEADERS || t->role != H2TUN_SERVER ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	s = tun_stream(t, frame->hd.stream_id);
	/* A refusal ends our side; the client may still be sending into a
	 * stream nobody reads (RFC 9113 §8.1): stop it. */
	if (s && (s->flags & ST_REFUSED) && !(s->flags & (ST_EOF_RECV | ST_RESET)))
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
	return 0;
}

static int on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame,
			     int lib_error, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s;

	(void)h2;
	(void)lib_error;
	/* A request that never left (GOAWAY, reset before it went): nghttp2
	 * never opened the stream, so no on_stream_close follows. */
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	s = tun_stream(t, frame->hd.stream_id);
	if (!s || (s->flags & ST_CLOSING))
		return 0;
	stream_h2_gone(t, s);
	if (!(s->flags & ST_RESET))
		s->flags |= ST_REFUSED;
	s->close_code = NGHTTP2_REFUSED_STREAM;
	stream_finish_why(t, s);
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *ud)
{
	struct h2tun *t = ud;
	struct h2tun_stream *s = tun_stream(t, sid);

	(void)h2;
	if (!s || (s->flags & ST_CLOSING))
		return 0;
	stream_h2_gone(t, s);
	s->close_code = error_code;
	/* A clean end with bytes the app has not taken yet: keep them for
	 * h2tun_resume_read; on_eof and on_close follow the last byte. */
	if (error_code == NGHTTP2_NO_ERROR && s->hold.len > 0 && stream_can_deliver(s) &&
	    !(s->flags & ST_RST_RECV))
		return 0;
	stream_finish_why(t, s);
	return 0;
}

/* --- session --------------------------------------------------------------- */

/* Every stream ends with the tunnel. */
static void tun_close_all(struct h2tun *t)
{
	struct h2tun_stream *s;

	while ((s = tun_stream_any(t)) != NULL)
		stream_finish(t, s, H2TUN_END_TUNNEL, 0);
}

/* Callbacks owed from inside nghttp2, run once it has returned. */
static void tun_run_due(struct h2tun *t)
{
	/* Each pass clears what it finds; callbacks may add more (the user
	 * resetting another finished stream), so go round while there is. */
	for (int pass = 0; t->n_due > 0 && pass < 4; pass++) {
		for (unsigned i = 0; i < H2TUN_BUCKETS && t->n_due > 0; i++) {
			struct h2tun_stream *s, *next;

			for (s = t->table[i]; s; s = next) {
				next = s->hnext;
				if (!(s->flags & (ST_DUE_WR | ST_DUE_END)))
					continue;
				if (s->flags & ST_DUE_END) {
					stream_finish_why(t, s);
					continue;
				}
				s->flags &= ~ST_DUE_WR;
				t->n_due--;
				if (t->cb.on_writable &&
				    !(s->flags & (ST_SHUT | ST_RESET | ST_REFUSED | ST_CLOSING)))
					t->cb.on_writable(t, s->id);
			}
		}
	}
}

struct h2tun *h2tun_new(enum h2tun_role role, const struct h2tun_callbacks *cb,
			h2tun_send_fn send, h2tun_space_fn space, void *io, void *udata)
{
	static const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2TUN_STREAM_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_FRAME_SIZE, H2TUN_FRAME_MAX },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, H2TUN_HDR_LIST_MAX },
		/* Server only: the last entry is left out for a client. */
		{ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2TUN_MAX_STREAMS },
	};
	struct h2glue_setup setup = {
		/* Windows re-open only through h2tun_consume: end-to-end
		 * backpressure. CONNECT checks are ours, so a bad request
		 * gets a 400 (nghttp2's own checks would answer it with a
		 * bare RST_STREAM). */
		.flags = H2GLUE_MANUAL_WINDOW | H2GLUE_NO_HTTP |
			 (role == H2TUN_SERVER ? H2GLUE_SERVER : 0),
		.on_begin_headers = on_begin_headers,	/* server: a stream opens */
		.on_header = on_header,			/* CONNECT fields, or :status */
		.on_frame_recv = on_frame_recv,
		.on_data_chunk_recv = on_data_chunk_recv,
		.on_frame_send = on_frame_send,		/* server: stop a refused client */
		.on_frame_not_send = on_frame_not_send,	/* client: a CONNECT never left */
		.on_stream_close = on_stream_close,
		/* Until the server's SETTINGS arrive, assume our own limit
		 * rather than nghttp2's "unlimited". */
		.peer_max_streams = H2TUN_MAX_STREAMS,
		.reset_burst = H2TUN_RESET_BURST,
		.reset_rate = H2TUN_RESET_RATE,
		.settings = iv,
		.n_settings = sizeof(iv) / sizeof(iv[0]) - (role == H2TUN_SERVER ? 0 : 1),
		.conn_window = H2TUN_CONN_WINDOW,
	};
	struct h2tun *t;

	if (!cb || !send || !space || (role != H2TUN_CLIENT && role != H2TUN_SERVER)) {
		errno = EINVAL;
		return NULL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		goto fail_alloc;
	t->role = role;
	t->cb = *cb;
	t->sink = (struct h2glue_sink){ send, space, io };
	t->udata = udata;
	if (h2glue_session_new(&t->h2, &setup, t) != 0)
		goto fail_h2;
	return t;

fail_h2:
	free(t);
fail_alloc:
	errno = ENOMEM;
	return NULL;
}

void h2tun_free(struct h2tun *t)
{
	if (!t)
		return;
	/* on_close first, while the session and every stream are intact: a
	 * handler may look at its stream's udata. New streams are refused. */
	t->freeing = true;
	tun_close_all(t);
	nghttp2_session_del(t->h2);
	free(t);
}

void *h2tun_udata(const struct h2tun *t)
{
	return t ? t->udata : NULL;
}

int h2tun_feed(struct h2tun *t, const uint8_t *p, size_t n)
{
	if (t->proto_err || t->fatal)
		return -EPROTO;
	if (h2glue_feed(t->h2, p, n) < 0) {
		t->proto_err = true;
		tun_close_all(t);
		return -EPROTO;
	}
	tun_run_due(t);
	/* Connection errors nghttp2 handles itself return success with a
	 * GOAWAY queued; on_frame_send marks the session when it goes. */
	return 0;
}

int h2tun_flush(struct h2tun *t)
{
	int rc;

	if (t->fatal)
		return -EPIPE;
	rc = h2glue_flush(t->h2, &t->sink, NULL);
	if (rc < 0)
		t->fatal = true;
	if (t->fatal || t->proto_err)
		tun_close_all(t);
	else
		tun_run_due(t);
	return rc;
}

int h2tun_done(const struct h2tun *t)
{
	return h2glue_done(t->h2, t->fatal, t->proto_err, t->n_streams > 0);
}

/* --- streams API ------------------------------------------------------------ */

/* Request values are sent as given: refuse what a peer would reject. */
static bool connect_value_ok(const char *v)
{
	size_t n;

	if (!v)
		return true;
	n = strlen(v);
	if (n == 0 || n >= H2TUN_VALUE_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)v[i] < 0x20 || (uint8_t)v[i] > 0x7e)
			return false;
	return true;
}

int32_t h2tun_connect(struct h2tun *t, const struct h2tun_connect_req *req, void *stream_udata)
{
	nghttp2_data_provider prd = { .read_callback = stream_data_read };
	struct h2tun_stream *s;
	nghttp2_nv nva[5];
	size_t n = 0;
	int32_t id;

	if (t->role != H2TUN_CLIENT || !req || !req->authority || !req->authority[0] ||
	    !connect_value_ok(req->authority) || !connect_value_ok(req->forwarded) ||
	    !connect_value_ok(req->traceparent) || !connect_value_ok(req->network) ||
	    (req->network && strlen(req->network) >= H2TUN_NETWORK_MAX))
		return -EINVAL;
	if (t->fatal || t->proto_err || t->freeing || t->goaway_sent || t->goaway_recv)
		return -EPIPE;
	if (h2tun_streams_available(t) == 0)
		return -EAGAIN;
	/* RFC 9113 §8.5: CONNECT has only :method and :authority. */
	nva[n++] = (nghttp2_nv)H2GLUE_NV(":method", "CONNECT");
	nva[n++] = (nghttp2_nv)H2GLUE_NV(":authority", req->authority);
	if (req->forwarded)
		nva[n++] = (nghttp2_nv)H2GLUE_NV("forwarded", req->forwarded);
	if (req->traceparent)
		nva[n++] = (nghttp2_nv)H2GLUE_NV("traceparent", req->traceparent);
	if (req->network)
		nva[n++] = (nghttp2_nv)H2GLUE_NV("x-forwarded-network", req->network);
	/* nghttp2 assigns the id at submit; take a table slot afterwards. The
	 * request cannot go out before the next flush, so the order is safe. */
	id = nghttp2_submit_request(t->h2, NULL, nva, n, &prd, NULL);
	if (id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE)
		return -EPIPE;		/* ids used up: a new tunnel is due */
	if (id < 0)
		return -ENOMEM;
	s = tun_stream_add(t, id);
	if (!s) {
		/* Cancels the queued HEADERS; on_frame_not_send finds no stream. */
		nghttp2_submit_rst_stream(t->h2, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
		return -ENOMEM;
	}
	s->flags = ST_KNOWN | ST_COUNTED;
	s->udata = stream_udata;
	t->n_local++;
	return id;
}

int h2tun_respond(struct h2tun *t, int32_t id, int status)
{
	struct h2tun_stream *s = tun_stream(t, id);
	nghttp2_data_provider prd = { .read_callback = stream_data_read };
	char code[4];
	nghttp2_nv nv = { (uint8_t *)":status", (uint8_t *)code, 7, 3,
			  NGHTTP2_NV_FLAG_NO_COPY_NAME };

	if (status < 200 || status > 599)
		return -EINVAL;
	if (t->role != H2TUN_SERVER || !s || !(s->flags & ST_KNOWN))
		return -ENOENT;
	if (s->flags & (ST_RESP | ST_RESET | ST_RST_RECV | ST_H2_GONE | ST_CLOSING))
		return -EPIPE;
	code[0] = (char)('0' + status / 100);
	code[1] = (char)('0' + status / 10 % 10);
	code[2] = (char)('0' + status % 10);
	code[3] = '\0';
	if (status == 200) {
		if (nghttp2_submit_response(t->h2, id, &nv, 1, &prd) != 0)
			return -ENOMEM;
		s->flags |= ST_RESP | ST_OPEN;
		return 0;
	}
	/* HEADERS with END_STREAM; on_frame_send then stops the client's
	 * side, and the stream ends as REFUSED. */
	if (nghttp2_submit_response(t->h2, id, &nv, 1, NULL) != 0)
		return -ENOMEM;
	s->flags |= ST_RESP | ST_REFUSED;
	sq_clear(t, s);
	stream_drop_hold(t, s);
	return 0;
}

ssize_t h2tun_write(struct h2tun *t, int32_t id, const uint8_t *p, size_t n)
{
	struct h2tun_stream *s = tun_stream(t, id);
	size_t room, take;

	if (!s || t->fatal || t->proto_err ||
	    (s->flags & (ST_SHUT | ST_RESET | ST_RST_RECV | ST_REFUSED | ST_H2_GONE |
			 ST_CLOSING)))
		return -EPIPE;
	room = H2TUN_SENDQ_MAX - s->sq.len;
	if (room > H2TUN_CONN_SENDQ_MAX - t->sq_total) {
		room = H2TUN_CONN_SENDQ_MAX - t->sq_total;
		if (n > room) {
			t->sq_starved = true;
			t->sq_cuts++;
		}
	}
	take = n < room ? n : room;
	if (take < n)
		s->flags |= ST_WANT_WR;
	if (take == 0)
		return 0;
	take = bq_append(&s->sq, p, take);
	if (take == 0)
		return -ENOMEM;
	t->sq_total += take;
	if (s->flags & ST_DEFERRED) {
		s->flags &= ~ST_DEFERRED;
		nghttp2_session_resume_data(t->h2, id);
	}
	return (ssize_t)take;
}

int h2tun_shutdown(struct h2tun *t, int32_t id)
{
	struct h2tun_stream *s = tun_stream(t, id);

	if (!s || (s->flags & (ST_RESET | ST_RST_RECV | ST_REFUSED | ST_H2_GONE | ST_CLOSING)))
		return -EPIPE;
	if (s->flags & ST_SHUT)
		return 0;
	s->flags |= ST_SHUT;
	if (s->flags & ST_DEFERRED) {
		s->flags &= ~ST_DEFERRED;
		nghttp2_session_resume_data(t->h2, id);
	}
	return 0;
}

void h2tun_reset(struct h2tun *t, int32_t id, uint32_t h2_error)
{
	struct h2tun_stream *s = tun_stream(t, id);

	/* A stream the peer reset already ends as the peer said. */
	if (!s || (s->flags & ST_RST_RECV))
		return;
	stream_abort(t, s, h2_error);
}

void h2tun_consume(struct h2tun *t, int32_t id, size_t n)
{
	struct h2tun_stream *s = tun_stream(t, id);

	if (s)
		stream_ack(t, s, n);
}

void h2tun_resume_read(struct h2tun *t, int32_t id)
{
	struct h2tun_stream *s = tun_stream(t, id);

	if (!s)
		return;
	if (s->flags & ST_DELIVERING) {
		/* Called from this stream's own on_data: the loop there
		 * re-offers instead of pausing. */
		s->flags |= ST_RESUMED;
		s->flags &= ~ST_PAUSED;
		return;
	}
	if (!(s->flags & ST_PAUSED))
		return;
	s->flags &= ~ST_PAUSED;
	stream_deliver(t, s);
}

void *h2tun_stream_udata(struct h2tun *t, int32_t id)
{
	struct h2tun_stream *s = tun_stream(t, id);

	return s ? s->udata : NULL;
}

void h2tun_stream_set_udata(struct h2tun *t, int32_t id, void *udata)
{
	struct h2tun_stream *s = tun_stream(t, id);

	if (s)
		s->udata = udata;
}

unsigned h2tun_stream_count(const struct h2tun *t)
{
	return t ? t->n_streams : 0;
}

unsigned h2tun_streams_available(const struct h2tun *t)
{
	uint32_t peer;

	if (t->role != H2TUN_CLIENT || t->fatal || t->proto_err || t->freeing ||
	    t->goaway_sent || t->goaway_recv)
		return 0;
	peer = nghttp2_session_get_remote_settings(t->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	if (peer > H2TUN_MAX_STREAMS)
		peer = H2TUN_MAX_STREAMS;	/* past that, a second tunnel */
	return peer > t->n_local ? peer - t->n_local : 0;
}

int h2tun_ping(struct h2tun *t)
{
	uint64_t seq = t->ping_seq + 1;

	if (t->fatal || t->proto_err)
		return -EPIPE;
	if (nghttp2_submit_ping(t->h2, NGHTTP2_FLAG_NONE, (const uint8_t *)&seq) != 0)
		return -ENOMEM;
	t->ping_seq = seq;
	t->ping_out = true;
	return 0;
}

int h2tun_ping_outstanding(const struct h2tun *t)
{
	return t->ping_out;
}

void h2tun_goaway(struct h2tun *t)
{
	if (t->goaway_sent || t->fatal || t->proto_err)
		return;
	t->goaway_sent = true;
	h2glue_goaway(t->h2);
}

size_t h2tun_send_queued(const struct h2tun *t)
{
	return t->sq_total;
}

uint64_t h2tun_send_cuts(const struct h2tun *t)
{
	return t->sq_cuts;
}

/* --- as an h2conn engine ----------------------------------------------------- */

static int h2tun_eng_feed(void *t, const uint8_t *p, size_t n, uint64_t now_ms)
{
	(void)now_ms;
	return h2tun_feed(t, p, n) < 0 ? -EPROTO : 0;
}

static int h2tun_eng_flush(void *t)
{
	return h2tun_flush(t);
}

static int h2tun_eng_done(const void *t)
{
	return h2tun_done(t);
}

static void h2tun_eng_free(void *t)
{
	h2tun_free(t);
}

const struct h2conn_engine h2tun_engine = {
	.feed = h2tun_eng_feed,
	.flush = h2tun_eng_flush,
	.done = h2tun_eng_done,
	.free = h2tun_eng_free,
};
