/* SPDX-License-Identifier: Apache-2.0 */
/* weft's load generator on io_uring: constant-rate open-loop request/response
 * (latency from the scheduled send time, so a stalled server cannot hide its
 * queue: no coordinated omission), connection churn, closed-loop maximum
 * throughput, and a matching server. Latency goes into a log-linear
 * histogram; results are one JSON object on stdout plus a one-line summary
 * on stderr. Memory is fixed at start; nothing is allocated per request.
 *
 *   loadgen server [-p PORT] [-b ADDR] [-j N] [-s RESP]
 *   loadgen rr|churn|max [-c CONNS] [-R RATE] [-d SEC] [-w SEC] [-q REQ]
 *           [-s RESP] [-j N] [--http [--path P] [--host H]] HOST:PORT
 *
 * Wire format without --http: each request starts with a 16-byte header
 * ("WLG1", request length, response length, flags; big endian) and is padded
 * to its length; the server reads exactly that many bytes and answers with
 * the response length in bytes. So one server serves any client sizes. With
 * --http the client sends a GET padded by an X-Pad header and reads one
 * HTTP/1.x response framed by Content-Length; the server answers both. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include "hist.h"

#define LG_HDR_MAX 4096			/* HTTP head, either direction */
#define LG_SCRATCH (256 * 1024)		/* response bodies land here, unread */
#define LG_WIRE_HDR 16
#define LG_MAGIC "WLG1"
#define LG_FLAG_CLOSE (1u << 0)		/* server closes after the response */
#define LG_SIZE_MAX (1u << 30)
#define LG_BACKOFF_NS 20000000ull	/* between failed reconnects */
#define LG_EOF_WAIT_S 2			/* churn: wait this long for the server's FIN */
#define LG_SRV_CONNS 8192		/* per server thread */
#define LG_MAX_THREADS 64

/* Operation tag in the low bits of user_data; objects are 8-byte aligned.
 * 0 with a NULL pointer marks completions nobody waits for. */
enum lg_op {
	LG_OP_NONE = 0,
	LG_OP_CONNECT,
	LG_OP_SEND,
	LG_OP_RECV,
	LG_OP_EOF,
	LG_OP_BACKOFF,
	LG_OP_TIMER,
	LG_OP_ACCEPT,
};
#define LG_OP_MASK 7ull

enum lg_mode {
	LG_MODE_RR = 1,
	LG_MODE_CHURN,
	LG_MODE_MAX,
	LG_MODE_SERVER,
};

enum lg_err {
	LG_ERR_CONNECT = 0,	/* refused, unreachable, no port */
	LG_ERR_RESET,		/* ECONNRESET, EPIPE */
	LG_ERR_EOF,		/* peer closed mid-response */
	LG_ERR_PROTO,		/* unparsable or oversized HTTP response */
	LG_ERR_STATUS,		/* HTTP status other than 2xx */
	LG_ERR_OTHER,
	LG_ERR_UNFINISHED,	/* no answer by the drain deadline */
	LG_ERR_N,
};

static const char *const lg_err_names[LG_ERR_N] = {
	"connect", "reset", "eof", "proto", "status", "other", "unfinished",
};

struct lg_opts {
	enum lg_mode mode;
	const char *target;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	double rate;
	unsigned conns;
	unsigned threads;
	size_t req;
	size_t resp;
	double duration;
	double warmup;
	double drain;
	uint64_t spin_ns;	/* open loop: poll instead of sleeping this close to a send */
	int http;
	const char *path;
	const char *host;
	/* server */
	const char *bind;
	const char *port;
};

enum lg_cstate {
	LG_C_DOWN = 0,
	LG_C_CONNECTING,	/* rr/max: (re)connect in flight */
	LG_C_READY,		/* connected, idle */
	LG_C_BUSY,		/* a request in flight (churn: from connect on) */
	LG_C_EOFWAIT,		/* churn: answered, waiting for the server's FIN */
	LG_C_BACKOFF,
};

struct lg_worker;

/* A client connection (rr, max) or a churn slot. */
struct lg_conn {
	int fd;
	unsigned idx;
	enum lg_cstate state;
	unsigned inflight;	/* SQEs pointing at this conn */
	int failed;		/* 1 + enum lg_err once broken, until settled */
	uint64_t due;		/* rr: requests assigned to this conn */
	uint64_t done;		/* rr: requests answered or failed */
	uint64_t sched_ns;	/* scheduled (open loop) or actual start */
	size_t sent;
	size_t body_left;
	size_t hlen;
	int send_done;
	int hdr_done;
	int bad_status;
	int close_after;
	char hbuf[LG_HDR_MAX];
};

struct lg_worker {
	const struct lg_opts *o;
	struct io_uring ring;
	int ring_ok;
	unsigned id;
	pthread_t thread;

	struct lg_conn *conns;
	unsigned nconns;
	unsigned *free_slots;	/* churn: stack of idle slots */
	unsigned nfree;

	double rate;		/* this worker's share, req/s (0: closed loop) */
	double period_ns;
	uint64_t off_ns;	/* stagger between workers */
	uint64_t t0, t_warm, t_end, t_drain;
	uint64_t next_k;	/* next request index to fall due */
	uint64_t started_k;	/* churn: next due index to start */
	uint64_t backlog;	/* rr: sum of due - done */
	unsigned busy;		/* requests in flight */
	int started;
	int finished;
	int timer_armed;
	struct __kernel_timespec timer_ts;

	char *sendbuf;
	size_t sendlen;
	char *scratch;

	struct hist lat;
	struct hist lag;	/* actual start - scheduled start */
	uint64_t ok_in_window;	/* answered within [t_warm, t_end) */
	uint64_t conns_opened;
	uint64_t err[LG_ERR_N];
};

static const struct __kernel_timespec lg_eof_ts = { .tv_sec = LG_EOF_WAIT_S };

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(err));
	exit(1);
}

/* Rings per thread; single issuer with deferred task work keeps completion
 * work out of interrupts, but needs a 6.1 kernel, so fall back. */
static int ring_setup(struct io_uring *ring, unsigned entries)
{
	struct io_uring_params p;
	int ret;

	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
		  IORING_SETUP_CQSIZE;
	p.cq_entries = entries * 4;
	ret = io_uring_queue_init_params(entries, ring, &p);
	if (ret == -EINVAL) {
		memset(&p, 0, sizeof(p));
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		ret = io_uring_queue_init_params(entries, ring, &p);
	}
	return ret;
}

