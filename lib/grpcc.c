/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC client session over nghttp2: request HEADERS and one length-prefixed
 * message, response messages parsed from DATA (size-capped), the status from
 * trailers or a trailers-only response, client-side deadlines. Pure like
 * grpc.c: bytes in through grpcc_session_feed, bytes out through the send
 * callback, time only as the now_ms the caller passes in.
 *
 * Callbacks (on_message, on_done) run from inside grpcc_session_feed,
 * grpcc_session_flush, grpcc_session_expire, grpcc_call_cancel and
 * grpcc_session_free. They may start and cancel calls, but must not free the
 * session. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>	/* strcasecmp */
#include <sys/queue.h>

#include <nghttp2/nghttp2.h>

#include <weft/grpc.h>
#include <weft/h2conn.h>
#include <weft/grpcc.h>
#include <weft/h2glue.h>

#define GRPCC_WINDOW		(1u << 20)	/* per stream and connection */
#define GRPCC_HDR_LIST_MAX	(64u << 10)	/* response header list we accept */
#define GRPCC_USER_HDR_MAX	32		/* caller's header pairs per call */
#define GRPCC_STATUS_MSG_MAX	1024		/* decoded grpc-message bytes kept */

/* Per-call flags. */
#define CALL_DONE	(1u << 0)	/* on_done ran; no more callbacks */
#define CALL_HDRS	(1u << 1)	/* final response HEADERS seen */
#define CALL_STATUS	(1u << 2)	/* grpc-status seen */
#define CALL_BAD_CTYPE	(1u << 3)	/* :status 200 without a gRPC content-type */

struct grpcc_call {
	struct grpcc_session *s;
	LIST_ENTRY(grpcc_call) link;	/* session's list, live and done */
	int32_t stream_id;
	unsigned flags;
	uint64_t deadline;		/* 0: none */

	uint8_t *req;			/* prefix + request message, until sent */
	size_t req_len, req_off;

	unsigned http_status;
	int grpc_status;
	char *status_msg;		/* decoded grpc-message, or NULL */

	struct h2glue_msg msg;		/* current response message */

	grpcc_message_fn on_message;
	grpcc_done_fn on_done;
	void *arg;
};

struct grpcc_session {
	nghttp2_session *h2;
	struct h2glue_sink sink;
	char *authority;
	LIST_HEAD(, grpcc_call) calls;
	bool proto_err;			/* connection error: GOAWAY queued */
	bool fatal;			/* the sink or nghttp2 failed */
	bool closing;			/* grpcc_session_free is running */
};

/* --- pure helpers ------------------------------------------------------------- */

/* gRPC's mapping of HTTP status codes for responses without grpc-status. */
static enum grpc_status grpcc_http_status(unsigned code)
{
	switch (code) {
	case 400: return GRPC_INTERNAL;
	case 401: return GRPC_UNAUTHENTICATED;
	case 403: return GRPC_PERMISSION_DENIED;
	case 404: return GRPC_UNIMPLEMENTED;
	case 429: case 502: case 503: case 504: return GRPC_UNAVAILABLE;
	default: return GRPC_UNKNOWN;
	}
}

/* gRPC's mapping of RST_STREAM codes (doc/PROTOCOL-HTTP2.md). */
static enum grpc_status grpcc_rst_status(uint32_t code)
{
	switch (code) {
	case NGHTTP2_REFUSED_STREAM: return GRPC_UNAVAILABLE;
	case NGHTTP2_CANCEL: return GRPC_CANCELLED;
	case NGHTTP2_ENHANCE_YOUR_CALM: return GRPC_RESOURCE_EXHAUSTED;
	case NGHTTP2_INADEQUATE_SECURITY: return GRPC_PERMISSION_DENIED;
	default: return GRPC_INTERNAL;
	}
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* grpc-message is percent-encoded UTF-8. A malformed escape is kept as it
 * is (the spec says decode what can be decoded). NUL bytes would cut the
 * string short, so they stay encoded. Returns a new string or NULL. */
static char *grpcc_message_decode(const uint8_t *v, size_t n)
{
	char *out = malloc((n < GRPCC_STATUS_MSG_MAX ? n : GRPCC_STATUS_MSG_MAX) + 1);
	size_t i = 0, o = 0;

	if (!out)
		return NULL;
	while (i < n && o < GRPCC_STATUS_MSG_MAX) {
		int hi, lo;

		if (v[i] == '%' && i + 2 < n &&
		    (hi = hexval(v[i + 1])) >= 0 && (lo = hexval(v[i + 2])) >= 0 &&
		    (hi | lo) != 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 3;
		} else {
			out[o++] = v[i] ? (char)v[i] : '?';
			i++;
		}
	}
	out[o] = '\0';
	return out;
}

/* grpc-status: 1 to 3 ASCII digits; codes we do not know are UNKNOWN. */
static int grpcc_status_parse(const uint8_t *v, size_t n)
{
	int st = 0;

	if (n == 0 || n > 3)
		return GRPC_UNKNOWN;
	for (size_t i = 0; i < n; i++) {
		if (v[i] < '0' || v[i] > '9')
			return GRPC_UNKNOWN;
		st = st * 10 + (v[i] - '0');
	}
	return st > 16 ? GRPC_UNKNOWN : st;
}

/* --- calls ---------------------------------------------------------------------- */

static struct grpcc_call *grpcc_call_find(struct grpcc_session *s, int32_t sid)
{
	struct grpcc_call *c;

