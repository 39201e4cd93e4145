/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC server session over nghttp2: request validation, length-prefixed
 * message framing, status trailers and deadlines. Pure: bytes in through
 * grpc_session_feed, bytes out through the caller's send callback, time only
 * as the now_ms the caller passes in. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <nghttp2/nghttp2.h>

#include <weft/h2conn.h>
#include <weft/grpc.h>
#include <weft/h2glue.h>

#define GRPC_STREAMS_DEFAULT	100
#define GRPC_WINDOW		(1u << 20)	/* per stream and connection */
#define GRPC_HDR_MAX		64		/* request headers per call */
#define GRPC_HDR_BYTES		8192		/* names + values per call */
/* Buffered request bytes per session, whatever max_streams says: a peer
 * that opens many streams and declares big messages is refused early
 * rather than allowed to pin max_streams * max_msg of memory. */
#define GRPC_SESSION_BUF_MAX	(64u << 20)
#define GRPC_STATUS_MSG_MAX	1024		/* grpc-message bytes before encoding */
/* Calls refused to a session none of whose calls was ever admitted: a peer
 * that keeps trying without a credential is cut rather than answered
 * (each answer is memory held while it does not read). */
#define GRPC_PREAUTH_REFUSALS	16

/* Per-call flags. */
#define CALL_HELD	(1u << 0)	/* the handler owns the call (called, not finished) */
#define CALL_DONE	(1u << 1)	/* final status set; no more messages */
#define CALL_RESP	(1u << 2)	/* response HEADERS submitted */
#define CALL_DEFERRED	(1u << 3)	/* data provider returned DEFERRED */
#define CALL_ES_RECV	(1u << 4)	/* client half-closed its side */
#define CALL_HDR_OVER	(1u << 5)	/* request headers exceeded the bounds */
#define CALL_HAVE_MSG	(1u << 6)	/* the request message is complete */
#define CALL_TIMEOUT_BAD (1u << 7)	/* grpc-timeout did not parse */
#define CALL_DISPATCHED	(1u << 8)	/* the handler was called */
#define CALL_ADMITTED	(1u << 9)	/* passed the auth hook */

struct grpc_chunk {
	struct grpc_chunk *next;
	size_t len;			/* prefix + message */
	uint8_t data[];
};

struct grpc_hdr {
	uint16_t name;			/* offsets into call->hbuf, NUL-terminated */
	uint16_t value;
};

struct grpc_call {
	struct grpc_session *s;
	LIST_ENTRY(grpc_call) link;	/* session's live list */
	int32_t stream_id;
	unsigned flags;

	/* request metadata */
	struct grpc_hdr hdr[GRPC_HDR_MAX];
	unsigned n_hdr;
	char *hbuf;
	size_t hlen, hcap;
	uint64_t deadline;		/* 0: none */

	/* request message */
	struct h2glue_msg msg;
	uint32_t reserved;		/* bytes counted against s->buffered */
	struct grpc_quota *quota;	/* the caller's, from the auth hook */
	char who[GRPC_PRINCIPAL_MAX];

	/* response */
	struct grpc_chunk *oq_head, *oq_tail;
	size_t oq_off;			/* consumed bytes of oq_head */
	size_t pending;
	enum grpc_status status;
	char *status_msg;		/* percent-encoded, or NULL */
	uint32_t rst_code;		/* RST_STREAM after our END_STREAM when the
					 * client is still sending */

	grpc_cancel_fn on_cancel;
	void *cancel_arg;
};

struct grpc_session {
	nghttp2_session *h2;
	const struct grpc_server *srv;
	struct h2glue_sink sink;
	void *conn_ctx;
	uint32_t max_msg;
	uint32_t max_streams;
	uint64_t buf_max;		/* cap on s->buffered */
	uint64_t buffered;		/* reserved request bytes, all calls */
	uint64_t now_ms;
	LIST_HEAD(, grpc_call) calls;
	bool proto_err;			/* connection error: GOAWAY queued */
	bool fatal;			/* the sink or nghttp2 failed */
	bool draining;
	/* Until a call is admitted (only with an auth hook): */
	bool authed;			/* windows opened */
	uint32_t preauth_in;		/* bytes read */
	uint32_t preauth_refused;	/* calls refused */
	uint64_t preauth_deadline;	/* from the first bytes; 0: not yet */
	const char *err;		/* why the session failed, or NULL */
};

