/* SPDX-License-Identifier: Apache-2.0 */
/* grpc.c: the server session driven in memory by a real nghttp2 client
 * session (bytes piped both ways), plus the pure framing/timeout helpers. */
#include <errno.h>
#include <malloc.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include <weft/grpc.h>

#include "../check.h"

/* --- what the client saw on one stream -------------------------------------- */

struct resp {
	char status[8];			/* :status */
	char grpc_status[8];
	char grpc_message[256];
	int n_header_blocks;		/* 1: trailers-only, 2: headers + trailers */
	uint8_t *body;
	size_t body_len;
	bool closed;
	uint32_t close_code;
};

struct req_body {
	const uint8_t *data;		/* first len bytes of the body */
	size_t len;
	size_t total;			/* bytes beyond len are zeros */
	size_t off;
	size_t chunk;			/* max bytes per DATA frame; 0: no cap */
	bool open;			/* no END_STREAM after total bytes */
};

struct harness {
	nghttp2_session *cli;
	struct grpc_session *srv;
	uint8_t *out;			/* server output of one flush */
	size_t out_len, out_cap;
	size_t space;			/* what the sink reports */
	uint64_t now;
	int feed_rc;
};

static int sink_send(void *io, const uint8_t *p, size_t n)
{
	struct harness *h = io;

	if (h->out_len + n > h->out_cap) {
		size_t cap = h->out_cap ? h->out_cap * 2 : 65536;

		while (cap < h->out_len + n)
			cap *= 2;
		h->out = realloc(h->out, cap);
		if (!h->out)
			return -ENOMEM;
		h->out_cap = cap;
	}
	memcpy(h->out + h->out_len, p, n);
	h->out_len += n;
	return 0;
}

static size_t sink_space(void *io)
{
	struct harness *h = io;

	return h->space;
}

static void copy_val(char *dst, size_t cap, const uint8_t *v, size_t n)
{
	if (n >= cap)
		n = cap - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int cli_on_header(nghttp2_session *s, const nghttp2_frame *f,
			 const uint8_t *name, size_t namelen, const uint8_t *value,
			 size_t valuelen, uint8_t flags, void *ud)
{
	struct resp *r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);

	(void)flags;
	(void)ud;
	if (!r)
		return 0;
	if (namelen == 7 && !memcmp(name, ":status", 7))
		copy_val(r->status, sizeof(r->status), value, valuelen);
	else if (namelen == 11 && !memcmp(name, "grpc-status", 11))
		copy_val(r->grpc_status, sizeof(r->grpc_status), value, valuelen);
	else if (namelen == 12 && !memcmp(name, "grpc-message", 12))
		copy_val(r->grpc_message, sizeof(r->grpc_message), value, valuelen);
	return 0;
}

static int cli_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
	struct resp *r;

	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	r = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
	if (r)
		r->n_header_blocks++;
	return 0;
}

static int cli_on_data(nghttp2_session *s, uint8_t flags, int32_t sid,
		       const uint8_t *data, size_t len, void *ud)
{
	struct resp *r = nghttp2_session_get_stream_user_data(s, sid);

	(void)flags;
	(void)ud;
	if (!r)
		return 0;
	r->body = realloc(r->body, r->body_len + len);
	memcpy(r->body + r->body_len, data, len);
	r->body_len += len;
	return 0;
}

static int cli_on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
	struct resp *r = nghttp2_session_get_stream_user_data(s, sid);

	(void)ud;
	if (r) {
		r->closed = true;
		r->close_code = code;
	}
	return 0;
}

static ssize_t cli_read(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len,
			uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct req_body *b = src->ptr;
	size_t n = b->total - b->off, i;

	(void)s;
	(void)sid;
	(void)ud;
	if (n == 0 && b->open)
		return NGHTTP2_ERR_DEFERRED;
	if (n > len)
		n = len;
	if (b->chunk && n > b->chunk)
		n = b->chunk;
	for (i = 0; i < n; i++)
		buf[i] = b->off + i < b->len ? b->data[b->off + i] : 0;
	b->off += n;
	if (b->off == b->total && !b->open)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static void pump(struct harness *h)
{
	for (int round = 0; round < 100000; round++) {
		const uint8_t *p;
		ssize_t n;
		bool progress = false;

		while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
			int rc = grpc_session_feed(h->srv, p, (size_t)n, h->now);

			if (rc < 0)
				h->feed_rc = rc;
			progress = true;
		}
		h->out_len = 0;
		grpc_session_flush(h->srv);
		if (h->out_len) {
			nghttp2_session_mem_recv(h->cli, h->out, h->out_len);
			progress = true;
		}
		if (!progress)
			break;
	}
}

/* --- server side: methods ---------------------------------------------------- */

static struct grpc_call *held;
static int cancels;
static int holds;
static bool many_held;		/* several calls held: held is only the last */
static size_t held_req_len;
static char seen_auth[64];
static void *seen_ctx;
static char seen_path[64];

static void on_cancel_count(struct grpc_call *c, void *arg)
{
	(void)arg;
	CHECK(many_held || c == held);
	cancels++;
	held = NULL;
}

static void h_echo(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	const char *auth = grpc_call_header(c, "authorization");

	(void)arg;
	snprintf(seen_auth, sizeof(seen_auth), "%s", auth ? auth : "");
	snprintf(seen_path, sizeof(seen_path), "%s", grpc_call_path(c));
	seen_ctx = grpc_call_conn_ctx(c);
	CHECK_EQ_INT(grpc_call_send(c, msg, len), 0);
	grpc_call_finish(c, GRPC_OK, NULL);
}

static void h_hold(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)msg;
	(void)arg;
	held = c;
	holds++;
	held_req_len = len;
	grpc_call_on_cancel(c, on_cancel_count, NULL);
}

