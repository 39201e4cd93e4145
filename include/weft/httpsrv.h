/* SPDX-License-Identifier: Apache-2.0 */
/* weft's small HTTP/1.1 endpoints (weftd's admin API, readiness and
 * metrics; the agent's metrics): one listener, one request per connection,
 * bounded in size (8 KiB), in time (an absolute deadline from accept, not an
 * idle timer a slow client can keep resetting) and in number (per source
 * address and in all), answered and then closed. What a path means is the
 * handler's; this is only the bounded plumbing around it. */
#ifndef WEFT_HTTPSRV_H
#define WEFT_HTTPSRV_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <weft/promtext.h>

struct loop;
struct httpsrv;
struct httpsrv_req;

/* Called once per request, with the parsed request line (httpreq.h). It
 * must answer: httpsrv_reply or httpsrv_stream, now. */
typedef void (*httpsrv_handler)(struct httpsrv_req *q, const char *method, const char *path,
				void *udata);

struct httpsrv_opts {
	const char *name;		/* for logs: "metrics 0.0.0.0:15020" */
	unsigned conns;			/* open connections in all */
	unsigned conns_per_addr;	/* ... and from one address */
	int use_reserve;		/* may use the fd reserve (listener.h) */
	httpsrv_handler handle;
	void *udata;
};

/* Serve on fd, a listening socket (taken, also on failure). NULL on
 * -ENOMEM. */
struct httpsrv *httpsrv_new(struct loop *l, int fd, const struct httpsrv_opts *o);
/* Make a listening TCP socket on sa and serve on it. NULL with *err set to
 * a -errno. */
struct httpsrv *httpsrv_tcp(struct loop *l, const struct sockaddr *sa, socklen_t len,
			    const struct httpsrv_opts *o, int *err);
/* At exit: connections still open are dropped with the loop. */
void httpsrv_free(struct httpsrv *s);
const char *httpsrv_where(const struct httpsrv *s);

/* A whole answer; the connection closes after it. */
void httpsrv_reply(struct httpsrv_req *q, int status, const char *ctype, const char *body,
		   size_t len);

/* A 200 answer written in pieces as the client takes them, so a big body
 * neither holds the loop nor a buffer of its whole size; it ends when the
 * connection closes (no Content-Length). next() appends about piece bytes
 * to out and returns 1 with the last; stop() runs once, when the body ended
 * or the client went away, and frees st. */
struct httpsrv_stream {
	int (*next)(void *st, struct promtext *out, size_t piece);
	void (*stop)(void *st);
};
void httpsrv_stream(struct httpsrv_req *q, const char *ctype, const struct httpsrv_stream *s,
		    void *st);

#endif
