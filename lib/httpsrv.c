/* SPDX-License-Identifier: Apache-2.0 */
/* The bounded plumbing of weft's small HTTP/1.1 endpoints (httpsrv.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/httpreq.h>
#include <weft/httpsrv.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#define HTTPSRV_REQ_MAX 8192
/* From accept to the end of the answer; a request is one short line. */
#define HTTPSRV_DEADLINE_MS 5000
#define HTTPSRV_PIECE (64u << 10)

struct httpsrv {
	struct loop *loop;
	struct listener ls;
	struct listener_pending *conns;	/* open connections per address */
	httpsrv_handler handle;
	void *udata;
	char where[160];
};

struct httpsrv_req {
	struct httpsrv *s;
	struct conn *conn;
	struct loop_timer deadline;
	size_t len;
	int answered;
	const struct httpsrv_stream *stream;	/* non-NULL until stop() ran */
	void *st;
	int stream_done;		/* the last piece is in out */
	struct promtext out;		/* the piece being written */
	size_t out_off;
	char buf[HTTPSRV_REQ_MAX];
};

static const char *httpsrv_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

void httpsrv_reply(struct httpsrv_req *q, int status, const char *ctype, const char *body,
		   size_t len)
{
	char head[256];
	int n;

	n = snprintf(head, sizeof(head),
		     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
		     "Connection: close\r\n\r\n", status, httpsrv_reason(status), ctype, len);
	conn_write(q->conn, head, (size_t)n);
	conn_write(q->conn, body, len);
	conn_close(q->conn, 0, NULL);
}

static void httpsrv_stream_stop(struct httpsrv_req *q)
{
	if (q->stream) {
		q->stream->stop(q->st);
		q->stream = NULL;
	}
}

static void httpsrv_stream_more(struct httpsrv_req *q)
{
	for (;;) {
		while (q->out_off < q->out.len) {
			size_t n = conn_out_space(q->conn);

			if (!n)
				return;		/* on_writable brings us back */
			if (n > q->out.len - q->out_off)
				n = q->out.len - q->out_off;
			if (conn_write(q->conn, q->out.p + q->out_off, n) < 0) {
				conn_abort(q->conn, -EPIPE, "cannot write");
				return;
			}
			q->out_off += n;
		}
		if (q->stream_done || q->out.oom) {
			conn_close(q->conn, 0, NULL);
			return;
		}
		q->out.len = q->out_off = 0;
		q->stream_done = q->stream->next(q->st, &q->out, HTTPSRV_PIECE);
		if (q->stream_done)
			httpsrv_stream_stop(q);	/* st holds nothing now */
	}
}

void httpsrv_stream(struct httpsrv_req *q, const char *ctype, const struct httpsrv_stream *s,
		    void *st)
{
	char head[160];
	int n;

	n = snprintf(head, sizeof(head), "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
		     "Connection: close\r\n\r\n", ctype);
	conn_write(q->conn, head, (size_t)n);
	promtext_init(&q->out);
	q->stream = s;
	q->st = st;
	httpsrv_stream_more(q);
}

static void httpsrv_on_writable(struct conn *c)
{
	struct httpsrv_req *q = conn_udata(c);

	if (q->out.p)
		httpsrv_stream_more(q);
}

static size_t httpsrv_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	static const char big[] = "request too large\n", bad[] = "bad request\n";
	struct httpsrv_req *q = conn_udata(c);
	char method[HTTPREQ_METHOD_MAX], path[HTTPREQ_PATH_MAX];

	if (q->answered)
		return n;
	if (q->len + n > HTTPSRV_REQ_MAX) {
		q->answered = 1;
		httpsrv_reply(q, 400, "text/plain", big, sizeof(big) - 1);
		return n;
	}
	memcpy(q->buf + q->len, p, n);
	q->len += n;
	switch (httpreq_parse(q->buf, q->len, method, path)) {
	case HTTPREQ_MORE:
		return n;
	case HTTPREQ_BAD:
		q->answered = 1;
		httpsrv_reply(q, 400, "text/plain", bad, sizeof(bad) - 1);
		return n;
	case HTTPREQ_OK:
		break;
	}
	q->answered = 1;
	q->s->handle(q, method, path, q->s->udata);
	return n;
}

static void httpsrv_on_close(struct conn *c, int err, const char *why)
{
	struct httpsrv_req *q = conn_udata(c);

	(void)err;
	(void)why;
	loop_timer_disarm(q->s->loop, &q->deadline);
	httpsrv_stream_stop(q);
	promtext_release(&q->out);
	free(q);
}

static const struct conn_handler httpsrv_conn_handler = {
	.on_data = httpsrv_on_data,
	.on_writable = httpsrv_on_writable,
	.on_close = httpsrv_on_close,
};

/* The deadline counts from accept: trickling bytes do not extend it. */
static void httpsrv_on_deadline(struct loop_timer *t)
{
	struct httpsrv_req *q = (struct httpsrv_req *)((char *)t -
						       offsetof(struct httpsrv_req, deadline));

	conn_abort(q->conn, -ETIMEDOUT, "request deadline");
}

static void httpsrv_on_accept(struct listener *ls, int fd)
{
	static struct log_rl rl = LOG_RL_INIT;
	struct httpsrv *s = listener_udata(ls);
	struct conn_opts o = { .pending = s->conns };
	struct httpsrv_req *q;

	q = calloc(1, sizeof(*q));
	if (!q) {
		close(fd);
		return;
	}
	q->s = s;
	q->deadline.cb = httpsrv_on_deadline;
	q->conn = conn_accept(s->loop, fd, NULL, &httpsrv_conn_handler, &o, q);
	if (!q->conn) {
		const char *why = listener_pending_refusal(errno);

		if (why)
			log_warn_rl(&rl, "%s: connection refused: open connections: %s", s->where,
				    why);
		free(q);
		return;
	}
	loop_timer_arm(s->loop, &q->deadline, HTTPSRV_DEADLINE_MS);
}

struct httpsrv *httpsrv_new(struct loop *l, int fd, const struct httpsrv_opts *o)
{
	struct httpsrv *s = calloc(1, sizeof(*s));

	if (s)
		s->conns = listener_pending_new(o->conns, o->conns_per_addr);
	if (!s || !s->conns) {
		free(s);
		close(fd);
		return NULL;
	}
	s->loop = l;
	s->handle = o->handle;
	s->udata = o->udata;
	snprintf(s->where, sizeof(s->where), "%s", o->name);
	listener_start(&s->ls, l, fd, s->where, httpsrv_on_accept, NULL, s);
	if (o->use_reserve)
		listener_use_reserve(&s->ls);
	return s;
}

struct httpsrv *httpsrv_tcp(struct loop *l, const struct sockaddr *sa, socklen_t len,
			    const struct httpsrv_opts *o, int *err)
{
	struct httpsrv *s;
	int fd;

	fd = listener_socket(sa, len, 128);
	if (fd < 0) {
		*err = fd;
		return NULL;
	}
	s = httpsrv_new(l, fd, o);
	*err = s ? 0 : -ENOMEM;
	return s;
}

const char *httpsrv_where(const struct httpsrv *s)
{
	return s->where;
}

void httpsrv_free(struct httpsrv *s)
{
	if (!s)
		return;
	listener_deinit(&s->ls);
	listener_pending_free(s->conns);
	free(s);
}