static void h_fail(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)msg;
	(void)len;
	(void)arg;
	grpc_call_finish(c, GRPC_INVALID_ARGUMENT, " bad csr: na\xc3\xafve \xe2\x9c\x93 100%");
}

static const struct grpc_method methods[] = {
	{ "/t.Svc/Echo", h_echo, NULL },
	{ "/t.Svc/Hold", h_hold, NULL },
	{ "/t.Svc/Fail", h_fail, NULL },
};

static const struct grpc_server server = {
	.methods = methods,
	.n_methods = 3,
};

static int ctx_token;

static void harness_init(struct harness *h, const struct grpc_server *srv)
{
	nghttp2_session_callbacks *cbs;

	memset(h, 0, sizeof(*h));
	h->space = 1 << 20;
	h->now = 1000;
	h->srv = grpc_session_new(srv, sink_send, sink_space, h, &ctx_token);
	CHECK(h->srv != NULL);
	nghttp2_session_callbacks_new(&cbs);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cli_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cli_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cli_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cli_on_close);
	nghttp2_session_client_new(&h->cli, cbs, h);
	nghttp2_session_callbacks_del(cbs);
	nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, NULL, 0);
	held = NULL;
	cancels = 0;
	holds = 0;
	many_held = false;
}

static void harness_free(struct harness *h)
{
	grpc_session_free(h->srv);
	nghttp2_session_del(h->cli);
	free(h->out);
}

static void resp_free(struct resp *r)
{
	free(r->body);
}

#define HDR(n, v) { (uint8_t *)(n), (uint8_t *)(v), strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE }

static const char *call_auth = "Bearer tok";	/* NULL: no authorization header */

/* Start a call. body NULL: HEADERS with END_STREAM. extra: more headers. */
static int32_t call_start(struct harness *h, const char *path, const char *ctype,
			  const char *timeout, struct req_body *body, struct resp *r,
			  const nghttp2_nv *extra, size_t n_extra)
{
	nghttp2_nv nva[128] = {
		HDR(":method", "POST"),
		HDR(":scheme", "http"),
		HDR(":authority", "weft-agent"),
		HDR(":path", path),
		HDR("content-type", ctype),
		HDR("te", "trailers"),
		HDR("authorization", call_auth ? call_auth : ""),
	};
	size_t n = call_auth ? 7 : 6;
	nghttp2_data_provider prd = { .source.ptr = body, .read_callback = cli_read };

	if (timeout)
		nva[n++] = (nghttp2_nv)HDR("grpc-timeout", timeout);
	for (size_t i = 0; i < n_extra && n < 128; i++)
		nva[n++] = extra[i];
	memset(r, 0, sizeof(*r));
	return nghttp2_submit_request(h->cli, NULL, nva, n, body ? &prd : NULL, r);
}

/* The plain call most tests make: content-type application/grpc, no
 * grpc-timeout, no extra headers. */
static int32_t call_plain(struct harness *h, const char *path, struct req_body *body,
			  struct resp *r)
{
	return call_start(h, path, "application/grpc", NULL, body, r, NULL, 0);
}

/* A request body holding one message. buf must hold 5 + len bytes. */
static struct req_body body_msg(uint8_t *buf, const void *msg, uint32_t len)
{
	grpc_frame_header(buf, len);
	memcpy(buf + 5, msg, len);
	return (struct req_body){ .data = buf, .len = 5 + len, .total = 5 + len };
}

/* Split a response body into messages; returns the count, -1 if malformed. */
static int body_messages(const struct resp *r, const uint8_t **first, uint32_t *first_len)
{
	size_t off = 0;
	int n = 0;

	while (off < r->body_len) {
		uint32_t len;

		if (grpc_frame_parse(r->body + off, r->body_len - off, &len) != 5 ||
		    len > r->body_len - off - 5)
			return -1;
		if (n == 0 && first) {
			*first = r->body + off + 5;
			*first_len = len;
		}
		off += 5 + len;
		n++;
	}
	return n;
}

/* --- tests -------------------------------------------------------------------- */