/* An SQE, submitting first when the queue is full. The ring is sized for
 * every operation that can be in flight, so NULL means a bug. */
static struct io_uring_sqe *lg_sqe(struct io_uring *ring, void *obj, enum lg_op op)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

	if (!sqe) {
		io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
		if (!sqe) {
			fprintf(stderr, "loadgen: submission queue full\n");
			abort();
		}
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)obj | op);
	return sqe;
}

static enum lg_err err_class(int res)
{
	switch (res) {
	case -ECONNREFUSED: case -ETIMEDOUT: case -EHOSTUNREACH: case -ENETUNREACH:
	case -EADDRNOTAVAIL: case -EMFILE: case -ENFILE:
		return LG_ERR_CONNECT;
	case -ECONNRESET: case -EPIPE:
		return LG_ERR_RESET;
	default:
		return LG_ERR_OTHER;
	}
}

static int sock_tune(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ------------------------------------------------------------------------ */
/* Client                                                                     */

static uint64_t sched_at(const struct lg_worker *w, uint64_t k)
{
	return w->t0 + w->off_ns + (uint64_t)((double)k * w->period_ns);
}

/* Errors count only for requests of the measured window. */
static void err_count(struct lg_worker *w, uint64_t sched, enum lg_err e)
{
	if (sched >= w->t_warm)
		w->err[e]++;
}

/* Parse an HTTP/1.x response head in buf[0..len). Returns 1 with *head
 * (bytes of the head), *clen, *status and *close set; 0 when incomplete;
 * -1 on a malformed head or a missing Content-Length. Pure. */
static int http_resp_parse(const char *buf, size_t len, size_t *head, uint64_t *clen,
			   int *status, int *close_after)
{
	const char *end = memmem(buf, len, "\r\n\r\n", 4), *p, *eol;
	int have_len = 0, v10;

	if (!end)
		return 0;
	*head = (size_t)(end - buf) + 4;
	if (*head < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ')
		return -1;
	v10 = buf[7] == '0';
	if (buf[9] < '0' || buf[9] > '9' || buf[10] < '0' || buf[10] > '9' ||
	    buf[11] < '0' || buf[11] > '9')
		return -1;
	*status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
	*close_after = v10;
	*clen = 0;
	/* The status line's CRLF is at or before end. */
	p = (const char *)memchr(buf, '\n', (size_t)(end - buf) + 2) + 1;
	for (; p < end + 2; p = eol + 2) {
		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if (!eol)
			break;
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			const char *q = p + 15;
			uint64_t n = 0;

			while (q < eol && *q == ' ')
				q++;
			if (q == eol)
				return -1;
			for (; q < eol && *q >= '0' && *q <= '9'; q++) {
				n = n * 10 + (uint64_t)(*q - '0');
				if (n > LG_SIZE_MAX)
					return -1;
			}
			*clen = n;
			have_len = 1;
		} else if ((size_t)(eol - p) > 11 && strncasecmp(p, "connection:", 11) == 0) {
			const char *q = p + 11;

			while (q < eol && *q == ' ')
				q++;
			if ((size_t)(eol - q) >= 5 && strncasecmp(q, "close", 5) == 0)
				*close_after = 1;
			else if ((size_t)(eol - q) >= 10 && strncasecmp(q, "keep-alive", 10) == 0)
				*close_after = 0;
		}
	}
	/* 204 and 304 have no body; anything else must say how long it is,
	 * since a close-delimited body would end the connection anyway. */
	if (!have_len && *status != 204 && *status != 304)
		return -1;
	return 1;
}

static void conn_submit_send(struct lg_worker *w, struct lg_conn *c, unsigned sqe_flags)
{
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, c, LG_OP_SEND);

	io_uring_prep_send(sqe, c->fd, w->sendbuf + c->sent, w->sendlen - c->sent,
			   MSG_NOSIGNAL | MSG_WAITALL);
	sqe->flags |= sqe_flags;
	c->inflight++;
}

static void conn_submit_recv(struct lg_worker *w, struct lg_conn *c)
{
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, c, LG_OP_RECV);

	if (!c->hdr_done)
		io_uring_prep_recv(sqe, c->fd, c->hbuf + c->hlen, LG_HDR_MAX - c->hlen, 0);
	else
		io_uring_prep_recv(sqe, c->fd, w->scratch,
				   c->body_left < LG_SCRATCH ? c->body_left : LG_SCRATCH,
				   MSG_WAITALL);
	c->inflight++;
}

static void req_reset(struct lg_worker *w, struct lg_conn *c, uint64_t sched, uint64_t now)
{
	c->sched_ns = sched;
	c->sent = 0;
	c->hlen = 0;
	c->send_done = 0;
	c->hdr_done = !w->o->http;
	c->body_left = w->o->http ? 0 : w->o->resp;
	c->bad_status = 0;
	c->close_after = 0;
	c->state = LG_C_BUSY;
	w->busy++;
	if (w->rate > 0 && sched >= w->t_warm)
		hist_record(&w->lag, now > sched ? now - sched : 0);
}

/* Send one request on a connected conn; sched is its scheduled time. */
static void req_begin(struct lg_worker *w, struct lg_conn *c, uint64_t sched, uint64_t now)
{
	req_reset(w, c, sched, now);
	conn_submit_send(w, c, 0);
	if (!c->hdr_done || c->body_left)
		conn_submit_recv(w, c);
}

static void rr_next(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
	if (c->state == LG_C_READY && c->done < c->due)
		req_begin(w, c, sched_at(w, c->done * w->nconns + c->idx), now);
}

static void conn_error(struct lg_conn *c, enum lg_err e)
{
	if (c->failed)
		return;
	c->failed = 1 + (int)e;
	/* Make the other operations on this socket complete now. */
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
}

static void backoff_arm(struct lg_worker *w, struct lg_conn *c)
{
	static const struct __kernel_timespec ts = { .tv_nsec = LG_BACKOFF_NS };
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, c, LG_OP_BACKOFF);

	io_uring_prep_timeout(sqe, (struct __kernel_timespec *)&ts, 0, 0);
	c->state = LG_C_BACKOFF;
	c->inflight++;
}

/* rr and max: a fresh connection for conn c, unless the run is over. */
static void conn_reopen(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
	struct io_uring_sqe *sqe;

	c->state = LG_C_DOWN;
	if (now >= w->t_end)
		return;
	c->fd = socket(w->o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		w->err[LG_ERR_CONNECT]++;
		backoff_arm(w, c);
		return;
	}
	sock_tune(c->fd);
	sqe = lg_sqe(&w->ring, c, LG_OP_CONNECT);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&w->o->addr, w->o->addrlen);
	c->state = LG_C_CONNECTING;
	c->inflight++;
}