	LIST_FOREACH(c, &s->calls, link)
		if (c->stream_id == sid)
			return c;
	return NULL;
}

static void call_free(struct grpcc_call *c)
{
	LIST_REMOVE(c, link);
	free(c->req);
	h2glue_msg_reset(&c->msg);
	free(c->status_msg);
	free(c);
}

/* Report the final status once. The call memory stays until its stream is
 * closed (or the session goes), so a callback up the stack that still
 * holds c sees CALL_DONE rather than freed memory. */
static void call_complete(struct grpcc_call *c, enum grpc_status st, const char *msg)
{
	if (c->flags & CALL_DONE)
		return;
	c->flags |= CALL_DONE;
	h2glue_msg_reset(&c->msg);
	if (c->on_done)
		c->on_done(c, st, msg ? msg : "", c->arg);
}

/* End the call from our side: report st and tell the server to stop. */
static void call_abort(struct grpcc_call *c, enum grpc_status st, const char *msg)
{
	if (c->flags & CALL_DONE)
		return;
	nghttp2_submit_rst_stream(c->s->h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_CANCEL);
	call_complete(c, st, msg);
}

/* The server ended its side: work out the status. */
static void call_finish(struct grpcc_call *c)
{
	if (c->flags & CALL_DONE)
		return;
	if (c->flags & CALL_STATUS) {
		if (c->grpc_status == GRPC_OK && c->msg.pfx_len > 0)
			call_complete(c, GRPC_INTERNAL, "response ended inside a message");
		else
			call_complete(c, c->grpc_status, c->status_msg);
	} else if (c->http_status != 200) {
		char m[64];

		snprintf(m, sizeof(m), "HTTP status %u without grpc-status", c->http_status);
		call_complete(c, grpcc_http_status(c->http_status), m);
	} else if (c->flags & CALL_BAD_CTYPE) {
		call_complete(c, GRPC_INTERNAL, "response content-type is not application/grpc");
	} else {
		call_complete(c, GRPC_UNKNOWN, "response ended without grpc-status");
	}
}

static ssize_t call_data_read(nghttp2_session *h2, int32_t sid, uint8_t *buf, size_t len,
			      uint32_t *data_flags, nghttp2_data_source *src, void *ud)
{
	struct grpcc_call *c = src->ptr;
	size_t n = c->req_len - c->req_off;

	(void)h2;
	(void)sid;
	(void)ud;
	if (n > len)
		n = len;
	if (n)
		memcpy(buf, c->req + c->req_off, n);
	c->req_off += n;
	if (c->req_off == c->req_len) {
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;	/* END_STREAM */
		free(c->req);
		c->req = NULL;
	}
	return (ssize_t)n;
}

/* Response body bytes: 5-byte prefixes and messages, handed out whole. */
static void call_body(struct grpcc_call *c, const uint8_t *p, size_t n)
{
	static const uint8_t empty[1];
	struct h2glue_msg *m = &c->msg;

	while (n > 0 && !(c->flags & CALL_DONE)) {
		int rc;

		if (m->pfx_len < 5) {
			rc = h2glue_msg_prefix(m, &p, &n);
			if (rc == 0)
				return;
			if (rc < 0) {
				call_abort(c, GRPC_INTERNAL, m->pfx[0] == 1 ?
					   "compressed response message (not negotiated)" :
					   "bad response message flags");
				return;
			}
			/* Refuse on the declared length, before buffering. */
			if (m->len > GRPC_MSG_MAX) {
				char e[96];

				snprintf(e, sizeof(e), "response message of %u bytes is larger "
					 "than the %u-byte limit", m->len, GRPC_MSG_MAX);
				call_abort(c, GRPC_RESOURCE_EXHAUSTED, e);
				return;
			}
		} else if (h2glue_msg_body(m, &p, &n) < 0) {
			call_abort(c, GRPC_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		if (m->pfx_len == 5 && m->got == m->len) {
			uint8_t *buf = m->buf;
			size_t len = m->got;

			/* Detach first: the callback may cancel the call. */
			m->buf = NULL;
			h2glue_msg_reset(m);
			if (c->on_message)
				c->on_message(c, buf ? buf : empty, len, c->arg);
			free(buf);
		}
	}
}

/* --- nghttp2 callbacks ------------------------------------------------------------ */

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *ud)
{
	struct grpcc_session *s = ud;
	struct grpcc_call *c;

	(void)h2;
	(void)flags;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	c = grpcc_call_find(s, frame->hd.stream_id);
	if (!c || (c->flags & CALL_DONE))
		return 0;
	if (namelen == 7 && !memcmp(name, ":status", 7)) {
		unsigned code = 0;

		for (size_t i = 0; i < valuelen && i < 3; i++)
			code = code * 10 + (unsigned)(value[i] - '0');
		/* 1xx are informational; the final response follows. */
		if (code >= 200) {
			c->http_status = code;
			c->flags |= CALL_HDRS;
		}
	} else if (namelen == 12 && !memcmp(name, "content-type", 12)) {
		/* application/grpc, application/grpc+proto, ...;params */
		if (valuelen < 16 || memcmp(value, "application/grpc", 16) ||
		    (valuelen > 16 && value[16] != '+' && value[16] != ';'))
			c->flags |= CALL_BAD_CTYPE;
	} else if (namelen == 11 && !memcmp(name, "grpc-status", 11)) {
		c->grpc_status = grpcc_status_parse(value, valuelen);
		c->flags |= CALL_STATUS;
	} else if (namelen == 12 && !memcmp(name, "grpc-message", 12)) {
		free(c->status_msg);
		c->status_msg = grpcc_message_decode(value, valuelen);
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct grpcc_session *s = ud;
	struct grpcc_call *c;

	(void)h2;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	c = grpcc_call_find(s, frame->hd.stream_id);
	if (!c)
		return 0;
	/* A content-type only matters on a 200; other statuses map. */
	if (frame->hd.type == NGHTTP2_HEADERS && c->http_status != 200)
		c->flags &= ~CALL_BAD_CTYPE;
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		call_finish(c);
	return 0;
}

static int on_data_chunk_recv(nghttp2_session *h2, uint8_t flags, int32_t sid,
			      const uint8_t *data, size_t len, void *ud)
{
	struct grpcc_session *s = ud;
	struct grpcc_call *c = grpcc_call_find(s, sid);

	(void)h2;
	(void)flags;
	/* After a final status the rest is dropped; nghttp2 still returns the
	 * flow-control credit. */
	if (c && !(c->flags & CALL_DONE))
		call_body(c, data, len);
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
	struct grpcc_session *s = ud;

	(void)h2;
	if (h2glue_goaway_failed(frame))
		s->proto_err = true;
	return 0;
}

/* A request that could not go out (GOAWAY received, stream IDs exhausted):
 * its stream may never have opened, so end the call here. */
static int on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame,
			     int lib_error, void *ud)
{
	struct grpcc_session *s = ud;
	struct grpcc_call *c;
	char m[128];

	(void)h2;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	c = grpcc_call_find(s, frame->hd.stream_id);
	if (!c)
		return 0;
	snprintf(m, sizeof(m), "request not sent: %s", nghttp2_strerror(lib_error));
	call_complete(c, GRPC_UNAVAILABLE, m);
	call_free(c);
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t sid, uint32_t error_code, void *ud)
{
	struct grpcc_session *s = ud;
	struct grpcc_call *c = grpcc_call_find(s, sid);

	(void)h2;
	if (!c)
		return 0;
	if (!(c->flags & CALL_DONE)) {
		char m[96];

		snprintf(m, sizeof(m), "stream reset (%s)", nghttp2_http2_strerror(error_code));
		call_complete(c, grpcc_rst_status(error_code), m);
	}
	call_free(c);
	return 0;
}

/* --- session --------------------------------------------------------------------- */

struct grpcc_session *grpcc_session_new(grpc_send_fn send, grpc_space_fn space, void *io,
					const char *authority)
{
	static const nghttp2_settings_entry iv[] = {
		{ NGHTTP2_SETTINGS_ENABLE_PUSH, 0 },
		{ NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, GRPCC_WINDOW },
		{ NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, GRPCC_HDR_LIST_MAX },
	};
	static const struct h2glue_setup setup = {
		.on_header = on_header,
		.on_frame_recv = on_frame_recv,
		.on_data_chunk_recv = on_data_chunk_recv,
		.on_frame_send = on_frame_send,
		.on_frame_not_send = on_frame_not_send,
		.on_stream_close = on_stream_close,
		.settings = iv,
		.n_settings = sizeof(iv) / sizeof(iv[0]),
		.conn_window = GRPCC_WINDOW,
	};
	struct grpcc_session *s;

	if (!send || !space || !authority) {
		errno = EINVAL;
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail_alloc;
	s->sink = (struct h2glue_sink){ send, space, io };
	LIST_INIT(&s->calls);
	s->authority = strdup(authority);
	if (!s->authority)
		goto fail_auth;
	if (h2glue_session_new(&s->h2, &setup, s) != 0)
		goto fail_h2;
	return s;

fail_h2:
	free(s->authority);
fail_auth:
	free(s);
fail_alloc:
	errno = ENOMEM;
	return NULL;
}

/* Fail every call that has not ended yet. New calls made from the
 * callbacks are inserted at the head, so they are not visited. */
static void grpcc_fail_all(struct grpcc_session *s, enum grpc_status st, const char *msg)
{
	struct grpcc_call *c;

	LIST_FOREACH(c, &s->calls, link)
		call_complete(c, st, msg);
}

void grpcc_session_free(struct grpcc_session *s)
{
	if (!s)
		return;
	s->closing = true;
	grpcc_fail_all(s, GRPC_UNAVAILABLE, "connection closed");
	/* nghttp2_session_del does not report stream closes. */
	nghttp2_session_del(s->h2);
	while (!LIST_EMPTY(&s->calls))
		call_free(LIST_FIRST(&s->calls));
	free(s->authority);
	free(s);
}

int grpcc_session_feed(struct grpcc_session *s, const uint8_t *p, size_t n, uint64_t now_ms)
{
	(void)now_ms;	/* deadlines are set at call start; kept for symmetry */
	if (s->proto_err || s->fatal)
		return -EPROTO;
	if (h2glue_feed(s->h2, p, n) < 0) {
		s->proto_err = true;
		grpcc_fail_all(s, GRPC_UNAVAILABLE, "HTTP/2 protocol error from the server");
		return -EPROTO;
	}
	if (s->proto_err)
		grpcc_fail_all(s, GRPC_UNAVAILABLE, "HTTP/2 protocol error from the server");
	return 0;
}

int grpcc_session_flush(struct grpcc_session *s)
{
	int rc, lib_err;

	if (s->fatal)
		return -EPIPE;
	rc = h2glue_flush(s->h2, &s->sink, &lib_err);
	if (rc < 0) {
		s->fatal = true;
		if (lib_err)
			grpcc_fail_all(s, GRPC_INTERNAL, nghttp2_strerror(lib_err));
		else
			grpcc_fail_all(s, GRPC_UNAVAILABLE, "cannot write to the connection");
		return rc;
	}
	/* A GOAWAY for a connection error may just have gone out. */
	if (s->proto_err)
		grpcc_fail_all(s, GRPC_UNAVAILABLE, "HTTP/2 protocol error from the server");
	return 0;
}

int grpcc_session_done(const struct grpcc_session *s)
{
	return h2glue_done(s->h2, s->fatal, s->proto_err, false);
}

uint64_t grpcc_session_expire(struct grpcc_session *s, uint64_t now_ms)
{
	struct grpcc_call *c;
	uint64_t next = 0;

	LIST_FOREACH(c, &s->calls, link)
		if (!(c->flags & CALL_DONE) && h2glue_deadline_due(c->deadline, now_ms, &next))
			call_abort(c, GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	return next;
}

int grpcc_session_ping(struct grpcc_session *s)
{
	if (s->closing || s->fatal || s->proto_err)
		return -EPIPE;
	return nghttp2_submit_ping(s->h2, NGHTTP2_FLAG_NONE, NULL) ? -ENOMEM : 0;
}

/* --- calls: API ---------------------------------------------------------------------- */

#define NV(n, v, vl) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), (vl), NGHTTP2_NV_FLAG_NONE }

/* Credentials go out as HPACK "literal never indexed": kept out of both
 * ends' dynamic tables (no long-lived copy of the token in either
 * process, no compression oracle on it) and marked so for any proxy that
 * re-encodes them (RFC 7541 §7.1.3). */
static uint8_t grpcc_header_flags(const char *name)
{
	return !strcasecmp(name, "authorization") || !strcasecmp(name, "proxy-authorization")
		? NGHTTP2_NV_FLAG_NO_INDEX : NGHTTP2_NV_FLAG_NONE;
}

struct grpcc_call *grpcc_call_start(struct grpcc_session *s, const char *path,
				    const char *const *headers, const uint8_t *msg, size_t len,
				    uint32_t timeout_ms, uint64_t now_ms,
				    grpcc_message_fn on_message, grpcc_done_fn on_done, void *arg)
{
	nghttp2_nv nva[7 + GRPCC_USER_HDR_MAX];
	nghttp2_data_provider prd;
	struct grpcc_call *c;
	char tmo[16];
	size_t n = 0;
	int32_t sid;

	if (!s || !path || path[0] != '/' || (len && !msg) || len > GRPC_MSG_MAX) {
		errno = EINVAL;
		return NULL;
	}
	if (s->closing || s->fatal || s->proto_err) {
		errno = EPIPE;
		return NULL;
	}
	nva[n++] = (nghttp2_nv)NV(":method", "POST", 4);
	nva[n++] = (nghttp2_nv)NV(":scheme", "https", 5);
	nva[n++] = (nghttp2_nv)NV(":path", path, strlen(path));
	nva[n++] = (nghttp2_nv)NV(":authority", s->authority, strlen(s->authority));
	nva[n++] = (nghttp2_nv)NV("content-type", "application/grpc", 16);
	nva[n++] = (nghttp2_nv)NV("te", "trailers", 8);
	if (timeout_ms) {
		/* At most 8 digits: whole seconds (rounded up) past that. */
		if (timeout_ms <= 99999999u)
			snprintf(tmo, sizeof(tmo), "%um", timeout_ms);
		else
			snprintf(tmo, sizeof(tmo), "%uS", (timeout_ms + 999u) / 1000u);
		nva[n++] = (nghttp2_nv)NV("grpc-timeout", tmo, strlen(tmo));
	}
	for (size_t i = 0; headers && headers[i]; i += 2) {
		if (!headers[i + 1] || headers[i][0] == ':' || i / 2 >= GRPCC_USER_HDR_MAX) {
			errno = EINVAL;
			return NULL;
		}
		nva[n] = (nghttp2_nv)NV(headers[i], headers[i + 1], strlen(headers[i + 1]));
		nva[n++].flags = grpcc_header_flags(headers[i]);
	}

	c = calloc(1, sizeof(*c));
	if (!c)
		goto fail_alloc;
	c->req = malloc(5 + len);
	if (!c->req)
		goto fail_req;
	grpc_frame_header(c->req, (uint32_t)len);
	if (len)
		memcpy(c->req + 5, msg, len);
	c->req_len = 5 + len;
	c->s = s;
	c->grpc_status = -1;
	c->on_message = on_message;
	c->on_done = on_done;
	c->arg = arg;
	if (timeout_ms)
		c->deadline = now_ms + timeout_ms;
	prd.source.ptr = c;
	prd.read_callback = call_data_read;
	/* nghttp2 copies names and values (no NO_COPY flags). */
	sid = nghttp2_submit_request(s->h2, NULL, nva, n, &prd, NULL);
	if (sid < 0)
		goto fail_submit;
	c->stream_id = sid;
	LIST_INSERT_HEAD(&s->calls, c, link);
	return c;

fail_submit:
	free(c->req);
fail_req:
	free(c);
fail_alloc:
	errno = ENOMEM;
	return NULL;
}

void grpcc_call_cancel(struct grpcc_call *c)
{
	if (!c)
		return;
	call_abort(c, GRPC_CANCELLED, "cancelled by the client");
}

/* --- as an h2conn engine ----------------------------------------------------- */

static int grpcc_eng_feed(void *s, const uint8_t *p, size_t n, uint64_t now_ms)
{
	return grpcc_session_feed(s, p, n, now_ms) ? -EPROTO : 0;
}

static int grpcc_eng_flush(void *s)
{
	return grpcc_session_flush(s) < 0 ? -EPIPE : 0;
}

static int grpcc_eng_done(const void *s)
{
	return grpcc_session_done(s);
}

static void grpcc_eng_free(void *s)
{
	grpcc_session_free(s);
}

const struct h2conn_engine grpcc_session_engine = {
	.feed = grpcc_eng_feed,
	.flush = grpcc_eng_flush,
	.done = grpcc_eng_done,
	.free = grpcc_eng_free,
};