/* --- pure helpers ---------------------------------------------------------- */

static const char *const status_names[] = {
	[0] = "OK", [1] = "CANCELLED", [2] = "UNKNOWN", [3] = "INVALID_ARGUMENT",
	[4] = "DEADLINE_EXCEEDED", [5] = "NOT_FOUND", [6] = "ALREADY_EXISTS",
	[7] = "PERMISSION_DENIED", [8] = "RESOURCE_EXHAUSTED",
	[9] = "FAILED_PRECONDITION", [10] = "ABORTED", [11] = "OUT_OF_RANGE",
	[12] = "UNIMPLEMENTED", [13] = "INTERNAL", [14] = "UNAVAILABLE",
	[15] = "DATA_LOSS", [16] = "UNAUTHENTICATED",
};

const char *grpc_status_name(enum grpc_status st)
{
	if ((unsigned)st >= sizeof(status_names) / sizeof(status_names[0]))
		return "UNKNOWN";
	return status_names[st];
}

int grpc_frame_parse(const uint8_t *p, size_t n, uint32_t *len)
{
	if (n < 5)
		return 0;
	/* Flag 1 is compression, which we never advertise; anything else is
	 * undefined by the spec. Both are the peer's error. */
	if (p[0] != 0)
		return -EINVAL;
	*len = (uint32_t)p[1] << 24 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 8 | p[4];
	return 5;
}

void grpc_frame_header(uint8_t out[5], uint32_t len)
{
	out[0] = 0;
	out[1] = len >> 24;
	out[2] = len >> 16;
	out[3] = len >> 8;
	out[4] = len;
}