static void test_helpers(void)
{
	uint8_t b[5];
	uint32_t len = 7;
	uint64_t ms = 0;

	grpc_frame_header(b, 0x01020304);
	CHECK(b[0] == 0 && b[1] == 1 && b[2] == 2 && b[3] == 3 && b[4] == 4);
	CHECK_EQ_INT(grpc_frame_parse(b, 5, &len), 5);
	CHECK_EQ_INT(len, 0x01020304);
	CHECK_EQ_INT(grpc_frame_parse(b, 4, &len), 0);
	CHECK_EQ_INT(grpc_frame_parse(b, 0, &len), 0);
	grpc_frame_header(b, UINT32_MAX);
	CHECK_EQ_INT(grpc_frame_parse(b, 5, &len), 5);
	CHECK_EQ_INT(len, UINT32_MAX);
	b[0] = 1;
	CHECK_EQ_INT(grpc_frame_parse(b, 5, &len), -EINVAL);
	b[0] = 0x80;
	CHECK_EQ_INT(grpc_frame_parse(b, 5, &len), -EINVAL);

	CHECK_EQ_INT(grpc_timeout_parse("100m", &ms), 0);
	CHECK_EQ_INT(ms, 100);
	CHECK_EQ_INT(grpc_timeout_parse("5S", &ms), 0);
	CHECK_EQ_INT(ms, 5000);
	CHECK_EQ_INT(grpc_timeout_parse("2M", &ms), 0);
	CHECK_EQ_INT(ms, 120000);
	CHECK_EQ_INT(grpc_timeout_parse("1H", &ms), 0);
	CHECK_EQ_INT(ms, 3600000);
	CHECK_EQ_INT(grpc_timeout_parse("1500u", &ms), 0);
	CHECK_EQ_INT(ms, 2);		/* rounded up, never early */
	CHECK_EQ_INT(grpc_timeout_parse("1n", &ms), 0);
	CHECK_EQ_INT(ms, 1);
	CHECK_EQ_INT(grpc_timeout_parse("0m", &ms), 0);
	CHECK_EQ_INT(ms, 0);
	CHECK_EQ_INT(grpc_timeout_parse("99999999H", &ms), 0);
	CHECK_EQ_INT(ms, 99999999ull * 3600000);
	CHECK_EQ_INT(grpc_timeout_parse("00000001S", &ms), 0);
	CHECK_EQ_INT(ms, 1000);
	CHECK_EQ_INT(grpc_timeout_parse("123456789m", &ms), -EINVAL);	/* 9 digits */
	CHECK_EQ_INT(grpc_timeout_parse("", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("m", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("100", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("100x", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("100mm", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("-1m", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse(" 1m", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse("1 m", &ms), -EINVAL);
	CHECK_EQ_INT(grpc_timeout_parse(NULL, &ms), -EINVAL);

	CHECK_EQ_STR(grpc_status_name(GRPC_OK), "OK");
	CHECK_EQ_STR(grpc_status_name(GRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
	CHECK_EQ_STR(grpc_status_name(GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
	CHECK_EQ_STR(grpc_status_name(GRPC_UNIMPLEMENTED), "UNIMPLEMENTED");
	CHECK_EQ_STR(grpc_status_name((enum grpc_status)99), "UNKNOWN");
}

static void test_unary_echo(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[64];
	struct req_body b = body_msg(buf, "hello", 5);
	const uint8_t *m = NULL;
	uint32_t ml = 0;

	harness_init(&h, &server);
	seen_ctx = NULL;
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_INT(r.close_code, 0);
	CHECK_EQ_STR(r.status, "200");
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(r.n_header_blocks, 2);
	CHECK_EQ_INT(body_messages(&r, &m, &ml), 1);
	CHECK(ml == 5 && m && memcmp(m, "hello", 5) == 0);
	CHECK_EQ_STR(seen_auth, "Bearer tok");
	CHECK_EQ_STR(seen_path, "/t.Svc/Echo");
	CHECK(seen_ctx == &ctx_token);
	CHECK_EQ_INT(h.feed_rc, 0);
	resp_free(&r);

	/* grpc+proto is a gRPC content type too; and a zero-length message. */
	b = body_msg(buf, "", 0);
	CHECK(call_start(&h, "/t.Svc/Echo", "application/grpc+proto", NULL, &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, &m, &ml), 1);
	CHECK_EQ_INT(ml, 0);
	resp_free(&r);

	/* The client closes; the server has nothing more to do. */
	nghttp2_submit_goaway(h.cli, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
	pump(&h);
	CHECK(grpc_session_done(h.srv));
	CHECK_EQ_INT(h.feed_rc, 0);
	harness_free(&h);
}

static void test_errors_before_handler(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[64];
	struct req_body b = body_msg(buf, "x", 1);

	harness_init(&h, &server);

	CHECK(call_plain(&h, "/t.Svc/Nope", &b, &r) > 0);
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_STR(r.status, "200");
	CHECK_EQ_STR(r.grpc_status, "12");
	CHECK_EQ_INT(r.n_header_blocks, 1);	/* trailers-only */
	CHECK_EQ_INT(r.body_len, 0);
	resp_free(&r);

	b = body_msg(buf, "x", 1);
	CHECK(call_start(&h, "/t.Svc/Echo", "text/plain", NULL, &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK_EQ_STR(r.status, "415");
	CHECK_EQ_STR(r.grpc_status, "13");
	resp_free(&r);

	b = body_msg(buf, "x", 1);
	CHECK(call_start(&h, "/t.Svc/Echo", "application/grpcx", NULL, &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK_EQ_STR(r.status, "415");
	resp_free(&r);

	/* No body at all: a unary request is exactly one message. */
	CHECK(call_plain(&h, "/t.Svc/Echo", NULL, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "13");
	CHECK_EQ_STR(r.grpc_message, "missing request message");
	resp_free(&r);

	/* Truncated: prefix promises 10 bytes, 3 arrive, then END_STREAM. */
	grpc_frame_header(buf, 10);
	memcpy(buf + 5, "abc", 3);
	b = (struct req_body){ .data = buf, .len = 8, .total = 8 };
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "13");
	resp_free(&r);

	/* Two messages on a unary call. */
	grpc_frame_header(buf, 1);
	buf[5] = 'a';
	grpc_frame_header(buf + 6, 1);
	buf[11] = 'b';
	b = (struct req_body){ .data = buf, .len = 12, .total = 12 };
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "13");
	resp_free(&r);

	/* Compressed flag: we advertise no compression. */
	b = body_msg(buf, "zz", 2);
	buf[0] = 1;
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "12");
	CHECK_EQ_STR(r.grpc_message, "compression not supported");
	resp_free(&r);

	/* Malformed grpc-timeout. */
	b = body_msg(buf, "x", 1);
	CHECK(call_start(&h, "/t.Svc/Echo", "application/grpc", "10", &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "13");
	resp_free(&r);

	/* Too much metadata: 70 extra headers. */
	{
		nghttp2_nv extra[70];
		char names[70][24];

		for (int i = 0; i < 70; i++) {
			snprintf(names[i], sizeof(names[i]), "x-md-%d", i);
			extra[i] = (nghttp2_nv)HDR(names[i], "v");
		}
		b = body_msg(buf, "x", 1);
		CHECK(call_start(&h, "/t.Svc/Echo", "application/grpc", NULL, &b, &r,
				 extra, 70) > 0);
		pump(&h);
		CHECK_EQ_STR(r.grpc_status, "8");
		resp_free(&r);
	}

	/* After all of that the connection still serves. */
	b = body_msg(buf, "ok", 2);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, NULL, NULL), 1);
	resp_free(&r);
	CHECK_EQ_INT(h.feed_rc, 0);
	CHECK(!grpc_session_done(h.srv));
	harness_free(&h);
}

static void test_oversized(void)
{
	struct harness h;
	struct resp r, r2;
	uint8_t buf[16];
	struct req_body big, b;

	harness_init(&h, &server);
	/* Declares 5 MiB and really sends it: the server answers after the
	 * prefix and stops the upload with RST_STREAM. */
	grpc_frame_header(buf, 5u << 20);
	big = (struct req_body){ .data = buf, .len = 5, .total = 5 + (5u << 20) };
	CHECK(call_plain(&h, "/t.Svc/Echo", &big, &r) > 0);
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_STR(r.grpc_status, "8");
	CHECK_EQ_INT(r.n_header_blocks, 1);
	CHECK(big.off < big.total);		/* the upload was cut short */
	CHECK_EQ_INT(h.feed_rc, 0);

	b = body_msg(buf, "again", 5);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r2) > 0);
	pump(&h);
	CHECK_EQ_STR(r2.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r2, NULL, NULL), 1);
	resp_free(&r);
	resp_free(&r2);
	harness_free(&h);

	/* A lower per-server cap applies the same way. */
	static const struct grpc_server small = { .methods = methods, .n_methods = 3,
						  .max_msg = 16 };
	uint8_t big17[32];
	harness_init(&h, &small);
	b = body_msg(big17, "0123456789abcdefg", 17);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "8");
	resp_free(&r);
	b = body_msg(big17, "0123456789abcdef", 16);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "0");
	resp_free(&r);
	harness_free(&h);
}

static void test_deadline(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "t", 1);

	harness_init(&h, &server);
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now), 0);
	CHECK(call_start(&h, "/t.Svc/Hold", "application/grpc", "100m", &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK(held != NULL);
	CHECK(!r.closed);
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + 50), h.now + 100);
	pump(&h);
	CHECK(!r.closed);
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + 150), 0);
	CHECK_EQ_INT(cancels, 1);		/* the handler was told */
	CHECK(held == NULL);
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_STR(r.grpc_status, "4");
	resp_free(&r);

	/* A streaming call past its deadline: queued messages go out, then
	 * DEADLINE_EXCEEDED. */
	b = body_msg(buf, "t", 1);
	CHECK(call_start(&h, "/t.Svc/Hold", "application/grpc", "1S", &b, &r, NULL, 0) > 0);
	pump(&h);
	CHECK(held != NULL);
	CHECK_EQ_INT(grpc_call_send(held, (const uint8_t *)"m1", 2), 0);
	pump(&h);
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + 999), h.now + 1000);
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + 1000), 0);
	CHECK_EQ_INT(cancels, 2);
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_INT(body_messages(&r, NULL, NULL), 1);
	CHECK_EQ_STR(r.grpc_status, "4");
	CHECK_EQ_STR(r.grpc_message, "deadline exceeded");
	resp_free(&r);
	harness_free(&h);
	CHECK_EQ_INT(cancels, 2);		/* not again at free */
}