static void churn_fill(struct lg_worker *w, uint64_t now);

static void slot_release(struct lg_worker *w, struct lg_conn *c)
{
	c->state = LG_C_DOWN;
	w->free_slots[w->nfree++] = c->idx;
}

/* Every operation of a failed conn has completed: account, close, retry. */
static void conn_broken(struct lg_worker *w, struct lg_conn *c, uint64_t now)
{
	enum lg_err e = (enum lg_err)(c->failed - 1);
	enum lg_cstate was = c->state;

	c->failed = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (was == LG_C_BUSY) {
		err_count(w, c->sched_ns, e);
		w->busy--;
	}
	switch (w->o->mode) {
	case LG_MODE_RR:
		if (was == LG_C_BUSY) {
			c->done++;
			w->backlog--;
		}
		if (was == LG_C_CONNECTING) {
			/* Nothing queued here can be served soon: fail it now
			 * rather than let it age into the latency figures. */
			for (; c->done < c->due; c->done++, w->backlog--)
				err_count(w, sched_at(w, c->done * w->nconns + c->idx), e);
			backoff_arm(w, c);
		} else {
			conn_reopen(w, c, now);
		}
		break;
	case LG_MODE_MAX:
		if (was == LG_C_CONNECTING) {
			err_count(w, now, e);
			backoff_arm(w, c);
		} else {
			conn_reopen(w, c, now);
		}
		break;
	default:
		slot_release(w, c);
		churn_fill(w, now);
		break;
	}
}

static void conn_settle(struct lg_worker *w, struct lg_conn *c)
{
	if (c->failed && !c->inflight)
		conn_broken(w, c, now_ns());
}

static void churn_eof_wait(struct lg_worker *w, struct lg_conn *c)
{
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, c, LG_OP_EOF);

	io_uring_prep_recv(sqe, c->fd, w->scratch, LG_SCRATCH, 0);
	sqe->flags |= IOSQE_IO_LINK;
	c->inflight++;
	sqe = lg_sqe(&w->ring, NULL, LG_OP_NONE);
	io_uring_prep_link_timeout(sqe, (struct __kernel_timespec *)&lg_eof_ts, 0);
}

/* Both directions of the current request are done. */
static void req_finish(struct lg_worker *w, struct lg_conn *c)
{
	uint64_t now = now_ns();

	w->busy--;
	if (c->bad_status) {
		err_count(w, c->sched_ns, LG_ERR_STATUS);
	} else {
		if (c->sched_ns >= w->t_warm)
			hist_record(&w->lat, now - c->sched_ns);
		if (now >= w->t_warm && now < w->t_end)
			w->ok_in_window++;
	}
	switch (w->o->mode) {
	case LG_MODE_RR:
		c->done++;
		w->backlog--;
		c->state = LG_C_READY;
		if (c->close_after) {
			close(c->fd);
			c->fd = -1;
			conn_reopen(w, c, now);
		} else {
			rr_next(w, c, now);
		}
		break;
	case LG_MODE_MAX:
		c->state = LG_C_READY;
		if (c->close_after) {
			close(c->fd);
			c->fd = -1;
			conn_reopen(w, c, now);
		} else if (now < w->t_end) {
			req_begin(w, c, now, now);
		}
		break;
	default:
		/* Let the server close first so TIME_WAIT stays on its side
		 * and the client's ephemeral ports do not run out. */
		c->state = LG_C_EOFWAIT;
		churn_eof_wait(w, c);
		break;
	}
}

/* churn: one connection, request and response as a linked chain. */
static void churn_start(struct lg_worker *w, uint64_t sched, uint64_t now)
{
	struct lg_conn *c = &w->conns[w->free_slots[--w->nfree]];
	struct io_uring_sqe *sqe;

	c->fd = socket(w->o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		err_count(w, sched, LG_ERR_CONNECT);
		slot_release(w, c);
		return;
	}
	sock_tune(c->fd);
	req_reset(w, c, sched, now);
	w->conns_opened++;
	sqe = lg_sqe(&w->ring, c, LG_OP_CONNECT);
	io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&w->o->addr, w->o->addrlen);
	sqe->flags |= IOSQE_IO_LINK;
	c->inflight++;
	/* An empty response needs no recv, and a link must not dangle. */
	if (!c->hdr_done || c->body_left) {
		conn_submit_send(w, c, IOSQE_IO_LINK);
		conn_submit_recv(w, c);
	} else {
		conn_submit_send(w, c, 0);
	}
}

static void churn_fill(struct lg_worker *w, uint64_t now)
{
	unsigned n;

	if (w->rate > 0) {
		while (w->nfree && w->started_k < w->next_k) {
			churn_start(w, sched_at(w, w->started_k), now);
			w->started_k++;
		}
		return;
	}
	if (now < w->t0 || now >= w->t_end)
		return;
	/* Bounded: a socket() failure puts the slot back at once. */
	for (n = w->nfree; n; n--)
		churn_start(w, now, now);
}

