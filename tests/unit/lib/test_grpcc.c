/* SPDX-License-Identifier: Apache-2.0 */
/* grpcc.c: the client session against grpc.c's server session in memory
 * (both pure; bytes piped both ways), and against hand-made server frames
 * for what grpc.c never sends (missing status, HTTP errors, resets). */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include <weft/grpc.h>
#include <weft/grpcc.h>

#include "../check.h"

/* --- byte pipes ------------------------------------------------------------------ */

struct sink {
	uint8_t *buf;
	size_t len, cap;
	size_t space;			/* what the sink reports */
};

static int sink_send(void *io, const uint8_t *p, size_t n)
{
	struct sink *k = io;

	if (k->len + n > k->cap) {
		size_t cap = k->cap ? k->cap * 2 : 65536;

		while (cap < k->len + n)
			cap *= 2;
		k->buf = realloc(k->buf, cap);
		if (!k->buf)
			return -ENOMEM;
		k->cap = cap;
	}
	memcpy(k->buf + k->len, p, n);
	k->len += n;
	return 0;
}

static size_t sink_space(void *io)
{
	return ((struct sink *)io)->space;
}

/* --- what the client saw on one call ---------------------------------------------- */

struct result {
	int n_msgs;
	uint8_t *msgs;			/* all messages concatenated */
	size_t msgs_len;
	size_t first_len;
	bool done;
	int done_count;
	enum grpc_status st;
	char msg[512];
	bool cancel_in_message;		/* cancel the call from on_message */
	struct grpcc_call *call;
};

static void on_message(struct grpcc_call *c, const uint8_t *m, size_t len, void *arg)
{
	struct result *r = arg;

	if (r->n_msgs == 0)
		r->first_len = len;
	r->n_msgs++;
	r->msgs = realloc(r->msgs, r->msgs_len + len + 1);
	memcpy(r->msgs + r->msgs_len, m, len);
	r->msgs_len += len;
	if (r->cancel_in_message)
		grpcc_call_cancel(c);
}

static void on_done(struct grpcc_call *c, enum grpc_status st, const char *msg, void *arg)
{
	struct result *r = arg;

	(void)c;
	r->done = true;
	r->done_count++;
	r->st = st;
	snprintf(r->msg, sizeof(r->msg), "%s", msg ? msg : "(null)");
}

static void result_free(struct result *r)
{
	free(r->msgs);
	memset(r, 0, sizeof(*r));
}

/* --- server side --------------------------------------------------------------------- */

static struct grpc_call *held;
static int cancels;
static char seen[8][128];	/* headers the server saw on the last call */
static const char *const seen_names[8] = {
	":method", ":scheme", ":path", ":authority", "content-type", "te",
	"authorization", "grpc-timeout",
};
static size_t big_len;

static void on_cancel_count(struct grpc_call *c, void *arg)
{
	(void)arg;
	cancels++;
	if (c == held)
		held = NULL;
}

static void seen_record(struct grpc_call *c)
{
	for (int i = 0; i < 8; i++) {
		const char *v = grpc_call_header(c, seen_names[i]);

		snprintf(seen[i], sizeof(seen[i]), "%s", v ? v : "");
	}
}

/* Echo the request reversed. */
static void h_echo(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	uint8_t *r = malloc(len + 1);

	(void)arg;
	seen_record(c);
	for (size_t i = 0; i < len; i++)
		r[i] = msg[len - 1 - i];
	grpc_call_send(c, r, len);
	grpc_call_finish(c, GRPC_OK, NULL);
	free(r);
}

static void h_deny(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)msg;
	(void)arg;
	seen_record(c);
	if (len)	/* a message first: status in trailers, not trailers-only */
		grpc_call_send(c, msg, len);
	grpc_call_finish(c, GRPC_PERMISSION_DENIED, " node1 may not: 100% \xc3\xbc\n ");
}

static void h_stream3(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)msg;
	(void)len;
	(void)arg;
	grpc_call_send(c, (const uint8_t *)"one", 3);
	grpc_call_send(c, (const uint8_t *)"", 0);
	grpc_call_send(c, (const uint8_t *)"three", 5);
	grpc_call_finish(c, GRPC_OK, NULL);
}