static void test_server_streaming(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "sub", 3);
	const uint8_t *m = NULL;
	uint32_t ml = 0;

	harness_init(&h, &server);
	CHECK(call_plain(&h, "/t.Svc/Hold", &b, &r) > 0);
	pump(&h);
	CHECK(held != NULL);
	CHECK_EQ_INT(held_req_len, 3);
	CHECK(!r.closed);
	CHECK_EQ_INT(r.n_header_blocks, 0);	/* nothing sent yet */

	for (int i = 0; i < 3; i++) {
		char msg[16];
		int n = snprintf(msg, sizeof(msg), "event-%d", i);

		CHECK_EQ_INT(grpc_call_send(held, (const uint8_t *)msg, (size_t)n), 0);
		CHECK_EQ_INT(grpc_call_pending(held), 5 + (size_t)n);
		pump(&h);
		CHECK_EQ_INT(grpc_call_pending(held), 0);
		CHECK_EQ_INT(body_messages(&r, NULL, NULL), i + 1);
		CHECK(!r.closed);
	}
	/* A paused sink keeps bytes pending. */
	h.space = 0;
	CHECK_EQ_INT(grpc_call_send(held, (const uint8_t *)"late", 4), 0);
	pump(&h);
	CHECK_EQ_INT(grpc_call_pending(held), 9);
	h.space = 1 << 20;
	grpc_call_finish(held, GRPC_OK, "");
	held = NULL;
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_INT(r.close_code, 0);
	CHECK_EQ_INT(r.n_header_blocks, 2);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, &m, &ml), 4);
	CHECK(ml == 7 && memcmp(m, "event-0", 7) == 0);
	CHECK(r.body_len >= 4 && memcmp(r.body + r.body_len - 4, "late", 4) == 0);
	CHECK_EQ_INT(cancels, 0);
	resp_free(&r);
	harness_free(&h);
}

static void test_client_reset(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "t", 1);
	int32_t sid;

	harness_init(&h, &server);
	sid = call_plain(&h, "/t.Svc/Hold", &b, &r);
	pump(&h);
	CHECK(held != NULL);
	CHECK_EQ_INT(grpc_call_send(held, (const uint8_t *)"m", 1), 0);
	nghttp2_submit_rst_stream(h.cli, NGHTTP2_FLAG_NONE, sid, NGHTTP2_CANCEL);
	pump(&h);
	CHECK_EQ_INT(cancels, 1);
	CHECK(held == NULL);
	resp_free(&r);

	/* A held call when the session goes away gets on_cancel, once. */
	b = body_msg(buf, "t", 1);
	call_plain(&h, "/t.Svc/Hold", &b, &r);
	pump(&h);
	CHECK(held != NULL);
	harness_free(&h);
	CHECK_EQ_INT(cancels, 2);
	resp_free(&r);
}