int grpc_timeout_parse(const char *v, uint64_t *ms)
{
	uint64_t n = 0;
	size_t i;

	if (!v)
		return -EINVAL;
	/* TimeoutValue is 1 to 8 ASCII digits, then exactly one unit. */
	for (i = 0; v[i] >= '0' && v[i] <= '9'; i++) {
		if (i == 8)
			return -EINVAL;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	if (i == 0 || v[i] == '\0' || v[i + 1] != '\0')
		return -EINVAL;
	switch (v[i]) {
	case 'H': *ms = n * 3600000; break;
	case 'M': *ms = n * 60000; break;
	case 'S': *ms = n * 1000; break;
	case 'm': *ms = n; break;
	/* Round sub-millisecond units up: a deadline must not fire early. */
	case 'u': *ms = (n + 999) / 1000; break;
	case 'n': *ms = (n + 999999) / 1000000; break;
	default: return -EINVAL;
	}
	return 0;
}

/* grpc-message is percent-encoded: bytes outside 0x20..0x7e and '%'. A space
 * at either end is encoded too, since RFC 9113 peers (nghttp2 among them)
 * reject field values with leading or trailing whitespace. Returns a new
 * string or NULL on allocation failure. */
static char *grpc_message_encode(const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strnlen(msg, GRPC_STATUS_MSG_MAX), i, o = 0;
	char *out = malloc(n * 3 + 1);

	if (!out)
		return NULL;
	for (i = 0; i < n; i++) {
		uint8_t c = (uint8_t)msg[i];
		bool edge_space = c == ' ' && (i == 0 || i == n - 1);

		if (c < 0x20 || c > 0x7e || c == '%' || edge_space) {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = '\0';
	return out;
}

/* --- calls ----------------------------------------------------------------- */

static void call_msg_release(struct grpc_call *c)
{
	c->s->buffered -= c->reserved;
	if (c->quota)
		c->quota->bytes -= c->reserved;
	c->reserved = 0;
	h2glue_msg_reset(&c->msg);
}

static void call_free(struct grpc_call *c)
{
	struct grpc_chunk *k, *next;

	if (!c)
		return;
	LIST_REMOVE(c, link);
	call_msg_release(c);
	if (c->quota)
		c->quota->calls--;
	for (k = c->oq_head; k; k = next) {
		next = k->next;
		free(k);
	}
	free(c->status_msg);
	free(c->hbuf);
	free(c);
}

/* The handler loses the call: tell it once, through on_cancel. */
static void call_cancel(struct grpc_call *c)
{
	if (!(c->flags & CALL_HELD))
		return;
	c->flags &= ~CALL_HELD;
	if (c->on_cancel)
		c->on_cancel(c, c->cancel_arg);
}

static const char *call_hdr_find(const struct grpc_call *c, const char *name)
{
	unsigned i;

	for (i = 0; i < c->n_hdr; i++)
		if (strcmp(c->hbuf + c->hdr[i].name, name) == 0)
			return c->hbuf + c->hdr[i].value;
	return NULL;
}

static ssize_t call_data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf,
			      size_t len, uint32_t *data_flags,
			      nghttp2_data_source *src, void *ud);

/* Submit the response HEADERS once, with the data provider that drains the
 * outbound queue. */
static int call_respond(struct grpc_call *c)
{
	nghttp2_nv nva[] = {
		H2GLUE_NV(":status", "200"),
		H2GLUE_NV("content-type", "application/grpc"),
	};
	nghttp2_data_provider prd = { .source.ptr = c, .read_callback = call_data_read };

	if (c->flags & CALL_RESP) {
		if (c->flags & CALL_DEFERRED) {
			c->flags &= ~CALL_DEFERRED;
			if (nghttp2_session_resume_data(c->s->h2, c->stream_id) != 0)
				return -EPIPE;
		}
		return 0;
	}
	if (nghttp2_submit_response(c->s->h2, c->stream_id, nva, 2, &prd) != 0)
		return -ENOMEM;
	c->flags |= CALL_RESP;
	return 0;
}

/* End the call from the server side with a status. Before any response
 * HEADERS this is a trailers-only response carrying http_status; otherwise
 * the data provider sends the trailers once the queue is drained. rst is the
 * RST_STREAM code sent after our END_STREAM if the client is still sending. */
static void call_end(struct grpc_call *c, const char *http_status,
		     enum grpc_status st, const char *msg, uint32_t rst)
{
	char code[12];

	if (c->flags & CALL_DONE)
		return;
	c->flags |= CALL_DONE;
	c->status = st;
	c->rst_code = rst;
	/* A status without its message is still a valid answer. */
	c->status_msg = grpc_message_encode(msg ? msg : "");
	/* Inside the handler the request bytes stay valid until it returns;
	 * call_dispatch releases them then. */
	if (!(c->flags & CALL_DISPATCHED))
		call_msg_release(c);

	if (c->flags & CALL_RESP) {
		call_respond(c);	/* resume the provider; it adds trailers */
		return;
	}
	snprintf(code, sizeof(code), "%u", (unsigned)st);
	nghttp2_nv nva[] = {
		H2GLUE_NV(":status", http_status),
		H2GLUE_NV("content-type", "application/grpc"),
		H2GLUE_NV("grpc-status", code),
		H2GLUE_NV("grpc-message", c->status_msg ? c->status_msg : ""),
	};
	/* Trailers-only: one HEADERS frame with END_STREAM. nghttp2 copies
	 * the values, so code may live on the stack. */
	if (nghttp2_submit_response(c->s->h2, c->stream_id, nva,
				    c->status_msg && *c->status_msg ? 4 : 3, NULL) != 0)
		nghttp2_submit_rst_stream(c->s->h2, NGHTTP2_FLAG_NONE,
					  c->stream_id, NGHTTP2_INTERNAL_ERROR);
	c->flags |= CALL_RESP;
}

static void call_fail(struct grpc_call *c, enum grpc_status st, const char *msg)
{
	call_end(c, "200", st, msg, NGHTTP2_NO_ERROR);
}

static ssize_t call_data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf,
			      size_t len, uint32_t *data_flags,
			      nghttp2_data_source *src, void *ud)
{
	struct grpc_call *c = src->ptr;
	size_t o = 0;
	char code[12];

	(void)ud;
	while (o < len && c->oq_head) {
		struct grpc_chunk *k = c->oq_head;
		size_t take = k->len - c->oq_off;

		if (take > len - o)
			take = len - o;
		memcpy(buf + o, k->data + c->oq_off, take);
		o += take;
		c->oq_off += take;
		c->pending -= take;
		if (c->oq_off == k->len) {
			c->oq_head = k->next;
			if (!c->oq_head)
				c->oq_tail = NULL;
			c->oq_off = 0;
			free(k);
		}
	}
	if (o > 0)
		return (ssize_t)o;
	if (!(c->flags & CALL_DONE)) {
		c->flags |= CALL_DEFERRED;
		return NGHTTP2_ERR_DEFERRED;
	}
	snprintf(code, sizeof(code), "%u", (unsigned)c->status);
	nghttp2_nv nva[] = {
		H2GLUE_NV("grpc-status", code),
		H2GLUE_NV("grpc-message", c->status_msg ? c->status_msg : ""),
	};
	*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	if (nghttp2_submit_trailer(h2, sid, nva,
				   c->status_msg && *c->status_msg ? 2 : 1) != 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return 0;
}

/* Request HEADERS are complete: check them and resolve the method.
 * Returns true when the call may go on to read its body. */
static bool call_check(struct grpc_call *c)
{
	const char *method = call_hdr_find(c, ":method");
	const char *ctype = call_hdr_find(c, "content-type");
	const char *path = call_hdr_find(c, ":path");
	const char *enc = call_hdr_find(c, "grpc-encoding");

	if (c->flags & CALL_HDR_OVER) {
		call_fail(c, GRPC_RESOURCE_EXHAUSTED, "request metadata too large");
		return false;
	}
	if (!method || strcmp(method, "POST") != 0) {
		call_end(c, "405", GRPC_UNIMPLEMENTED, "method must be POST",
			 NGHTTP2_NO_ERROR);
		return false;
	}
	/* application/grpc, application/grpc+proto, application/grpc;... */
	if (!ctype || strncmp(ctype, "application/grpc", 16) != 0 ||
	    (ctype[16] != '\0' && ctype[16] != '+' && ctype[16] != ';')) {
		call_end(c, "415", GRPC_INTERNAL, "invalid gRPC content-type",
			 NGHTTP2_NO_ERROR);
		return false;
	}
	if (c->flags & CALL_TIMEOUT_BAD) {
		call_fail(c, GRPC_INTERNAL, "malformed grpc-timeout");
		return false;
	}
	if (enc && strcmp(enc, "identity") != 0) {
		call_fail(c, GRPC_UNIMPLEMENTED, "compression not supported");
		return false;
	}
	for (size_t i = 0; path && i < c->s->srv->n_methods; i++)
		if (strcmp(c->s->srv->methods[i].path, path) == 0)
			return true;
	call_fail(c, GRPC_UNIMPLEMENTED, "unknown method");
	return false;
}

/* End the session with GOAWAY(code): the peer is not worth more reading. */
static void session_cut(struct grpc_session *s, uint32_t code, const char *why)
{
	if (s->proto_err)
		return;
	nghttp2_session_terminate_session(s->h2, code);
	s->proto_err = true;
	s->err = why;
}

/* The first admitted call opens the session: stream windows to
 * GRPC_WINDOW through a new SETTINGS (it applies to the streams already
 * open too), the connection window through a WINDOW_UPDATE. */
static void session_open(struct grpc_session *s)
{
	nghttp2_settings_entry iv = { NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPC_WINDOW };

	s->authed = true;
	if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, &iv, 1) != 0 ||
	    nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0,
						  GRPC_WINDOW) != 0)
		session_cut(s, NGHTTP2_INTERNAL_ERROR, "out of memory");
}