static void h_hold(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	(void)msg;
	(void)len;
	(void)arg;
	seen_record(c);
	held = c;
	grpc_call_on_cancel(c, on_cancel_count, NULL);
}

static void h_big(struct grpc_call *c, const uint8_t *msg, size_t len, void *arg)
{
	uint8_t *b = malloc(big_len);

	(void)msg;
	(void)len;
	(void)arg;
	for (size_t i = 0; i < big_len; i++)
		b[i] = (uint8_t)(i * 7);
	grpc_call_on_cancel(c, on_cancel_count, NULL);
	held = c;
	grpc_call_send(c, b, big_len);
	free(b);
	grpc_call_finish(c, GRPC_OK, NULL);	/* finish releases it: no on_cancel */
	held = NULL;
}

static const struct grpc_method methods[] = {
	{ "/t.S/Echo", h_echo, NULL },
	{ "/t.S/Deny", h_deny, NULL },
	{ "/t.S/Stream3", h_stream3, NULL },
	{ "/t.S/Hold", h_hold, NULL },
	{ "/t.S/Big", h_big, NULL },
};

static const struct grpc_server server = {
	.methods = methods,
	.n_methods = sizeof(methods) / sizeof(methods[0]),
};

/* --- harness: client <-> server in memory ---------------------------------------------- */

struct pair {
	struct grpcc_session *cli;
	struct grpc_session *srv;
	struct sink cout, sout;
	uint64_t now;
	int cli_rc, srv_rc;
};

static void pair_init(struct pair *p)
{
	memset(p, 0, sizeof(*p));
	p->cout.space = p->sout.space = 1 << 20;
	p->now = 1000;
	p->cli = grpcc_session_new(sink_send, sink_space, &p->cout, "weft-agent");
	p->srv = grpc_session_new(&server, sink_send, sink_space, &p->sout, NULL);
	held = NULL;
	cancels = 0;
	memset(seen, 0, sizeof(seen));
}

static void pair_free(struct pair *p)
{
	grpcc_session_free(p->cli);
	grpc_session_free(p->srv);
	free(p->cout.buf);
	free(p->sout.buf);
}

static void pump(struct pair *p)
{
	for (int round = 0; round < 100000; round++) {
		bool progress = false;

		p->cout.len = 0;
		grpcc_session_flush(p->cli);
		if (p->cout.len) {
			int rc = grpc_session_feed(p->srv, p->cout.buf, p->cout.len, p->now);

			if (rc)
				p->srv_rc = rc;
			progress = true;
		}
		p->sout.len = 0;
		grpc_session_flush(p->srv);
		if (p->sout.len) {
			int rc = grpcc_session_feed(p->cli, p->sout.buf, p->sout.len, p->now);

			if (rc)
				p->cli_rc = rc;
			progress = true;
		}
		if (!progress)
			break;
	}
}

static struct grpcc_call *start(struct pair *p, const char *path, const char *msg,
				uint32_t timeout_ms, struct result *r)
{
	static const char *const hdrs[] = { "authorization", "Bearer tok-123", NULL };

	r->call = grpcc_call_start(p->cli, path, hdrs, (const uint8_t *)msg,
				   msg ? strlen(msg) : 0, timeout_ms, p->now,
				   on_message, on_done, r);
	return r->call;
}

/* --- tests against grpc.c ---------------------------------------------------------------- */