static void on_client_cqe(struct lg_worker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct lg_conn *c = (struct lg_conn *)(uintptr_t)(ud & ~LG_OP_MASK);
	enum lg_op op = (enum lg_op)(ud & LG_OP_MASK);
	int res = cqe->res;

	switch (op) {
	case LG_OP_NONE:
		return;
	case LG_OP_TIMER:
		w->timer_armed = 0;
		return;
	case LG_OP_BACKOFF:
		c->inflight--;
		conn_reopen(w, c, now_ns());
		return;
	case LG_OP_CONNECT:
		c->inflight--;
		if (res < 0) {
			conn_error(c, res == -ECANCELED ? LG_ERR_OTHER : LG_ERR_CONNECT);
		} else if (!c->failed && c->state == LG_C_CONNECTING) {
			uint64_t now = now_ns();

			w->conns_opened++;
			c->state = LG_C_READY;
			if (w->o->mode == LG_MODE_RR)
				rr_next(w, c, now);
			else if (w->started && now < w->t_end)
				req_begin(w, c, now, now);
		}
		break;
	case LG_OP_SEND:
		c->inflight--;
		if (c->failed)
			break;
		if (res < 0) {
			conn_error(c, err_class(res));
			break;
		}
		c->sent += (size_t)res;
		if (c->sent < w->sendlen) {
			conn_submit_send(w, c, 0);
			break;
		}
		c->send_done = 1;
		if (c->hdr_done && !c->body_left)
			req_finish(w, c);
		break;
	case LG_OP_RECV:
		c->inflight--;
		if (c->failed)
			break;
		if (res <= 0) {
			conn_error(c, res == 0 ? LG_ERR_EOF : err_class(res));
			break;
		}
		if (!c->hdr_done) {
			size_t head;
			uint64_t clen;
			int status, close_after, r;

			c->hlen += (size_t)res;
			r = http_resp_parse(c->hbuf, c->hlen, &head, &clen, &status, &close_after);
			if (r < 0 || (r == 0 && c->hlen == LG_HDR_MAX) ||
			    (r > 0 && c->hlen - head > clen)) {
				conn_error(c, LG_ERR_PROTO);
				break;
			}
			if (r == 0) {
				conn_submit_recv(w, c);
				break;
			}
			c->hdr_done = 1;
			c->body_left = clen - (c->hlen - head);
			c->bad_status = status < 200 || status > 299;
			c->close_after = close_after;
		} else {
			c->body_left -= (size_t)res;
		}
		if (c->body_left) {
			conn_submit_recv(w, c);
			break;
		}
		if (c->send_done)
			req_finish(w, c);
		break;
	case LG_OP_EOF:
		c->inflight--;
		if (res > 0) {
			churn_eof_wait(w, c);
			break;
		}
		close(c->fd);
		c->fd = -1;
		slot_release(w, c);
		churn_fill(w, now_ns());
		return;
	default:
		return;
	}
	conn_settle(w, c);
}

/* Requests (rr) or slots (churn) due by now; the end of the run. */
static void client_tick(struct lg_worker *w, uint64_t now)
{
	uint64_t s;
	unsigned i;

	if (now < w->t0)
		return;
	if (w->o->mode == LG_MODE_RR) {
		while ((s = sched_at(w, w->next_k)) <= now && s < w->t_end) {
			struct lg_conn *c = &w->conns[w->next_k % w->nconns];

			c->due++;
			w->backlog++;
			rr_next(w, c, now);
			w->next_k++;
		}
	} else if (w->o->mode == LG_MODE_CHURN) {
		if (w->rate > 0)
			while ((s = sched_at(w, w->next_k)) <= now && s < w->t_end)
				w->next_k++;
		churn_fill(w, now);
	} else if (!w->started) {
		for (i = 0; i < w->nconns; i++)
			if (w->conns[i].state == LG_C_READY)
				req_begin(w, &w->conns[i], now, now);
	}
	w->started = 1;
	if (now < w->t_end)
		return;

	/* Drain: wait for answers to what was sent, up to the deadline. */
	if (now < w->t_drain && (w->busy || w->backlog ||
				 (w->o->mode == LG_MODE_CHURN && w->started_k < w->next_k)))
		return;
	for (i = 0; i < w->nconns; i++) {
		struct lg_conn *c = &w->conns[i];
		uint64_t m;

		if (w->o->mode == LG_MODE_RR) {
			for (m = c->done; m < c->due; m++)
				err_count(w, sched_at(w, m * w->nconns + c->idx), LG_ERR_UNFINISHED);
		} else if (c->state == LG_C_BUSY) {
			err_count(w, c->sched_ns, LG_ERR_UNFINISHED);
		}
	}
	if (w->o->mode == LG_MODE_CHURN)
		for (; w->started_k < w->next_k; w->started_k++)
			err_count(w, sched_at(w, w->started_k), LG_ERR_UNFINISHED);
	w->finished = 1;
}

/* When the loop must next look at the clock: a send falls due, the run
 * ends, the drain deadline passes. */
static uint64_t wake_at(const struct lg_worker *w, uint64_t now)
{
	uint64_t s;

	if (now < w->t0)
		return w->t0 + w->off_ns;
	if (now >= w->t_end)
		return w->t_drain;
	if (w->rate > 0) {
		s = sched_at(w, w->next_k);
		return s < w->t_end ? s : w->t_end;
	}
	return w->t_end;
}

static void timer_arm(struct lg_worker *w, uint64_t at)
{
	struct io_uring_sqe *sqe;

	if (w->timer_armed)
		return;
	w->timer_ts.tv_sec = (long long)(at / 1000000000ull);
	w->timer_ts.tv_nsec = (long long)(at % 1000000000ull);
	sqe = lg_sqe(&w->ring, NULL, LG_OP_TIMER);
	io_uring_prep_timeout(sqe, &w->timer_ts, 0, IORING_TIMEOUT_ABS);
	w->timer_armed = 1;
}

static void *client_run(void *arg)
{
	struct lg_worker *w = arg;
	struct io_uring_cqe *cqe;
	unsigned entries = 256, head, n;
	int ret;

	while (entries < w->nconns * 4 + 16 && entries < 32768)
		entries <<= 1;
	ret = ring_setup(&w->ring, entries);
	if (ret < 0)
		die("io_uring_queue_init", -ret);
	w->ring_ok = 1;
	while (!w->finished) {
		uint64_t now = now_ns(), at;

		client_tick(w, now);
		if (w->finished)
			break;
		at = wake_at(w, now);
		if (w->rate > 0 && w->o->spin_ns && now < w->t_end) {
			/* Waking from a timer costs tens of microseconds on a
			 * VM, all of it counted as latency; spin the last stretch
			 * instead, still reaping completions. */
			if (at <= now + w->o->spin_ns) {
				ret = io_uring_submit_and_get_events(&w->ring);
				goto reap;
			}
			at -= w->o->spin_ns;
		}
		timer_arm(w, at);
		ret = io_uring_submit_and_wait(&w->ring, 1);
reap:
		if (ret < 0 && ret != -EINTR && ret != -ETIME && ret != -EAGAIN &&
		    ret != -EBUSY)
			die("io_uring_submit_and_wait", -ret);
		n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			on_client_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
	}
	return NULL;
}