/* Valid request HEADERS: ask the auth hook before any of the body is
 * accepted. Returns true when the call is admitted. */
static bool call_admit(struct grpc_call *c)
{
	struct grpc_session *s = c->s;
	struct grpc_auth a = { .quota = NULL };
	enum grpc_status st;

	if (!s->srv->auth) {
		c->flags |= CALL_ADMITTED;
		return true;
	}
	st = s->srv->auth(c, s->srv->auth_arg, &a);
	if (st != GRPC_OK) {
		a.why[sizeof(a.why) - 1] = '\0';
		call_fail(c, st, a.why[0] ? a.why : "not authenticated");
		return false;
	}
	c->flags |= CALL_ADMITTED;
	memcpy(c->who, a.who, sizeof(c->who));
	c->who[sizeof(c->who) - 1] = '\0';
	c->quota = a.quota;
	if (c->quota)
		c->quota->calls++;
	if (!s->authed)
		session_open(s);
	return true;
}

/* A call refused at its HEADERS: its metadata is of no more use, so it
 * does not stay pinned while the refusal waits for the peer to read. */
static void call_refused(struct grpc_call *c)
{
	struct grpc_session *s = c->s;

	free(c->hbuf);
	c->hbuf = NULL;
	c->hlen = c->hcap = 0;
	c->n_hdr = 0;
	if (!s->authed && ++s->preauth_refused >= GRPC_PREAUTH_REFUSALS)
		session_cut(s, NGHTTP2_ENHANCE_YOUR_CALM,
			    "too many calls refused before one was authenticated");
}