static void test_bad_preface(void)
{
	static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	struct harness h;
	bool goaway = false;

	harness_init(&h, &server);
	CHECK_EQ_INT(grpc_session_feed(h.srv, (const uint8_t *)junk, sizeof(junk) - 1, 0),
		     -EPROTO);
	h.out_len = 0;
	CHECK_EQ_INT(grpc_session_flush(h.srv), 0);
	/* Walk the frames the server wrote: SETTINGS..., then GOAWAY. */
	for (size_t off = 0; off + 9 <= h.out_len;) {
		size_t len = (size_t)h.out[off] << 16 | h.out[off + 1] << 8 | h.out[off + 2];

		if (h.out[off + 3] == NGHTTP2_GOAWAY)
			goaway = true;
		off += 9 + len;
	}
	CHECK(goaway);
	CHECK(grpc_session_done(h.srv));
	CHECK_EQ_INT(grpc_session_feed(h.srv, (const uint8_t *)"x", 1, 0), -EPROTO);
	harness_free(&h);

	/* A valid preface, then a frame nghttp2 treats as a connection
	 * error (DATA on stream 0). */
	harness_init(&h, &server);
	static const uint8_t data0[] = { 0, 0, 1, 0, 0, 0, 0, 0, 0, 'x' };
	pump(&h);
	CHECK_EQ_INT(h.feed_rc, 0);
	/* nghttp2 queues GOAWAY itself; feed may not see it, but after the
	 * flush the session is done and refuses more input. */
	grpc_session_feed(h.srv, data0, sizeof(data0), 0);
	h.out_len = 0;
	CHECK_EQ_INT(grpc_session_flush(h.srv), 0);
	CHECK(h.out_len >= 9 && h.out[3] == NGHTTP2_GOAWAY);
	CHECK(grpc_session_done(h.srv));
	CHECK_EQ_INT(grpc_session_feed(h.srv, data0, sizeof(data0), 0), -EPROTO);
	harness_free(&h);
}

static void test_split_body(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[512], msg[300];
	struct req_body b;
	const uint8_t *m = NULL;
	uint32_t ml = 0;

	for (size_t i = 0; i < sizeof(msg); i++)
		msg[i] = (uint8_t)(i * 7 + 3);
	b = body_msg(buf, msg, sizeof(msg));
	b.chunk = 1;				/* one byte per DATA frame */
	harness_init(&h, &server);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, &m, &ml), 1);
	CHECK(ml == sizeof(msg) && memcmp(m, msg, sizeof(msg)) == 0);
	resp_free(&r);
	harness_free(&h);
}

static void test_large_message(void)
{
	struct harness h;
	struct resp r;
	size_t len = 3u << 20;		/* above the 1 MiB stream window */
	uint8_t *buf = malloc(5 + len);
	struct req_body b;
	const uint8_t *m = NULL;
	uint32_t ml = 0;

	grpc_frame_header(buf, (uint32_t)len);
	for (size_t i = 0; i < len; i++)
		buf[5 + i] = (uint8_t)(i ^ (i >> 8));
	b = (struct req_body){ .data = buf, .len = 5 + len, .total = 5 + len };
	harness_init(&h, &server);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, &m, &ml), 1);
	CHECK(ml == len && memcmp(m, buf + 5, len) == 0);
	resp_free(&r);
	harness_free(&h);
	free(buf);
}

/* Declared sizes are reserved against a per-session budget (64 MiB), so
 * many streams promising 4 MiB each are refused before they pin memory. */
static void test_session_budget(void)
{
	struct harness h;
	struct resp r[17];
	uint8_t pfx[17][5];
	struct req_body b[17];
	uint8_t buf[16];
	struct req_body ok;
	struct resp rok;

	harness_init(&h, &server);
	for (int i = 0; i < 17; i++) {
		grpc_frame_header(pfx[i], GRPC_MSG_MAX);
		b[i] = (struct req_body){ .data = pfx[i], .len = 5, .total = 5, .open = true };
		call_plain(&h, "/t.Svc/Echo", &b[i], &r[i]);
	}
	pump(&h);
	for (int i = 0; i < 16; i++)
		CHECK(!r[i].closed);
	CHECK(r[16].closed);
	CHECK_EQ_STR(r[16].grpc_status, "8");
	CHECK_EQ_STR(r[16].grpc_message, "too many request bytes buffered");
	/* A small call still fits once a big one is gone. */
	nghttp2_submit_rst_stream(h.cli, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL);
	ok = body_msg(buf, "s", 1);
	call_plain(&h, "/t.Svc/Echo", &ok, &rok);
	pump(&h);
	CHECK_EQ_STR(rok.grpc_status, "0");
	CHECK_EQ_INT(h.feed_rc, 0);
	harness_free(&h);
	for (int i = 0; i < 17; i++)
		resp_free(&r[i]);
	resp_free(&rok);
}

static void test_status_message_encoding(void)
{
	struct harness h;
	struct resp r;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "t", 1);

	harness_init(&h, &server);
	CHECK(call_plain(&h, "/t.Svc/Fail", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "3");
	/* Inner spaces stay; the leading one, non-ASCII and '%' are encoded. */
	CHECK_EQ_STR(r.grpc_message, "%20bad csr: na%C3%AFve %E2%9C%93 100%25");
	resp_free(&r);
	harness_free(&h);
}

static void test_drain(void)
{
	struct harness h;
	struct resp r, r2;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "t", 1);

	harness_init(&h, &server);
	call_plain(&h, "/t.Svc/Hold", &b, &r);
	pump(&h);
	CHECK(held != NULL);
	grpc_session_drain(h.srv);
	pump(&h);
	CHECK(!grpc_session_done(h.srv));	/* a live call may finish */
	/* New streams after GOAWAY are refused by the client library. */
	CHECK(call_plain(&h, "/t.Svc/Echo", NULL, &r2) > 0);
	pump(&h);
	CHECK(r2.grpc_status[0] == '\0');
	CHECK_EQ_INT(grpc_call_send(held, (const uint8_t *)"bye", 3), 0);
	grpc_call_finish(held, GRPC_OK, NULL);
	held = NULL;
	pump(&h);
	CHECK(r.closed);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(body_messages(&r, NULL, NULL), 1);
	CHECK(grpc_session_done(h.srv));
	CHECK_EQ_INT(h.feed_rc, 0);
	resp_free(&r);
	resp_free(&r2);
	harness_free(&h);
	CHECK_EQ_INT(cancels, 0);
}