/* The request every connection of a run sends, byte for byte. */
static int request_build(struct lg_worker *w)
{
	const struct lg_opts *o = w->o;

	if (!o->http) {
		uint32_t v;

		w->sendlen = o->req;
		w->sendbuf = malloc(w->sendlen);
		if (!w->sendbuf)
			return -ENOMEM;
		memset(w->sendbuf, 'x', w->sendlen);
		memcpy(w->sendbuf, LG_MAGIC, 4);
		v = htonl((uint32_t)o->req);
		memcpy(w->sendbuf + 4, &v, 4);
		v = htonl((uint32_t)o->resp);
		memcpy(w->sendbuf + 8, &v, 4);
		v = htonl(o->mode == LG_MODE_CHURN ? LG_FLAG_CLOSE : 0);
		memcpy(w->sendbuf + 12, &v, 4);
		return 0;
	} else {
		static const char pad_name[] = "X-Pad: ";
		char head[1024];
		size_t pad = 0;
		int n;

		n = snprintf(head, sizeof(head),
			     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: weft-loadgen\r\n%s",
			     o->path, o->host,
			     o->mode == LG_MODE_CHURN ? "Connection: close\r\n" : "");
		if (n < 0 || (size_t)n >= sizeof(head))
			return -ENAMETOOLONG;
		/* head + "X-Pad: " + pad + "\r\n" + "\r\n" == req, if it fits. */
		if (o->req > (size_t)n + sizeof(pad_name) - 1 + 4)
			pad = o->req - (size_t)n - (sizeof(pad_name) - 1) - 4;
		w->sendlen = (size_t)n + 2 + (pad ? sizeof(pad_name) - 1 + pad + 2 : 0);
		w->sendbuf = malloc(w->sendlen);
		if (!w->sendbuf)
			return -ENOMEM;
		memcpy(w->sendbuf, head, (size_t)n);
		if (pad) {
			char *p = w->sendbuf + n;

			memcpy(p, pad_name, sizeof(pad_name) - 1);
			p += sizeof(pad_name) - 1;
			memset(p, 'x', pad);
			memcpy(p + pad, "\r\n", 2);
		}
		memcpy(w->sendbuf + w->sendlen - 2, "\r\n", 2);
		return 0;
	}
}

/* Allocate everything a worker needs; rr/max connect synchronously so a
 * wrong address fails before the clock starts. */
static int worker_init(struct lg_worker *w, const struct lg_opts *o, unsigned id,
		       unsigned nconns)
{
	unsigned i;
	int ret;

	w->o = o;
	w->id = id;
	w->nconns = nconns;
	hist_init(&w->lat);
	hist_init(&w->lag);
	w->conns = calloc(nconns, sizeof(*w->conns));
	w->free_slots = calloc(nconns, sizeof(*w->free_slots));
	w->scratch = malloc(LG_SCRATCH);
	if (!w->conns || !w->free_slots || !w->scratch)
		return -ENOMEM;
	ret = request_build(w);
	if (ret)
		return ret;
	w->rate = o->mode == LG_MODE_MAX ? 0 : o->rate / o->threads;
	if (w->rate > 0) {
		w->period_ns = 1e9 / w->rate;
		w->off_ns = (uint64_t)(1e9 / o->rate * id);
	}
	for (i = 0; i < nconns; i++) {
		struct lg_conn *c = &w->conns[i];

		c->idx = i;
		c->fd = -1;
		w->free_slots[w->nfree++] = i;
		if (o->mode == LG_MODE_CHURN)
			continue;
		c->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (c->fd < 0)
			return -errno;
		if (connect(c->fd, (const struct sockaddr *)&o->addr, o->addrlen) < 0)
			return -errno;
		sock_tune(c->fd);
		c->state = LG_C_READY;
		w->conns_opened++;
	}
	return 0;
}

static void worker_deinit(struct lg_worker *w)
{
	unsigned i;

	if (w->ring_ok)
		io_uring_queue_exit(&w->ring);
	for (i = 0; w->conns && i < w->nconns; i++)
		if (w->conns[i].fd >= 0)
			close(w->conns[i].fd);
	free(w->conns);
	free(w->free_slots);
	free(w->scratch);
	free(w->sendbuf);
}

/* ------------------------------------------------------------------------ */
/* Report                                                                     */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static double us(uint64_t ns)
{
	return (double)ns / 1000.0;
}

static const char *mode_name(enum lg_mode m)
{
	return m == LG_MODE_RR ? "rr" : m == LG_MODE_CHURN ? "churn" :
	       m == LG_MODE_MAX ? "max" : "server";
}

static void report(const struct lg_opts *o, struct lg_worker *ws)
{
	static struct hist lat, lag;	/* ~30 KB each: keep off the stack */
	uint64_t err[LG_ERR_N] = { 0 }, ok = 0, opened = 0, errors = 0;
	double achieved;
	unsigned i, j;
	int first = 1;

	hist_init(&lat);
	hist_init(&lag);
	for (i = 0; i < o->threads; i++) {
		hist_merge(&lat, &ws[i].lat);
		hist_merge(&lag, &ws[i].lag);
		ok += ws[i].ok_in_window;
		opened += ws[i].conns_opened;
		for (j = 0; j < LG_ERR_N; j++)
			err[j] += ws[i].err[j];
	}
	for (j = 0; j < LG_ERR_N; j++)
		errors += err[j];
	achieved = (double)ok / o->duration;

	printf("{\"mode\":\"%s\",\"target\":", mode_name(o->mode));
	json_str(stdout, o->target);
	printf(",\"http\":%s,\"rate_target\":%.1f,\"rate_achieved\":%.1f,"
	       "\"conns\":%u,\"threads\":%u,\"req_bytes\":%zu,\"resp_bytes\":%zu,"
	       "\"duration_s\":%.3f,\"warmup_s\":%.3f,\"count\":%llu,\"errors\":%llu,",
	       o->http ? "true" : "false", o->mode == LG_MODE_MAX ? 0.0 : o->rate, achieved,
	       o->conns, o->threads, ws[0].sendlen, o->resp, o->duration, o->warmup,
	       (unsigned long long)lat.total, (unsigned long long)errors);
	printf("\"error_detail\":{");
	for (j = 0; j < LG_ERR_N; j++)
		printf("%s\"%s\":%llu", j ? "," : "", lg_err_names[j],
		       (unsigned long long)err[j]);
	printf("},\"connections_opened\":%llu,", (unsigned long long)opened);
	if (o->mode == LG_MODE_CHURN)
		printf("\"conns_per_s\":%.1f,", achieved);
	printf("\"latency_us\":{\"min\":%.2f,\"mean\":%.2f,\"p50\":%.2f,\"p90\":%.2f,"
	       "\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f},",
	       lat.total ? us(lat.min) : 0.0, hist_mean(&lat) / 1000.0,
	       us(hist_percentile(&lat, 50)), us(hist_percentile(&lat, 90)),
	       us(hist_percentile(&lat, 99)), us(hist_percentile(&lat, 99.9)), us(lat.max));
	printf("\"start_lag_us\":{\"p50\":%.2f,\"p99\":%.2f,\"max\":%.2f},",
	       us(hist_percentile(&lag, 50)), us(hist_percentile(&lag, 99)), us(lag.max));
	printf("\"histogram_us\":[");
	for (i = 0; i < HIST_SLOTS; i++) {
		if (!lat.counts[i])
			continue;
		printf("%s[%.3f,%llu]", first ? "" : ",", us(hist_slot_highest(i)),
		       (unsigned long long)lat.counts[i]);
		first = 0;
	}
	printf("]}\n");
	fflush(stdout);

	fprintf(stderr, "%s %s c=%u%s: %.1f %s/s (target %.0f), %llu ok, %llu errors; "
		"latency us p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f mean %.1f\n",
		mode_name(o->mode), o->target, o->conns, o->http ? " http" : "", achieved,
		o->mode == LG_MODE_CHURN ? "conn" : "req",
		o->mode == LG_MODE_MAX ? 0.0 : o->rate, (unsigned long long)lat.total,
		(unsigned long long)errors, us(hist_percentile(&lat, 50)),
		us(hist_percentile(&lat, 90)), us(hist_percentile(&lat, 99)),
		us(hist_percentile(&lat, 99.9)), us(lat.max), hist_mean(&lat) / 1000.0);
}