static const struct grpc_method *call_method(const struct grpc_call *c)
{
	const char *path = call_hdr_find(c, ":path");

	for (size_t i = 0; path && i < c->s->srv->n_methods; i++)
		if (strcmp(c->s->srv->methods[i].path, path) == 0)
			return &c->s->srv->methods[i];
	return NULL;
}

/* The client half-closed: the request is whatever arrived. */
static void call_dispatch(struct grpc_call *c)
{
	static const uint8_t empty[1];
	const struct grpc_method *m;

	if (c->flags & (CALL_DONE | CALL_DISPATCHED))
		return;
	if (!(c->flags & CALL_HAVE_MSG)) {
		call_fail(c, GRPC_INTERNAL, c->msg.pfx_len ? "truncated request message"
							   : "missing request message");
		return;
	}
	m = call_method(c);
	if (!m) {	/* checked at HEADERS time; unreachable */
		call_fail(c, GRPC_UNIMPLEMENTED, "unknown method");
		return;
	}
	c->flags |= CALL_HELD | CALL_DISPATCHED;
	m->handler(c, c->msg.buf ? c->msg.buf : empty, c->msg.got, m->arg);
	/* The handler may have finished (call_end released the buffer) or
	 * kept the call; either way the request bytes are no longer needed. */
	call_msg_release(c);
}