static void test_unary_ok(void)
{
	struct pair p;
	struct result r = { 0 };

	pair_init(&p);
	CHECK(p.cli && p.srv);
	CHECK(start(&p, "/t.S/Echo", "hello", 0, &r) != NULL);
	pump(&p);
	CHECK(r.done);
	CHECK_EQ_INT(r.done_count, 1);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK_EQ_STR(r.msg, "");
	CHECK_EQ_INT(r.n_msgs, 1);
	CHECK(r.msgs_len == 5 && !memcmp(r.msgs, "olleh", 5));
	/* What went on the wire. */
	CHECK_EQ_STR(seen[0], "POST");
	CHECK_EQ_STR(seen[1], "https");
	CHECK_EQ_STR(seen[2], "/t.S/Echo");
	CHECK_EQ_STR(seen[3], "weft-agent");
	CHECK_EQ_STR(seen[4], "application/grpc");
	CHECK_EQ_STR(seen[5], "trailers");
	CHECK_EQ_STR(seen[6], "Bearer tok-123");
	CHECK_EQ_STR(seen[7], "");
	CHECK_EQ_INT(p.cli_rc, 0);
	CHECK_EQ_INT(p.srv_rc, 0);
	CHECK(!grpcc_session_done(p.cli));
	result_free(&r);

	/* The connection is reused for the next call; an empty request works. */
	CHECK(start(&p, "/t.S/Echo", NULL, 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK_EQ_INT(r.n_msgs, 1);
	CHECK_EQ_INT(r.first_len, 0);
	result_free(&r);

	/* A keepalive PING is answered and changes nothing. */
	p.cout.len = 0;
	CHECK_EQ_INT(grpcc_session_ping(p.cli), 0);
	grpcc_session_flush(p.cli);
	CHECK(p.cout.len >= 17);	/* 9-byte header + 8 bytes of opaque data */
	CHECK_EQ_INT(p.cout.buf[3], NGHTTP2_PING);
	CHECK_EQ_INT(grpc_session_feed(p.srv, p.cout.buf, p.cout.len, p.now), 0);
	p.sout.len = 0;
	grpc_session_flush(p.srv);
	CHECK(p.sout.len >= 17 && p.sout.buf[3] == NGHTTP2_PING &&
	      p.sout.buf[4] == NGHTTP2_FLAG_ACK);
	CHECK_EQ_INT(grpcc_session_feed(p.cli, p.sout.buf, p.sout.len, p.now), 0);
	pump(&p);
	CHECK_EQ_INT(p.cli_rc, 0);
	CHECK(!grpcc_session_done(p.cli));

	/* Unknown method: the server's status comes through. */
	CHECK(start(&p, "/t.S/Nope", "x", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_UNIMPLEMENTED);
	CHECK_EQ_STR(r.msg, "unknown method");
	result_free(&r);
	pair_free(&p);
}

static void test_error_status(void)
{
	struct pair p;
	struct result r = { 0 };

	pair_init(&p);
	/* Trailers-only (no message before the status). */
	CHECK(start(&p, "/t.S/Deny", NULL, 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_PERMISSION_DENIED);
	CHECK_EQ_STR(r.msg, " node1 may not: 100% \xc3\xbc\n ");
	CHECK_EQ_INT(r.n_msgs, 0);
	result_free(&r);
	/* A message, then the status in trailers. */
	CHECK(start(&p, "/t.S/Deny", "abc", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_PERMISSION_DENIED);
	CHECK_EQ_STR(r.msg, " node1 may not: 100% \xc3\xbc\n ");
	CHECK_EQ_INT(r.n_msgs, 1);
	result_free(&r);
	pair_free(&p);
}

static void test_streaming(void)
{
	struct pair p;
	struct result r = { 0 };

	pair_init(&p);
	CHECK(start(&p, "/t.S/Stream3", "", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.n_msgs, 3);
	CHECK(r.msgs_len == 8 && !memcmp(r.msgs, "onethree", 8));
	CHECK_EQ_INT(r.first_len, 3);
	CHECK_EQ_INT(r.st, GRPC_OK);
	result_free(&r);

	/* A held stream: messages arrive one pump at a time, then the end. */
	CHECK(start(&p, "/t.S/Hold", "w", 0, &r) != NULL);
	pump(&p);
	CHECK(held != NULL);
	for (int i = 0; i < 3 && held; i++) {
		char m[32];

		snprintf(m, sizeof(m), "delta-%d", i);
		grpc_call_send(held, (const uint8_t *)m, strlen(m));
		pump(&p);
		CHECK_EQ_INT(r.n_msgs, i + 1);
		CHECK(!r.done);
	}
	grpc_call_finish(held, GRPC_UNAVAILABLE, "agent is shutting down");
	held = NULL;
	pump(&p);
	CHECK(r.done);
	CHECK_EQ_INT(r.st, GRPC_UNAVAILABLE);
	CHECK_EQ_STR(r.msg, "agent is shutting down");
	CHECK(r.msgs_len == 21 && !memcmp(r.msgs, "delta-0delta-1delta-2", 21));
	result_free(&r);

	/* Cancel from inside on_message: nothing more is delivered. */
	r.cancel_in_message = true;
	CHECK(start(&p, "/t.S/Stream3", "", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.n_msgs, 1);
	CHECK_EQ_INT(r.done_count, 1);
	CHECK_EQ_INT(r.st, GRPC_CANCELLED);
	result_free(&r);
	pair_free(&p);
}

static void test_deadline(void)
{
	struct pair p;
	struct result r = { 0 }, r2 = { 0 };

	pair_init(&p);
	CHECK(start(&p, "/t.S/Hold", "x", 100, &r) != NULL);
	pump(&p);
	CHECK(held != NULL);
	CHECK_EQ_STR(seen[7], "100m");
	CHECK_EQ_INT(grpcc_session_expire(p.cli, p.now + 99), p.now + 100);
	CHECK(!r.done);
	CHECK_EQ_INT(grpcc_session_expire(p.cli, p.now + 100), 0);
	CHECK(r.done);
	CHECK_EQ_INT(r.st, GRPC_DEADLINE_EXCEEDED);
	CHECK_EQ_INT(cancels, 0);
	pump(&p);		/* the RST_STREAM reaches the server */
	CHECK_EQ_INT(cancels, 1);
	CHECK(held == NULL);
	CHECK_EQ_INT(r.done_count, 1);
	result_free(&r);

	/* Timeouts past 8 digits of ms go out in seconds, rounded up. */
	CHECK(start(&p, "/t.S/Echo", "x", 200000001u, &r2) != NULL);
	pump(&p);
	CHECK_EQ_STR(seen[7], "200001S");
	CHECK_EQ_INT(r2.st, GRPC_OK);
	CHECK_EQ_INT(grpcc_session_expire(p.cli, p.now + 200000001u), 0);
	result_free(&r2);
	pair_free(&p);
}

static void test_cancel(void)
{
	struct pair p;
	struct result r = { 0 }, r2 = { 0 };

	pair_init(&p);
	CHECK(start(&p, "/t.S/Hold", "x", 0, &r) != NULL);
	pump(&p);
	CHECK(held != NULL);
	grpcc_call_cancel(r.call);
	CHECK(r.done);
	CHECK_EQ_INT(r.st, GRPC_CANCELLED);
	pump(&p);
	CHECK_EQ_INT(cancels, 1);
	result_free(&r);

	/* Cancel before the request went out at all. */
	CHECK(start(&p, "/t.S/Hold", "x", 0, &r) != NULL);
	grpcc_call_cancel(r.call);
	CHECK_EQ_INT(r.st, GRPC_CANCELLED);
	pump(&p);
	CHECK_EQ_INT(r.done_count, 1);
	/* The session still works. */
	CHECK(start(&p, "/t.S/Echo", "ok", 0, &r2) != NULL);
	pump(&p);
	CHECK_EQ_INT(r2.st, GRPC_OK);
	result_free(&r);
	result_free(&r2);

	/* Freeing the session ends live calls with UNAVAILABLE. */
	CHECK(start(&p, "/t.S/Hold", "x", 0, &r) != NULL);
	pump(&p);
	grpcc_session_free(p.cli);
	p.cli = NULL;
	CHECK(r.done);
	CHECK_EQ_INT(r.st, GRPC_UNAVAILABLE);
	CHECK_EQ_STR(r.msg, "connection closed");
	result_free(&r);
	pair_free(&p);
}

static void test_oversized(void)
{
	struct pair p;
	struct result r = { 0 };

	pair_init(&p);
	/* Exactly the limit is fine (and crosses many window updates). */
	big_len = GRPC_MSG_MAX;
	CHECK(start(&p, "/t.S/Big", "", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK_EQ_INT(r.n_msgs, 1);
	CHECK_EQ_INT(r.first_len, GRPC_MSG_MAX);
	CHECK(r.msgs && r.msgs[12345] == (uint8_t)(12345 * 7));
	result_free(&r);

	/* One byte more: refused on the declared length, stream reset. */
	big_len = GRPC_MSG_MAX + 1;
	CHECK(start(&p, "/t.S/Big", "", 0, &r) != NULL);
	pump(&p);
	CHECK(r.done);
	CHECK_EQ_INT(r.st, GRPC_RESOURCE_EXHAUSTED);
	CHECK_EQ_INT(r.n_msgs, 0);
	CHECK(strstr(r.msg, "larger than") != NULL);
	result_free(&r);
	/* The connection survives a stream reset. */
	CHECK(start(&p, "/t.S/Echo", "ab", 0, &r) != NULL);
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK_EQ_INT(p.cli_rc, 0);
	result_free(&r);
	pair_free(&p);
}

static void test_goaway(void)
{
	struct pair p;
	struct result r = { 0 }, r2 = { 0 };

	pair_init(&p);
	CHECK(start(&p, "/t.S/Hold", "x", 0, &r) != NULL);
	pump(&p);
	grpc_session_drain(p.srv);
	pump(&p);
	/* Streams the server took may finish after GOAWAY. */
	CHECK(!r.done);
	grpc_call_send(held, (const uint8_t *)"late", 4);
	grpc_call_finish(held, GRPC_OK, NULL);
	held = NULL;
	/* A new call after GOAWAY fails with UNAVAILABLE, now or at flush. */
	if (start(&p, "/t.S/Echo", "x", 0, &r2) == NULL)
		r2.done = true, r2.st = GRPC_UNAVAILABLE;
	pump(&p);
	CHECK_EQ_INT(r.st, GRPC_OK);
	CHECK_EQ_INT(r.n_msgs, 1);
	CHECK(r2.done);
	CHECK_EQ_INT(r2.st, GRPC_UNAVAILABLE);
	CHECK(grpcc_session_done(p.cli));
	result_free(&r);
	result_free(&r2);
	pair_free(&p);
}

/* --- tests against hand-made server frames ------------------------------------------------ */

struct raw {
	struct grpcc_session *cli;
	struct sink cout;
	nghttp2_hd_deflater *hd;
	uint8_t buf[65536];
	size_t len;
};

static void raw_frame(struct raw *w, uint8_t type, uint8_t flags, int32_t sid,
		      const uint8_t *p, size_t n)
{
	uint8_t *h = w->buf + w->len;

	h[0] = (uint8_t)(n >> 16);
	h[1] = (uint8_t)(n >> 8);
	h[2] = (uint8_t)n;
	h[3] = type;
	h[4] = flags;
	h[5] = (uint8_t)(sid >> 24);
	h[6] = (uint8_t)(sid >> 16);
	h[7] = (uint8_t)(sid >> 8);
	h[8] = (uint8_t)sid;
	if (n)
		memcpy(h + 9, p, n);
	w->len += 9 + n;
}

/* A HEADERS frame; pairs is a NULL-terminated name, value list. */
static void raw_headers(struct raw *w, int32_t sid, bool end_stream, const char *const *pairs)
{
	nghttp2_nv nva[8];
	uint8_t block[1024];
	size_t n = 0;
	ssize_t len;

	for (; pairs[2 * n]; n++)
		nva[n] = (nghttp2_nv){ (uint8_t *)pairs[2 * n], (uint8_t *)pairs[2 * n + 1],
				       strlen(pairs[2 * n]), strlen(pairs[2 * n + 1]),
				       NGHTTP2_NV_FLAG_NONE };
	len = nghttp2_hd_deflate_hd(w->hd, block, sizeof(block), nva, n);
	raw_frame(w, NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS |
		  (end_stream ? NGHTTP2_FLAG_END_STREAM : 0), sid, block, (size_t)len);
}

static void raw_rst(struct raw *w, int32_t sid, uint32_t code)
{
	uint8_t p[4] = { (uint8_t)(code >> 24), (uint8_t)(code >> 16), (uint8_t)(code >> 8),
			 (uint8_t)code };

	raw_frame(w, NGHTTP2_RST_STREAM, 0, sid, p, 4);
}

static void raw_init(struct raw *w)
{
	memset(w, 0, sizeof(*w));
	w->cout.space = 1 << 20;
	w->cli = grpcc_session_new(sink_send, sink_space, &w->cout, "a");
	nghttp2_hd_deflate_new(&w->hd, 4096);
	raw_frame(w, NGHTTP2_SETTINGS, 0, 0, NULL, 0);	/* server preface */
}

static int raw_send(struct raw *w)
{
	int rc;

	grpcc_session_flush(w->cli);
	rc = grpcc_session_feed(w->cli, w->buf, w->len, 0);
	w->len = 0;
	grpcc_session_flush(w->cli);
	return rc;
}

static void raw_free(struct raw *w)
{
	grpcc_session_free(w->cli);
	nghttp2_hd_deflate_del(w->hd);
	free(w->cout.buf);
}

static const char *const ok_hdrs[] = {
	":status", "200", "content-type", "application/grpc", NULL,
};

static void test_raw_statuses(void)
{
	struct raw w;
	struct result r[8] = { 0 };
	static const char *const no_status[] = {
		":status", "200", "content-type", "application/grpc", NULL,
	};
	static const char *const http503[] = { ":status", "503", NULL };
	static const char *const html[] = { ":status", "200", "content-type", "text/html", NULL };
	static const char *const trailers[] = {
		"grpc-status", "5", "grpc-message", "no %zz such%20thing%", NULL,
	};
	const uint8_t compressed[] = { 1, 0, 0, 0, 1, 'x' };
	const uint8_t partial[] = { 0, 0, 0, 0, 9, 'a', 'b' };
	int32_t sid[8];

	raw_init(&w);
	for (int i = 0; i < 8; i++) {
		CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, (const uint8_t *)"q", 1, 0, 0,
				       on_message, on_done, &r[i]) != NULL);
		sid[i] = 1 + 2 * i;
	}
	raw_headers(&w, sid[0], true, no_status);	/* no grpc-status */
	raw_headers(&w, sid[1], true, http503);		/* HTTP error */
	raw_headers(&w, sid[2], true, html);		/* not gRPC */
	raw_rst(&w, sid[3], NGHTTP2_CANCEL);
	raw_rst(&w, sid[4], NGHTTP2_REFUSED_STREAM);
	raw_headers(&w, sid[5], false, ok_hdrs);
	raw_frame(&w, NGHTTP2_DATA, 0, sid[5], compressed, sizeof(compressed));
	raw_headers(&w, sid[6], false, ok_hdrs);
	raw_frame(&w, NGHTTP2_DATA, 0, sid[6], partial, sizeof(partial));
	raw_headers(&w, sid[6], true, trailers);
	raw_headers(&w, sid[7], false, ok_hdrs);
	raw_frame(&w, NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, sid[7], partial, sizeof(partial));
	CHECK_EQ_INT(raw_send(&w), 0);

	CHECK_EQ_INT(r[0].st, GRPC_UNKNOWN);
	CHECK_EQ_INT(r[1].st, GRPC_UNAVAILABLE);
	CHECK(strstr(r[1].msg, "503") != NULL);
	CHECK_EQ_INT(r[2].st, GRPC_INTERNAL);
	CHECK_EQ_INT(r[3].st, GRPC_CANCELLED);
	CHECK_EQ_INT(r[4].st, GRPC_UNAVAILABLE);
	CHECK_EQ_INT(r[5].st, GRPC_INTERNAL);
	CHECK(strstr(r[5].msg, "compressed") != NULL);
	/* A non-OK status wins over the truncated message; bad escapes kept. */
	CHECK_EQ_INT(r[6].st, GRPC_NOT_FOUND);
	CHECK_EQ_STR(r[6].msg, "no %zz such thing%");
	/* DATA with END_STREAM inside a message and no trailers. */
	CHECK_EQ_INT(r[7].st, GRPC_UNKNOWN);
	for (int i = 0; i < 8; i++) {
		CHECK_EQ_INT(r[i].done_count, 1);
		CHECK_EQ_INT(r[i].n_msgs, 0);
		result_free(&r[i]);
	}
	CHECK(!grpcc_session_done(w.cli));
	raw_free(&w);

	/* Status OK after a truncated message is still an error. */
	raw_init(&w);
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[0]) != NULL);
	raw_headers(&w, 1, false, ok_hdrs);
	raw_frame(&w, NGHTTP2_DATA, 0, 1, partial, sizeof(partial));
	raw_headers(&w, 1, true, (const char *const[]){ "grpc-status", "0", NULL });
	CHECK_EQ_INT(raw_send(&w), 0);
	CHECK_EQ_INT(r[0].st, GRPC_INTERNAL);
	result_free(&r[0]);
	raw_free(&w);
}

static void test_raw_connection_errors(void)
{
	struct raw w;
	struct result r[2] = { 0 };
	const uint8_t goaway[8] = { 0, 0, 0, 1, 0, 0, 0, 0 };	/* last stream 1, NO_ERROR */

	/* GOAWAY: stream 1 may finish, stream 3 was refused. */
	raw_init(&w);
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[0]) != NULL);
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[1]) != NULL);
	raw_frame(&w, NGHTTP2_GOAWAY, 0, 0, goaway, sizeof(goaway));
	CHECK_EQ_INT(raw_send(&w), 0);
	CHECK(!r[0].done);
	CHECK(r[1].done);
	CHECK_EQ_INT(r[1].st, GRPC_UNAVAILABLE);
	raw_headers(&w, 1, true, (const char *const[]){ ":status", "200", "content-type",
						       "application/grpc", "grpc-status", "0",
						       NULL });
	CHECK_EQ_INT(raw_send(&w), 0);
	CHECK_EQ_INT(r[0].st, GRPC_OK);
	CHECK(grpcc_session_done(w.cli));
	result_free(&r[0]);
	result_free(&r[1]);
	raw_free(&w);

	/* Garbage instead of the server preface: every call fails, and the
	 * session is done once its GOAWAY is out (nghttp2 reports this one
	 * as a connection error it handles itself, so feed may return 0). */
	raw_init(&w);
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[0]) != NULL);
	memcpy(w.buf, "HTTP/1.1 400 Bad Request\r\n\r\n", 28);
	w.len = 28;
	raw_send(&w);
	CHECK(r[0].done);
	CHECK_EQ_INT(r[0].st, GRPC_UNAVAILABLE);
	CHECK(grpcc_session_done(w.cli));
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[1]) == NULL);
	CHECK(!r[1].done);
	result_free(&r[0]);
	raw_free(&w);

	/* A frame on stream 0 that must not be there: same outcome, and
	 * feeding more is refused. */
	raw_init(&w);
	CHECK(grpcc_call_start(w.cli, "/x.Y/Z", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r[0]) != NULL);
	raw_frame(&w, NGHTTP2_DATA, 0, 0, (const uint8_t *)"zz", 2);
	raw_send(&w);
	CHECK(r[0].done);
	CHECK_EQ_INT(r[0].st, GRPC_UNAVAILABLE);
	CHECK(grpcc_session_done(w.cli));
	CHECK(grpcc_session_feed(w.cli, (const uint8_t *)"x", 1, 0) < 0);
	result_free(&r[0]);
	raw_free(&w);
}