static void test_concurrency_limit(void)
{
	static const struct grpc_server two = { .methods = methods, .n_methods = 3,
						.max_streams = 2 };
	struct harness h;
	struct resp r[3];
	uint8_t buf[3][16];
	struct req_body b[3];

	harness_init(&h, &two);
	many_held = true;
	pump(&h);			/* settle SETTINGS */
	for (int i = 0; i < 3; i++) {
		b[i] = body_msg(buf[i], "t", 1);
		call_plain(&h, "/t.Svc/Hold", &b[i], &r[i]);
	}
	pump(&h);
	/* The client honours our SETTINGS: the third call waits. */
	CHECK_EQ_INT(holds, 2);
	grpc_call_finish(held, GRPC_OK, NULL);
	held = NULL;
	pump(&h);
	CHECK_EQ_INT(holds, 3);
	harness_free(&h);
	CHECK_EQ_INT(cancels, 2);
	for (int i = 0; i < 3; i++)
		resp_free(&r[i]);
}

/* --- authentication at HEADERS ------------------------------------------------ */

static int auth_calls;
static size_t auth_seen_body;		/* client body bytes sent when the hook ran */
static struct req_body *auth_watch;	/* the body whose progress the hook records */
static struct grpc_quota auth_quota;
static int echo_calls;
static char echo_who[GRPC_PRINCIPAL_MAX];

static enum grpc_status t_auth(struct grpc_call *c, void *arg, struct grpc_auth *out)
{
	const char *a = grpc_call_header(c, "authorization");

	(void)arg;
	auth_calls++;
	auth_seen_body = auth_watch ? auth_watch->off : 0;
	if (!a || strcmp(a, "Bearer good")) {
		snprintf(out->why, sizeof(out->why), "no valid token");
		return GRPC_UNAUTHENTICATED;
	}
	snprintf(out->who, sizeof(out->who), "node-a");
	out->quota = &auth_quota;
	return GRPC_OK;
}

static void h_echo_who(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)arg;
	echo_calls++;
	snprintf(echo_who, sizeof(echo_who), "%s", grpc_call_principal(c));
	grpc_call_send(c, msg, len < 16 ? len : 16);
	grpc_call_finish(c, GRPC_OK, NULL);
}

static const struct grpc_method auth_methods[] = {
	{ "/t.Svc/Echo", h_echo_who, NULL },
	{ "/t.Svc/Hold", h_hold, NULL },
};

static const struct grpc_server auth_server = {
	.methods = auth_methods,
	.n_methods = 2,
	.auth = t_auth,
};

static void auth_reset(void)
{
	auth_calls = 0;
	auth_seen_body = 0;
	auth_watch = NULL;
	echo_calls = 0;
	echo_who[0] = '\0';
	memset(&auth_quota, 0, sizeof(auth_quota));
}

/* Client and server SETTINGS exchanged, nothing else. */
static void harness_connect(struct harness *h)
{
	pump(h);
	CHECK_EQ_INT(h->feed_rc, 0);
}

/* A call without a credential is refused on its HEADERS: the server's
 * windows are shut, so not one body byte is sent, let alone buffered. */
static void test_auth_refused_at_headers(void)
{
	struct harness h;
	struct resp r;
	uint8_t pfx[5];
	struct req_body big;

	auth_reset();
	harness_init(&h, &auth_server);
	harness_connect(&h);
	CHECK(!grpc_session_authenticated(h.srv));
	grpc_frame_header(pfx, 1u << 20);
	big = (struct req_body){ .data = pfx, .len = 5, .total = 5 + (1u << 20) };
	auth_watch = &big;
	call_auth = NULL;
	CHECK(call_plain(&h, "/t.Svc/Echo", &big, &r) > 0);
	call_auth = "Bearer tok";
	pump(&h);
	CHECK_EQ_INT(auth_calls, 1);
	CHECK_EQ_INT(auth_seen_body, 0);
	CHECK_EQ_INT(big.off, 0);		/* no DATA was ever allowed */
	CHECK(r.closed);
	CHECK_EQ_STR(r.grpc_status, "16");
	CHECK_EQ_STR(r.grpc_message, "no valid token");
	CHECK_EQ_INT(r.n_header_blocks, 1);	/* trailers-only */
	CHECK_EQ_INT(echo_calls, 0);
	CHECK(!grpc_session_authenticated(h.srv));
	CHECK_EQ_INT(h.feed_rc, 0);
	resp_free(&r);

	/* A wrong token the same way. */
	memset(&r, 0, sizeof(r));
	big.off = 0;
	CHECK(call_plain(&h, "/t.Svc/Echo", &big, &r) > 0);
	pump(&h);
	CHECK_EQ_STR(r.grpc_status, "16");
	CHECK_EQ_INT(big.off, 0);
	CHECK_EQ_INT(auth_quota.calls, 0);
	resp_free(&r);
	harness_free(&h);
}

/* A good credential opens the session: a body far beyond the
 * pre-authentication window goes through, the handler sees who called,
 * and the 4 MiB cap still answers RESOURCE_EXHAUSTED. */