static int client_main(struct lg_opts *o)
{
	struct lg_worker *ws;
	uint64_t t0;
	unsigned i;
	int ret = 0;

	if (o->conns < o->threads) {
		fprintf(stderr, "loadgen: -c %u must be at least -j %u\n", o->conns, o->threads);
		return 2;
	}
	ws = calloc(o->threads, sizeof(*ws));
	if (!ws)
		die("calloc", ENOMEM);
	for (i = 0; i < o->threads; i++) {
		ret = worker_init(&ws[i], o, i, o->conns / o->threads +
				  (i < o->conns % o->threads));
		if (ret) {
			fprintf(stderr, "loadgen: %s %s: %s\n",
				ret == -ENOMEM ? "setup" : "connect", o->target, strerror(-ret));
			ret = 1;
			goto out;
		}
	}
	/* A common clock for all workers, a little ahead so each can set up. */
	t0 = now_ns() + 20000000ull;
	for (i = 0; i < o->threads; i++) {
		ws[i].t0 = t0;
		ws[i].t_warm = t0 + (uint64_t)(o->warmup * 1e9);
		ws[i].t_end = ws[i].t_warm + (uint64_t)(o->duration * 1e9);
		ws[i].t_drain = ws[i].t_end + (uint64_t)(o->drain * 1e9);
	}
	for (i = 1; i < o->threads; i++) {
		ret = pthread_create(&ws[i].thread, NULL, client_run, &ws[i]);
		if (ret)
			die("pthread_create", ret);
	}
	client_run(&ws[0]);
	for (i = 1; i < o->threads; i++)
		pthread_join(ws[i].thread, NULL);
	report(o, ws);
out:
	for (i = 0; i < o->threads; i++)
		worker_deinit(&ws[i]);
	free(ws);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* Server                                                                     */

static char lg_zeros[LG_SCRATCH];	/* every response body; never written */

struct lg_sworker;

struct lg_sconn {
	struct lg_sworker *w;
	struct lg_sconn *next_free;
	int fd;
	int have_req;		/* parsed, response not yet sent */
	int close_after;
	int in_scratch;		/* the pending recv skips request body */
	uint64_t skip;		/* request body bytes still to read */
	uint64_t resp_left;	/* body bytes still to send */
	size_t blen;
	size_t hdr_len;
	size_t hdr_off;
	struct iovec iov[2];
	struct msghdr msg;
	char hdr[192];
	char buf[LG_HDR_MAX];
};

struct lg_sworker {
	const struct lg_opts *o;
	struct io_uring ring;
	pthread_t thread;
	int lfd;
	unsigned nconns;
	struct lg_sconn *free_list;
	char scratch[LG_SCRATCH];
};

static void buf_consume(struct lg_sconn *c, size_t n)
{
	memmove(c->buf, c->buf + n, c->blen - n);
	c->blen -= n;
}

/* Parse one request at the head of c->buf. Returns 1 (request taken; its
 * head consumed, body to skip, response set up), 0 (need more bytes) or -1
 * (malformed or too large). Pure apart from c. */
static int srv_parse(struct lg_sconn *c, size_t def_resp)
{
	const char *end, *p, *eol, *sp;
	uint64_t resp = def_resp;
	int n;

	if (c->blen < 4)
		return 0;
	if (memcmp(c->buf, LG_MAGIC, 4) == 0) {
		uint32_t req, rsp, flags;

		if (c->blen < LG_WIRE_HDR)
			return 0;
		memcpy(&req, c->buf + 4, 4);
		memcpy(&rsp, c->buf + 8, 4);
		memcpy(&flags, c->buf + 12, 4);
		req = ntohl(req);
		rsp = ntohl(rsp);
		flags = ntohl(flags);
		if (req < LG_WIRE_HDR || req > LG_SIZE_MAX || rsp > LG_SIZE_MAX)
			return -1;
		buf_consume(c, LG_WIRE_HDR);
		c->skip = req - LG_WIRE_HDR;
		c->resp_left = rsp;
		c->hdr_len = 0;
		c->close_after = flags & LG_FLAG_CLOSE;
		c->have_req = 1;
		return 1;
	}

	end = memmem(c->buf, c->blen, "\r\n\r\n", 4);
	if (!end)
		return c->blen == LG_HDR_MAX ? -1 : 0;
	/* Request line: METHOD SP /path SP HTTP/1.x */
	eol = memmem(c->buf, (size_t)(end + 2 - c->buf), "\r\n", 2);
	sp = memchr(c->buf, ' ', (size_t)(eol - c->buf));
	if (!sp || eol - sp < 10 || sp[1] != '/')
		return -1;
	if (sp[2] >= '0' && sp[2] <= '9') {
		resp = 0;
		for (p = sp + 2; *p >= '0' && *p <= '9' && resp <= LG_SIZE_MAX; p++)
			resp = resp * 10 + (uint64_t)(*p - '0');
		if (resp > LG_SIZE_MAX)
			return -1;
	}
	c->close_after = memcmp(eol - 8, "HTTP/1.0", 8) == 0;
	c->skip = 0;
	for (p = eol + 2; p < end + 2; p = eol + 2) {
		eol = memmem(p, (size_t)(end + 2 - p), "\r\n", 2);
		if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			c->skip = strtoull(p + 15, NULL, 10);
			if (c->skip > LG_SIZE_MAX)
				return -1;
		} else if ((size_t)(eol - p) > 11 && strncasecmp(p, "connection:", 11) == 0) {
			const char *q = p + 11;

			while (q < eol && *q == ' ')
				q++;
			if ((size_t)(eol - q) >= 5 && strncasecmp(q, "close", 5) == 0)
				c->close_after = 1;
			else if ((size_t)(eol - q) >= 10 && strncasecmp(q, "keep-alive", 10) == 0)
				c->close_after = 0;
		}
	}
	n = snprintf(c->hdr, sizeof(c->hdr),
		     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
		     "Content-Length: %llu\r\n%s\r\n", (unsigned long long)resp,
		     c->close_after ? "Connection: close\r\n" : "");
	c->hdr_len = (size_t)n;
	c->hdr_off = 0;
	c->resp_left = resp;
	buf_consume(c, (size_t)(end + 4 - c->buf));
	c->have_req = 1;
	return 1;
}