static void test_bad_args(void)
{
	struct raw w;
	struct result r = { 0 };
	static const char *const pseudo[] = { ":path", "/evil", NULL };

	raw_init(&w);
	CHECK(grpcc_call_start(w.cli, "noslash", NULL, NULL, 0, 0, 0, on_message, on_done,
			       &r) == NULL);
	CHECK(grpcc_call_start(w.cli, "/a/b", pseudo, NULL, 0, 0, 0, on_message, on_done,
			       &r) == NULL);
	CHECK(!r.done);
	CHECK(grpcc_session_new(NULL, sink_space, NULL, "a") == NULL);
	grpcc_session_free(NULL);
	grpcc_call_cancel(NULL);
	raw_free(&w);
}

/* --- HPACK: credentials never indexed ------------------------------------------------ */

/* Decode every HEADERS block the client wrote (after the preface) and
 * record, per call, the flags of the header named name. */
static int hpack_flags(const uint8_t *b, size_t n, const char *name, uint8_t *flags, int max)
{
	nghttp2_hd_inflater *inf;
	size_t o = 24;			/* the client connection preface */
	int got = 0;

	if (n < o || memcmp(b, NGHTTP2_CLIENT_MAGIC, 24) || nghttp2_hd_inflate_new(&inf))
		return -1;
	while (o + 9 <= n) {
		size_t len = (size_t)b[o] << 16 | (size_t)b[o + 1] << 8 | b[o + 2];
		const uint8_t *pl = b + o + 9;

		if (o + 9 + len > n)
			break;
		/* nghttp2's client sends no padding or priority on these */
		if (b[o + 3] == NGHTTP2_HEADERS && !(b[o + 4] & (NGHTTP2_FLAG_PADDED |
								   NGHTTP2_FLAG_PRIORITY))) {
			size_t left = len;

			for (;;) {
				nghttp2_nv nv;
				int fl = 0;
				ssize_t r = nghttp2_hd_inflate_hd2(inf, &nv, &fl, pl, left, 1);

				if (r < 0) {
					nghttp2_hd_inflate_del(inf);
					return -1;
				}
				pl += r;
				left -= (size_t)r;
				if ((fl & NGHTTP2_HD_INFLATE_EMIT) && nv.namelen == strlen(name) &&
				    !memcmp(nv.name, name, nv.namelen) && got < max)
					flags[got++] = nv.flags;
				if (fl & NGHTTP2_HD_INFLATE_FINAL) {
					nghttp2_hd_inflate_end_headers(inf);
					break;
				}
				if (!r && !(fl & NGHTTP2_HD_INFLATE_EMIT))
					break;
			}
		}
		o += 9 + len;
	}
	nghttp2_hd_inflate_del(inf);
	return got;
}