/* Body bytes for one call: the 5-byte prefix, then the message. */
static void call_body(struct grpc_call *c, const uint8_t *p, size_t n)
{
	struct grpc_session *s = c->s;
	struct h2glue_msg *m = &c->msg;

	while (n > 0 && !(c->flags & CALL_DONE)) {
		int rc;

		if (c->flags & CALL_HAVE_MSG) {
			call_fail(c, GRPC_INTERNAL, "more than one request message");
			return;
		}
		if (m->pfx_len == 5) {
			if (h2glue_msg_body(m, &p, &n) < 0) {
				call_fail(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
				return;
			}
			if (m->got == m->len)
				c->flags |= CALL_HAVE_MSG;
			continue;
		}
		rc = h2glue_msg_prefix(m, &p, &n);
		if (rc == 0)
			return;
		if (rc < 0) {
			call_fail(c, m->pfx[0] == 1 ? GRPC_UNIMPLEMENTED : GRPC_INTERNAL,
				  m->pfx[0] == 1 ? "compression not supported" : "bad message flags");
			return;
		}
		/* Refuse before buffering anything: the declared length is
		 * what the peer promises to send. */
		if (m->len > s->max_msg) {
			call_fail(c, GRPC_RESOURCE_EXHAUSTED, "request message larger than max");
			return;
		}
		if (s->buffered + m->len > s->buf_max) {
			call_fail(c, GRPC_RESOURCE_EXHAUSTED, "too many request bytes buffered");
			return;
		}
		if (c->quota && c->quota->bytes_max &&
		    c->quota->bytes + m->len > c->quota->bytes_max) {
			call_fail(c, GRPC_RESOURCE_EXHAUSTED,
				  "too many request bytes buffered for this caller");
			return;
		}
		s->buffered += m->len;
		if (c->quota)
			c->quota->bytes += m->len;
		c->reserved = m->len;
		if (m->len == 0)
			c->flags |= CALL_HAVE_MSG;
	}
}

/* --- nghttp2 callbacks ------------------------------------------------------ */

static struct grpc_call *stream_call(nghttp2_session *h2, int32_t sid)
{
	return nghttp2_session_get_stream_user_data(h2, sid);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct grpc_session *s = ud;
	struct grpc_call *c;

	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;	/* RSTs the stream */
	c->s = s;
	c->stream_id = frame->hd.stream_id;
	if (nghttp2_session_set_stream_user_data(h2, c->stream_id, c) != 0) {
		free(c);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	LIST_INSERT_HEAD(&s->calls, c, link);
	return 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *ud)
{
	struct grpc_session *s = ud;
	struct grpc_call *c;
	size_t need;

	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;	/* client trailers carry nothing we use */
	c = stream_call(h2, frame->hd.stream_id);
	if (!c || (c->flags & CALL_HDR_OVER))
		return 0;
	need = namelen + valuelen + 2;
	if (c->n_hdr == GRPC_HDR_MAX || c->hlen + need > GRPC_HDR_BYTES + 2 * GRPC_HDR_MAX) {
		/* Keep reading the block (HPACK state must stay in sync) but
		 * answer RESOURCE_EXHAUSTED once it ends. */
		c->flags |= CALL_HDR_OVER;
		return 0;
	}
	if (c->hlen + need > c->hcap) {
		size_t cap = c->hcap ? c->hcap : 512;
		char *b;

		while (cap < c->hlen + need)
			cap *= 2;
		b = realloc(c->hbuf, cap);
		if (!b)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		c->hbuf = b;
		c->hcap = cap;
	}
	c->hdr[c->n_hdr].name = (uint16_t)c->hlen;
	memcpy(c->hbuf + c->hlen, name, namelen);
	c->hlen += namelen;
	c->hbuf[c->hlen++] = '\0';
	c->hdr[c->n_hdr].value = (uint16_t)c->hlen;
	memcpy(c->hbuf + c->hlen, value, valuelen);
	c->hlen += valuelen;
	c->hbuf[c->hlen++] = '\0';
	c->n_hdr++;

	if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0) {
		uint64_t ms;

		if (grpc_timeout_parse(c->hbuf + c->hdr[c->n_hdr - 1].value, &ms) == 0)
			c->deadline = (s->now_ms + ms) ? s->now_ms + ms : 1;
		else
			c->flags |= CALL_TIMEOUT_BAD;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct grpc_call *c;

	(void)ud;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	c = stream_call(h2, frame->hd.stream_id);
	if (!c)
		return 0;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		c->flags |= CALL_ES_RECV;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST &&
	    (!call_check(c) || !call_admit(c))) {
		call_refused(c);
		return 0;
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call_dispatch(c);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *h2, uint8_t flags, int32_t sid,
			      const uint8_t *data, size_t len, void *ud)
{
	struct grpc_call *c = stream_call(h2, sid);

	(void)flags;
	(void)ud;
	/* After a final status the rest of the body is dropped unread;
	 * nghttp2 still returns the flow-control credit. */
	if (c && !(c->flags & CALL_DONE))
		call_body(c, data, len);
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct grpc_session *s = ud;
	struct grpc_call *c;

	if (h2glue_goaway_failed(frame))
		s->proto_err = true;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	c = stream_call(h2, frame->hd.stream_id);
	/* Our side is complete but the client is still sending: tell it to
	 * stop (RFC 9113 §8.1), and release the stream. */
	if (c && !(c->flags & CALL_ES_RECV))
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, c->stream_id,
					  c->rst_code);
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error_code,
			   void *ud)
{
	struct grpc_call *c = stream_call(h2, sid);

	(void)error_code;
	(void)ud;
	if (!c)
		return 0;
	nghttp2_session_set_stream_user_data(h2, sid, NULL);
	call_cancel(c);
	call_free(c);
	return 0;
}

/* --- session --------------------------------------------------------------- */

struct grpc_session *grpc_session_new(const struct grpc_server *srv,
				      grpc_send_fn send, grpc_space_fn space,
				      void *io, void *conn_ctx)
{
	struct grpc_session *s;
	nghttp2_settings_entry iv[3];
	struct h2glue_setup setup = {
		.flags = H2GLUE_SERVER,
		.on_begin_headers = on_begin_headers,
		.on_header = on_header,
		.on_frame_recv = on_frame_recv,
		.on_data_chunk_recv = on_data_chunk_recv,
		.on_frame_send = on_frame_send,
		.on_stream_close = on_stream_close,
		.settings = iv,
		.n_settings = 3,
		.conn_window = GRPC_WINDOW,
	};

	if (!srv || !send || !space || (srv->n_methods && !srv->methods)) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail_alloc;
	s->srv = srv;
	s->sink = (struct h2glue_sink){ send, space, io };
	s->conn_ctx = conn_ctx;
	LIST_INIT(&s->calls);
	s->max_msg = srv->max_msg ? srv->max_msg : GRPC_MSG_MAX;
	s->max_streams = srv->max_streams ? srv->max_streams : GRPC_STREAMS_DEFAULT;
	s->buf_max = (uint64_t)s->max_msg * s->max_streams;
	if (s->buf_max > GRPC_SESSION_BUF_MAX)
		s->buf_max = s->max_msg > GRPC_SESSION_BUF_MAX ? s->max_msg
							       : GRPC_SESSION_BUF_MAX;

	/* With an auth hook nothing is credited until a call is admitted: a
	 * zero stream window means a stranger's body is never sent, let alone
	 * buffered, and the connection window stays at the protocol's 64 KiB. */
	s->authed = !srv->auth;
	if (!s->authed)
		setup.conn_window = NGHTTP2_INITIAL_CONNECTION_WINDOW_SIZE;
	iv[0] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, s->max_streams };
	iv[1] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
					  s->authed ? GRPC_WINDOW : 0 };
	/* nghttp2 counts 32 bytes of overhead per field. */
	iv[2] = (nghttp2_settings_entry){ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
					  GRPC_HDR_BYTES + 32 * GRPC_HDR_MAX };
	if (h2glue_session_new(&s->h2, &setup, s) != 0)
		goto fail_h2;
	return s;