static void srv_close(struct lg_sworker *w, struct lg_sconn *c)
{
	close(c->fd);
	c->fd = -1;
	c->next_free = w->free_list;
	w->free_list = c;
}

static void srv_send(struct lg_sworker *w, struct lg_sconn *c)
{
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, c, LG_OP_SEND);
	int n = 0;

	if (c->hdr_off < c->hdr_len) {
		c->iov[n].iov_base = c->hdr + c->hdr_off;
		c->iov[n++].iov_len = c->hdr_len - c->hdr_off;
	}
	if (c->resp_left) {
		c->iov[n].iov_base = lg_zeros;
		c->iov[n++].iov_len = c->resp_left < LG_SCRATCH ? c->resp_left : LG_SCRATCH;
	}
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov;
	c->msg.msg_iovlen = (size_t)n;
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
}

/* Move a connection on: skip request body, answer, or read more. Exactly
 * one operation is in flight per connection, so this runs only from that
 * operation's completion. */
static void srv_advance(struct lg_sworker *w, struct lg_sconn *c)
{
	struct io_uring_sqe *sqe;
	size_t take;
	int r;

	for (;;) {
		if (c->have_req && c->skip) {
			take = c->blen < c->skip ? c->blen : (size_t)c->skip;
			buf_consume(c, take);
			c->skip -= take;
			if (c->skip) {
				sqe = lg_sqe(&w->ring, c, LG_OP_RECV);
				io_uring_prep_recv(sqe, c->fd, w->scratch,
						   c->skip < LG_SCRATCH ? c->skip : LG_SCRATCH, 0);
				c->in_scratch = 1;
				return;
			}
		}
		if (c->have_req) {
			if (!c->hdr_len && !c->resp_left) {
				c->have_req = 0;
				if (c->close_after) {
					srv_close(w, c);
					return;
				}
				continue;
			}
			srv_send(w, c);
			return;
		}
		r = srv_parse(c, w->o->resp);
		if (r < 0) {
			srv_close(w, c);
			return;
		}
		if (r == 0) {
			sqe = lg_sqe(&w->ring, c, LG_OP_RECV);
			io_uring_prep_recv(sqe, c->fd, c->buf + c->blen, LG_HDR_MAX - c->blen, 0);
			c->in_scratch = 0;
			return;
		}
	}
}

static void srv_accept_arm(struct lg_sworker *w)
{
	struct io_uring_sqe *sqe = lg_sqe(&w->ring, w, LG_OP_ACCEPT);

	io_uring_prep_multishot_accept(sqe, w->lfd, NULL, NULL, SOCK_CLOEXEC);
}

static void on_server_cqe(struct lg_sworker *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum lg_op op = (enum lg_op)(ud & LG_OP_MASK);
	struct lg_sconn *c = (struct lg_sconn *)(uintptr_t)(ud & ~LG_OP_MASK);
	int res = cqe->res;
	size_t n;

	switch (op) {
	case LG_OP_ACCEPT:
		if (!(cqe->flags & IORING_CQE_F_MORE))
			srv_accept_arm(w);
		if (res < 0)
			return;
		c = w->free_list;
		if (c) {
			w->free_list = c->next_free;
		} else if (w->nconns < LG_SRV_CONNS) {
			c = malloc(sizeof(*c));
			if (c)
				w->nconns++;
		}
		if (!c) {
			close(res);
			return;
		}
		memset(c, 0, offsetof(struct lg_sconn, buf));
		c->w = w;
		c->fd = res;
		sock_tune(c->fd);
		srv_advance(w, c);
		return;
	case LG_OP_RECV:
		if (res <= 0) {
			srv_close(w, c);
			return;
		}
		if (c->in_scratch)
			c->skip -= (uint64_t)res;
		else
			c->blen += (size_t)res;
		srv_advance(w, c);
		return;
	case LG_OP_SEND:
		if (res <= 0) {
			srv_close(w, c);
			return;
		}
		n = (size_t)res;
		if (c->hdr_off < c->hdr_len) {
			size_t h = c->hdr_len - c->hdr_off < n ? c->hdr_len - c->hdr_off : n;

			c->hdr_off += h;
			n -= h;
		}
		c->resp_left -= n;
		if (c->hdr_off == c->hdr_len)
			c->hdr_len = c->hdr_off = 0;
		srv_advance(w, c);
		return;
	default:
		return;
	}
}

static int listen_open(const struct lg_opts *o)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE },
			*ai;
	int fd, one = 1, ret;

	ret = getaddrinfo(o->bind, o->port, &hints, &ai);
	if (ret) {
		fprintf(stderr, "loadgen: %s:%s: %s\n", o->bind, o->port, gai_strerror(ret));
		exit(1);
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket", errno);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* One listener per thread; the kernel spreads connections. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("bind", errno);
	if (listen(fd, 4096) < 0)
		die("listen", errno);
	freeaddrinfo(ai);
	return fd;
}

static void *server_run(void *arg)
{
	struct lg_sworker *w = arg;
	struct io_uring_cqe *cqe;
	unsigned head, n;
	int ret;

	ret = ring_setup(&w->ring, 4096);
	if (ret < 0)
		die("io_uring_queue_init", -ret);
	srv_accept_arm(w);
	for (;;) {
		ret = io_uring_submit_and_wait(&w->ring, 1);
		if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
			die("io_uring_submit_and_wait", -ret);
		n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			on_server_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
	}
	return NULL;
}