static void test_auth_admitted(void)
{
	struct harness h;
	struct resp r, r2, r3, r4;
	uint8_t *buf = malloc(5 + (1u << 20));
	uint8_t pfx[5];
	struct req_body b, big, no;

	auth_reset();
	harness_init(&h, &auth_server);
	harness_connect(&h);
	memset(buf + 5, 'x', 1u << 20);
	b = body_msg(buf, buf + 5, 1u << 20);
	call_auth = "Bearer good";
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r) > 0);
	pump(&h);
	CHECK_EQ_INT(auth_calls, 1);
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(echo_calls, 1);
	CHECK_EQ_STR(echo_who, "node-a");
	CHECK_EQ_INT(b.off, b.total);
	CHECK(grpc_session_authenticated(h.srv));
	CHECK_EQ_INT(auth_quota.calls, 0);	/* charged while it lived */
	CHECK_EQ_INT(auth_quota.bytes, 0);

	/* Over the cap: refused from the prefix, upload cut short. */
	grpc_frame_header(pfx, GRPC_MSG_MAX + 1);
	big = (struct req_body){ .data = pfx, .len = 5, .total = 5 + GRPC_MSG_MAX + 1 };
	CHECK(call_plain(&h, "/t.Svc/Echo", &big, &r2) > 0);
	pump(&h);
	CHECK_EQ_STR(r2.grpc_status, "8");
	CHECK_EQ_STR(r2.grpc_message, "request message larger than max");
	CHECK(big.off < big.total);

	/* Authenticated session, unauthenticated call: still refused. */
	call_auth = NULL;
	no = body_msg(buf, "x", 1);
	CHECK(call_plain(&h, "/t.Svc/Echo", &no, &r3) > 0);
	call_auth = "Bearer good";
	pump(&h);
	CHECK_EQ_STR(r3.grpc_status, "16");
	CHECK_EQ_INT(echo_calls, 1);

	/* Exactly 4 MiB is still accepted. */
	free(buf);
	buf = malloc(5 + GRPC_MSG_MAX);
	memset(buf + 5, 'y', GRPC_MSG_MAX);
	b = body_msg(buf, buf + 5, GRPC_MSG_MAX);
	CHECK(call_plain(&h, "/t.Svc/Echo", &b, &r4) > 0);
	pump(&h);
	CHECK_EQ_STR(r4.grpc_status, "0");
	CHECK_EQ_INT(echo_calls, 2);
	CHECK_EQ_INT(h.feed_rc, 0);
	call_auth = "Bearer tok";
	resp_free(&r);
	resp_free(&r2);
	resp_free(&r3);
	resp_free(&r4);
	harness_free(&h);
	free(buf);
}

/* The caller's quota caps what it buffers across calls; the calls count
 * in it while alive and out of it when freed. */
static void test_auth_quota(void)
{
	struct harness h;
	struct resp r1, r2;
	uint8_t p1[5], p2[5];
	struct req_body b1, b2;

	auth_reset();
	auth_quota.bytes_max = 1u << 20;
	harness_init(&h, &auth_server);
	call_auth = "Bearer good";
	grpc_frame_header(p1, 800u << 10);
	grpc_frame_header(p2, 800u << 10);
	b1 = (struct req_body){ .data = p1, .len = 5, .total = 5, .open = true };
	b2 = (struct req_body){ .data = p2, .len = 5, .total = 5, .open = true };
	call_plain(&h, "/t.Svc/Echo", &b1, &r1);
	pump(&h);
	call_plain(&h, "/t.Svc/Echo", &b2, &r2);
	pump(&h);
	call_auth = "Bearer tok";
	CHECK(!r1.closed);
	CHECK(r2.closed);
	CHECK_EQ_STR(r2.grpc_status, "8");
	CHECK_EQ_STR(r2.grpc_message, "too many request bytes buffered for this caller");
	CHECK_EQ_INT(auth_quota.calls, 1);
	CHECK_EQ_INT(auth_quota.bytes, 800u << 10);
	harness_free(&h);
	CHECK_EQ_INT(auth_quota.calls, 0);
	CHECK_EQ_INT(auth_quota.bytes, 0);
	resp_free(&r1);
	resp_free(&r2);
}

/* --- raw frames from a client that ignores flow control -------------------- */

struct raw {
	uint8_t *p;
	size_t len, cap;
};

static void raw_put(struct raw *w, const void *p, size_t n)
{
	if (w->len + n > w->cap) {
		w->cap = (w->len + n) * 2;
		w->p = realloc(w->p, w->cap);
	}
	memcpy(w->p + w->len, p, n);
	w->len += n;
}