fail_h2:
	free(s);
fail_alloc:
	errno = ENOMEM;
	return NULL;
}

void grpc_session_free(struct grpc_session *s)
{
	struct grpc_call *c;

	if (!s)
		return;
	/* on_cancel first, while every call is still intact: a handler may
	 * look at another call it holds. */
	LIST_FOREACH(c, &s->calls, link)
		call_cancel(c);
	/* nghttp2_session_del does not report stream closes. */
	nghttp2_session_del(s->h2);
	while (!LIST_EMPTY(&s->calls))
		call_free(LIST_FIRST(&s->calls));
	free(s);
}

/* Feed what the pre-authentication allowance still covers; the call that
 * authenticates may come anywhere in it, and then the rest is fed too. */
static int session_feed_preauth(struct grpc_session *s, const uint8_t **p, size_t *n)
{
	size_t take = GRPC_PREAUTH_MAX - s->preauth_in;

	if (!s->preauth_deadline)
		s->preauth_deadline = s->now_ms + GRPC_PREAUTH_MS;
	if (take > *n)
		take = *n;
	s->preauth_in += (uint32_t)take;
	if (h2glue_feed(s->h2, *p, take) < 0)
		return -EPROTO;
	*p += take;
	*n -= take;
	if (*n && !s->authed && !s->proto_err)
		session_cut(s, NGHTTP2_ENHANCE_YOUR_CALM,
			    "peer sent more than 64 KiB before authenticating");
	return s->proto_err ? -EPROTO : 0;
}

int grpc_session_feed(struct grpc_session *s, const uint8_t *p, size_t n, uint64_t now_ms)
{
	if (s->proto_err || s->fatal)
		return -EPROTO;
	s->now_ms = now_ms;
	if (!s->authed && session_feed_preauth(s, &p, &n) < 0) {
		if (!s->err)
			s->err = "HTTP/2 protocol error";
		s->proto_err = true;
		return -EPROTO;
	}
	if (n && h2glue_feed(s->h2, p, n) < 0) {
		s->err = "HTTP/2 protocol error";
		s->proto_err = true;
		return -EPROTO;
	}
	/* A connection error nghttp2 answered itself is marked by
	 * on_frame_send once its GOAWAY goes out, so the caller's flush +
	 * grpc_session_done check sees it. */
	return 0;
}

int grpc_session_flush(struct grpc_session *s)
{
	int rc;

	if (s->fatal)
		return -EPIPE;
	rc = h2glue_flush(s->h2, &s->sink, NULL);
	if (rc < 0)
		s->fatal = true;
	return rc;
}

int grpc_session_done(const struct grpc_session *s)
{
	return h2glue_done(s->h2, s->fatal, s->proto_err, false);
}