/* The token goes out as "literal never indexed" (0001xxxx) on every call,
 * also the second on the same session (not from the dynamic table); a
 * header without credentials stays indexable. nghttp2 (1.52) already
 * never-indexes "authorization" on its own; proxy-authorization is what
 * shows grpcc's own rule at work. */
static void test_auth_never_indexed(void)
{
	static const char *const hdrs[] = {
		"authorization", "Bearer tok-never-indexed", "proxy-authorization", "Basic eA==",
		"x-weft-note", "plain", NULL
	};
	struct sink out = { .space = 1 << 20 };
	struct grpcc_session *s = grpcc_session_new(sink_send, sink_space, &out, "weft-agent");
	struct result r1 = { 0 }, r2 = { 0 };
	uint8_t auth[4] = { 0 }, proxy[4] = { 0 }, note[4] = { 0 };
	const uint8_t *hit;

	CHECK(s != NULL);
	if (!s)
		return;
	r1.call = grpcc_call_start(s, "/a.B/C", hdrs, (const uint8_t *)"x", 1, 0, 1000,
				   on_message, on_done, &r1);
	r2.call = grpcc_call_start(s, "/a.B/C", hdrs, (const uint8_t *)"x", 1, 0, 1000,
				   on_message, on_done, &r2);
	CHECK(r1.call && r2.call);
	grpcc_session_flush(s);
	CHECK_EQ_INT(hpack_flags(out.buf, out.len, "authorization", auth, 4), 2);
	CHECK_EQ_INT(auth[0], NGHTTP2_NV_FLAG_NO_INDEX);
	CHECK_EQ_INT(auth[1], NGHTTP2_NV_FLAG_NO_INDEX);
	CHECK_EQ_INT(hpack_flags(out.buf, out.len, "proxy-authorization", proxy, 4), 2);
	CHECK_EQ_INT(proxy[0], NGHTTP2_NV_FLAG_NO_INDEX);
	CHECK_EQ_INT(proxy[1], NGHTTP2_NV_FLAG_NO_INDEX);
	CHECK_EQ_INT(hpack_flags(out.buf, out.len, "x-weft-note", note, 4), 2);
	CHECK_EQ_INT(note[0], NGHTTP2_NV_FLAG_NONE);
	CHECK_EQ_INT(note[1], NGHTTP2_NV_FLAG_NONE);
	/* On the wire: "authorization" is static-table entry 23, so the field
	 * starts 0001 1111 0000 1000 (never indexed, name index 15 + 8). */
	hit = memmem(out.buf, out.len, "\x1f\x08", 2);
	CHECK(hit != NULL);
	grpcc_session_free(s);
	result_free(&r1);
	result_free(&r2);
	free(out.buf);
}

int main(void)
{
	test_unary_ok();
	test_error_status();
	test_streaming();
	test_deadline();
	test_cancel();
	test_oversized();
	test_goaway();
	test_raw_statuses();
	test_raw_connection_errors();
	test_bad_args();
	test_auth_never_indexed();
	return check_done("test_grpcc");
}