static void raw_frame(struct raw *w, uint8_t type, uint8_t flags, uint32_t sid,
		      const uint8_t *payload, size_t n)
{
	uint8_t hd[9] = { (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n, type, flags,
			  (uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8),
			  (uint8_t)sid };

	raw_put(w, hd, 9);
	raw_put(w, payload, n);
}

static void raw_headers(struct raw *w, nghttp2_hd_deflater *d, uint32_t sid)
{
	nghttp2_nv nva[] = {
		HDR(":method", "POST"), HDR(":scheme", "http"), HDR(":authority", "a"),
		HDR(":path", "/t.Svc/Echo"), HDR("content-type", "application/grpc"),
		HDR("te", "trailers"),
	};
	uint8_t block[512];
	ssize_t n = nghttp2_hd_deflate_hd(d, block, sizeof(block), nva, 6);

	CHECK(n > 0);
	raw_frame(w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, sid, block, (size_t)n);
}

static size_t heap_used(void)
{
	return mallinfo2().uordblks;
}

/* Feed w to a fresh session in 1 KiB pieces, flushing after each; returns
 * the bytes fed before the session refused more. *grew: the most heap the
 * session held on the way. reads: whether the attacker reads our output
 * (if not, our answers pile up in the session). */
static size_t raw_attack(const struct raw *w, size_t *grew, bool reads)
{
	struct harness h;
	size_t fed = 0, base;

	harness_init(&h, &auth_server);
	h.out_len = 0;
	grpc_session_flush(h.srv);
	base = heap_used();
	*grew = 0;
	if (!reads)
		h.space = 0;
	while (fed < w->len) {
		size_t n = w->len - fed < 1024 ? w->len - fed : 1024, now;
		int rc = grpc_session_feed(h.srv, w->p + fed, n, h.now);

		now = heap_used();	/* before the flush: what the input made */
		if (now > base && now - base > *grew)
			*grew = now - base;
		if (rc < 0)
			break;
		fed += n;
		h.out_len = 0;	/* the attacker never reads */
		grpc_session_flush(h.srv);
		if (grpc_session_done(h.srv))
			break;
	}
	CHECK(grpc_session_error(h.srv) != NULL || grpc_session_done(h.srv));
	harness_free(&h);
	return fed;
}

/* A connection that never authenticates cannot make the server read
 * (let alone hold) more than 64 KiB, whatever it sends: a body on an
 * unauthenticated stream past every window, a flood of PINGs, or calls
 * refused one after the other. */
static void test_auth_preauth_cap(void)
{
	static const char preface[] = NGHTTP2_CLIENT_MAGIC;
	static const uint8_t zeros[16384];
	nghttp2_hd_deflater *d;
	struct raw w = { 0 };
	size_t fed, grew;
	uint8_t pfx[5];

	auth_reset();
	/* 1: HEADERS without a credential, then 8 MiB of DATA. */
	nghttp2_hd_deflate_new(&d, 4096);
	raw_put(&w, preface, sizeof(preface) - 1);
	raw_frame(&w, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	raw_headers(&w, d, 1);
	grpc_frame_header(pfx, GRPC_MSG_MAX);
	raw_frame(&w, NGHTTP2_DATA, 0, 1, pfx, 5);
	for (int i = 0; i < 512; i++)
		raw_frame(&w, NGHTTP2_DATA, 0, 1, zeros, sizeof(zeros));
	fed = raw_attack(&w, &grew, false);
	fprintf(stderr, "preauth body: %zu bytes read, heap +%zu\n", fed, grew);
	CHECK(fed <= GRPC_PREAUTH_MAX);
	CHECK(grew < GRPC_PREAUTH_MAX);
	CHECK_EQ_INT(auth_calls, 1);
	nghttp2_hd_deflate_del(d);

	/* 2: PING flood, never a call. */
	w.len = 0;
	raw_put(&w, preface, sizeof(preface) - 1);
	raw_frame(&w, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	for (int i = 0; i < 8000; i++)
		raw_frame(&w, NGHTTP2_PING, 0, 0, zeros, 8);
	fed = raw_attack(&w, &grew, true);
	fprintf(stderr, "preauth pings: %zu bytes read, heap +%zu\n", fed, grew);
	CHECK(fed <= GRPC_PREAUTH_MAX);
	CHECK(fed >= GRPC_PREAUTH_MAX - 1024);	/* cut by the cap, not earlier */
	CHECK(grew < GRPC_PREAUTH_MAX);

	/* 3: call after call without a credential, HEADERS only. */
	auth_reset();
	nghttp2_hd_deflate_new(&d, 4096);
	w.len = 0;
	raw_put(&w, preface, sizeof(preface) - 1);
	raw_frame(&w, NGHTTP2_SETTINGS, 0, 0, NULL, 0);
	for (uint32_t sid = 1; sid < 2000; sid += 2)
		raw_headers(&w, d, sid);
	fed = raw_attack(&w, &grew, false);
	fprintf(stderr, "preauth refusals: %zu bytes read, %d calls refused, heap +%zu\n",
		fed, auth_calls, grew);
	CHECK(auth_calls <= 16);
	CHECK(grew < GRPC_PREAUTH_MAX);
	nghttp2_hd_deflate_del(d);
	free(w.p);
}

/* A session with no call admitted within GRPC_PREAUTH_MS of its first
 * bytes is ended: GOAWAY, then done. */
static void test_auth_preauth_deadline(void)
{
	struct harness h;
	uint64_t next;

	auth_reset();
	harness_init(&h, &auth_server);
	harness_connect(&h);
	next = grpc_session_expire(h.srv, h.now);
	CHECK_EQ_INT(next, h.now + GRPC_PREAUTH_MS);
	CHECK(!grpc_session_done(h.srv));
	next = grpc_session_expire(h.srv, h.now + GRPC_PREAUTH_MS);
	CHECK(next != 0);			/* due now: flush the GOAWAY */
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + GRPC_PREAUTH_MS + 1), 0);
	h.out_len = 0;
	CHECK_EQ_INT(grpc_session_flush(h.srv), 0);
	CHECK(h.out_len >= 9 && h.out[3] == NGHTTP2_GOAWAY);
	CHECK(grpc_session_done(h.srv));
	CHECK_EQ_STR(grpc_session_error(h.srv), "no call authenticated in time");
	harness_free(&h);

	/* Authenticated in time: no such deadline. */
	auth_reset();
	harness_init(&h, &auth_server);
	struct resp r;
	uint8_t buf[16];
	struct req_body b = body_msg(buf, "hi", 2);
	call_auth = "Bearer good";
	call_plain(&h, "/t.Svc/Echo", &b, &r);
	pump(&h);
	call_auth = "Bearer tok";
	CHECK_EQ_STR(r.grpc_status, "0");
	CHECK_EQ_INT(grpc_session_expire(h.srv, h.now + 2 * GRPC_PREAUTH_MS), 0);
	CHECK(!grpc_session_done(h.srv));
	resp_free(&r);
	harness_free(&h);
}

int main(void)
{
	test_helpers();
	test_unary_echo();
	test_errors_before_handler();
	test_oversized();
	test_deadline();
	test_server_streaming();
	test_client_reset();
	test_bad_preface();
	test_split_body();
	test_large_message();
	test_session_budget();
	test_status_message_encoding();
	test_drain();
	test_concurrency_limit();
	test_auth_refused_at_headers();
	test_auth_admitted();
	test_auth_quota();
	test_auth_preauth_cap();
	test_auth_preauth_deadline();
	return check_done("test_grpc");
}