uint64_t grpc_session_expire(struct grpc_session *s, uint64_t now_ms)
{
	struct grpc_call *c;
	uint64_t next = 0;

	/* Due now once, when the cut is made, so that the caller flushes the
	 * GOAWAY; never again, or a peer that does not read would spin us. */
	if (!s->authed && !s->proto_err &&
	    h2glue_deadline_due(s->preauth_deadline, now_ms, &next)) {
		session_cut(s, NGHTTP2_NO_ERROR, "no call authenticated in time");
		next = now_ms ? now_ms : 1;
	}
	LIST_FOREACH(c, &s->calls, link) {
		if ((c->flags & CALL_DONE) || !h2glue_deadline_due(c->deadline, now_ms, &next))
			continue;
		/* Take the call back from the handler first, so nothing it
		 * does in on_cancel lands after the status. Queued messages
		 * are still sent: they were answers given in time. */
		call_cancel(c);
		call_end(c, "200", GRPC_DEADLINE_EXCEEDED, "deadline exceeded",
			 NGHTTP2_CANCEL);
	}
	return next;
}

const char *grpc_session_error(const struct grpc_session *s)
{
	return s ? s->err : NULL;
}

int grpc_session_authenticated(const struct grpc_session *s)
{
	return s && s->authed;
}

void grpc_session_drain(struct grpc_session *s)
{
	if (s->draining)
		return;
	s->draining = true;
	h2glue_goaway(s->h2);
}

/* --- call API for handlers --------------------------------------------------- */

const char *grpc_call_header(const struct grpc_call *c, const char *name)
{
	if (!c || !name)
		return NULL;
	return call_hdr_find(c, name);
}

const char *grpc_call_path(const struct grpc_call *c)
{
	return grpc_call_header(c, ":path");
}

void *grpc_call_conn_ctx(const struct grpc_call *c)
{
	return c ? c->s->conn_ctx : NULL;
}

const char *grpc_call_principal(const struct grpc_call *c)
{
	return c ? c->who : "";
}

int grpc_call_send(struct grpc_call *c, const uint8_t *msg, size_t len)
{
	struct grpc_chunk *k;

	if (!c || !(c->flags & CALL_HELD) || (c->flags & CALL_DONE))
		return -EPIPE;
	if (len > UINT32_MAX - 5 || (len && !msg))
		return -EMSGSIZE;
	k = malloc(sizeof(*k) + 5 + len);
	if (!k)
		return -ENOMEM;
	k->next = NULL;
	k->len = 5 + len;
	grpc_frame_header(k->data, (uint32_t)len);
	if (len)
		memcpy(k->data + 5, msg, len);
	if (c->oq_tail)
		c->oq_tail->next = k;
	else
		c->oq_head = k;
	c->oq_tail = k;
	c->pending += k->len;
	return call_respond(c);
}

void grpc_call_finish(struct grpc_call *c, enum grpc_status st, const char *msg)
{
	if (!c || !(c->flags & CALL_HELD))
		return;
	c->flags &= ~CALL_HELD;
	call_end(c, "200", st, msg, NGHTTP2_NO_ERROR);
}

void grpc_call_on_cancel(struct grpc_call *c, grpc_cancel_fn fn, void *arg)
{
	if (!c)
		return;
	c->on_cancel = fn;
	c->cancel_arg = arg;
}

size_t grpc_call_pending(const struct grpc_call *c)
{
	return c ? c->pending : 0;
}

/* --- as an h2conn engine ----------------------------------------------------- */

static int grpc_eng_feed(void *s, const uint8_t *p, size_t n, uint64_t now_ms)
{
	return grpc_session_feed(s, p, n, now_ms) ? -EPROTO : 0;
}

static int grpc_eng_flush(void *s)
{
	return grpc_session_flush(s) ? -EPIPE : 0;
}

static int grpc_eng_done(const void *s)
{
	return grpc_session_done(s);
}

static void grpc_eng_free(void *s)
{
	grpc_session_free(s);
}

static const char *grpc_eng_error(const void *s)
{
	return grpc_session_error(s);
}

const struct h2conn_engine grpc_session_engine = {
	.feed = grpc_eng_feed,
	.flush = grpc_eng_flush,
	.done = grpc_eng_done,
	.free = grpc_eng_free,
	.error = grpc_eng_error,
};