static int server_main(const struct lg_opts *o)
{
	struct lg_sworker *ws;
	unsigned i;
	int ret;

	ws = calloc(o->threads, sizeof(*ws));
	if (!ws)
		die("calloc", ENOMEM);
	for (i = 0; i < o->threads; i++) {
		ws[i].o = o;
		ws[i].lfd = listen_open(o);
	}
	fprintf(stderr, "loadgen server: listening on %s:%s, %u thread(s), default response "
		"%zu bytes\n", o->bind, o->port, o->threads, o->resp);
	for (i = 1; i < o->threads; i++) {
		ret = pthread_create(&ws[i].thread, NULL, server_run, &ws[i]);
		if (ret)
			die("pthread_create", ret);
	}
	server_run(&ws[0]);
	return 0;
}

/* ------------------------------------------------------------------------ */

static void usage(void)
{
	fprintf(stderr,
		"usage: loadgen rr|churn|max [options] HOST:PORT\n"
		"       loadgen server [-p PORT] [-b ADDR] [-j N] [-s RESP]\n"
		"  -c N        connections (rr, max; default 16) or concurrent\n"
		"              connections (churn; default 8)\n"
		"  -R RATE     aggregate requests (churn: connections) per second,\n"
		"              open loop (rr default 1000; churn default 0 = closed loop)\n"
		"  -d SEC      measured duration (default 10)\n"
		"  -w SEC      warm-up before it, not measured (default 1)\n"
		"  -q BYTES    request size (default 1024; at least 16)\n"
		"  -s BYTES    response size (default 1024)\n"
		"  -j N        threads, each with its own ring and share of -c and -R\n"
		"  --drain SEC wait this long after the end for answers (default 2)\n"
		"  --spin US   open loop: busy-poll the last US microseconds before each\n"
		"              scheduled send instead of sleeping (timer wake-up delay\n"
		"              otherwise adds to every latency; costs CPU; default 0)\n"
		"  --http      HTTP/1.1 GET, keep-alive (churn: Connection: close)\n"
		"  --path P    request path (default /RESP, which the server mode answers\n"
		"              with RESP bytes)\n"
		"  --host H    Host header (default: from HOST:PORT)\n"
		"JSON result on stdout, a summary line on stderr.\n");
	exit(2);
}

static double num_arg(const char *s, double lo, double hi, const char *what)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
		exit(2);
	}
	return v;
}

static void target_resolve(struct lg_opts *o, char *hostbuf, size_t hostlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV },
			*ai;
	char host[256];
	const char *colon = strrchr(o->target, ':'), *h = o->target;
	size_t hl;
	int ret;

	if (!colon || colon == o->target)
		usage();
	hl = (size_t)(colon - o->target);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl >= sizeof(host))
		usage();
	memcpy(host, h, hl);
	host[hl] = 0;
	ret = getaddrinfo(host, colon + 1, &hints, &ai);
	if (ret) {
		fprintf(stderr, "loadgen: %s: %s\n", o->target, gai_strerror(ret));
		exit(1);
	}
	memcpy(&o->addr, ai->ai_addr, ai->ai_addrlen);
	o->addrlen = ai->ai_addrlen;
	freeaddrinfo(ai);
	snprintf(hostbuf, hostlen, "%s", o->target);
}

int main(int argc, char **argv)
{
	static const struct option lopts[] = {
		{ "http", no_argument, NULL, 'H' },
		{ "path", required_argument, NULL, 'P' },
		{ "host", required_argument, NULL, 'h' },
		{ "drain", required_argument, NULL, 'D' },
		{ "spin", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	struct lg_opts o = {
		.conns = 0, .threads = 1, .req = 1024, .resp = 1024, .duration = 10,
		.warmup = 1, .drain = 2, .rate = -1, .bind = "0.0.0.0", .port = "9000",
	};
	static char pathbuf[64], hostbuf[300];
	int opt;

	if (argc < 2)
		usage();
	if (!strcmp(argv[1], "rr"))
		o.mode = LG_MODE_RR;
	else if (!strcmp(argv[1], "churn"))
		o.mode = LG_MODE_CHURN;
	else if (!strcmp(argv[1], "max"))
		o.mode = LG_MODE_MAX;
	else if (!strcmp(argv[1], "server"))
		o.mode = LG_MODE_SERVER;
	else
		usage();
	optind = 2;
	while ((opt = getopt_long(argc, argv, "c:R:d:w:q:s:j:p:b:", lopts, NULL)) != -1) {
		switch (opt) {
		case 'c': o.conns = (unsigned)num_arg(optarg, 1, 100000, "-c"); break;
		case 'R': o.rate = num_arg(optarg, 0, 1e8, "-R"); break;
		case 'd': o.duration = num_arg(optarg, 0.001, 86400, "-d"); break;
		case 'w': o.warmup = num_arg(optarg, 0, 86400, "-w"); break;
		case 'q': o.req = (size_t)num_arg(optarg, LG_WIRE_HDR, LG_SIZE_MAX, "-q"); break;
		case 's': o.resp = (size_t)num_arg(optarg, 0, LG_SIZE_MAX, "-s"); break;
		case 'j': o.threads = (unsigned)num_arg(optarg, 1, LG_MAX_THREADS, "-j"); break;
		case 'p': o.port = optarg; break;
		case 'b': o.bind = optarg; break;
		case 'H': o.http = 1; break;
		case 'P': o.path = optarg; break;
		case 'h': o.host = optarg; break;
		case 'D': o.drain = num_arg(optarg, 0, 3600, "--drain"); break;
		case 'S': o.spin_ns = (uint64_t)(num_arg(optarg, 0, 1e6, "--spin") * 1000); break;
		default: usage();
		}
	}
	signal(SIGPIPE, SIG_IGN);
	if (o.mode == LG_MODE_SERVER) {
		if (optind != argc)
			usage();
		return server_main(&o);
	}
	if (optind != argc - 1)
		usage();
	o.target = argv[optind];
	if (!o.conns)
		o.conns = o.mode == LG_MODE_CHURN ? 8 : 16;
	if (o.rate < 0)
		o.rate = o.mode == LG_MODE_RR ? 1000 : 0;
	if (o.mode == LG_MODE_RR && o.rate <= 0) {
		fprintf(stderr, "loadgen: rr needs -R > 0 (use max for a closed loop)\n");
		return 2;
	}
	target_resolve(&o, hostbuf, sizeof(hostbuf));
	if (!o.host)
		o.host = hostbuf;
	if (!o.path) {
		snprintf(pathbuf, sizeof(pathbuf), "/%zu", o.resp);
		o.path = pathbuf;
	}
	return client_main(&o);
}
