/* SPDX-License-Identifier: Apache-2.0 */
/* Stream connections over loopback on one loop: plain TCP echo of 1 MiB,
 * backpressure with a small cap, half-close, abort seen as a reset, 200
 * connections leaving none live, connect refused, idle and handshake
 * timeouts, IPv6 peer strings, and TLS echo with certificates made by the
 * openssl CLI at test time (SPIFFE URI SAN, peer check, wrong identity); a
 * TLS peer trickling bytes still ends at its handshake deadline (absolute);
 * conn_opts.pending refuses a source address past its cap and gives the
 * slot back when the connection closes. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <liburing.h>	/* IORING_CQE_F_MORE */

#include <weft/conn.h>
#include <weft/listener.h>
#include <weft/loop.h>
#include <weft/tls.h>

#include "../check.h"
#include "../../pki.h"

static struct loop *L;

/* --- harness: a listener handing sockets to conn_accept ----------------- */

static int listen_fd = -1;
static struct sockaddr_in srv_addr;
static struct loop_op accept_op;
static const struct conn_handler *srv_h;
static struct conn_opts srv_opts;
static struct tls_ctx *srv_tls;
static int srv_accepted;
static int srv_refused;		/* conn_accept said EBUSY/ENOSPC (srv_opts.pending) */

static void on_accept(struct loop_op *op, int res, unsigned flags)
{
	struct conn *c;

	(void)op;
	if (!(flags & IORING_CQE_F_MORE))
		CHECK_EQ_INT(loop_accept(L, &accept_op, listen_fd), 0);
	if (res < 0)
		return;
	srv_accepted++;
	c = conn_accept(L, res, srv_tls, srv_h, &srv_opts, NULL);
	if (!c && srv_opts.pending && (errno == EBUSY || errno == ENOSPC))
		srv_refused++;
	else
		CHECK(c != NULL);
}

static void srv_listen(void)
{
	socklen_t alen = sizeof(srv_addr);

	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&srv_addr, 0, sizeof(srv_addr));
	srv_addr.sin_family = AF_INET;
	srv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(listen_fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) == 0);
	CHECK(listen(listen_fd, 1024) == 0);
	CHECK(getsockname(listen_fd, (struct sockaddr *)&srv_addr, &alen) == 0);
	accept_op.cb = on_accept;
	CHECK_EQ_INT(loop_accept(L, &accept_op, listen_fd), 0);
}

static int (*until)(void);
static int timed_out;
static struct loop_timer poll_timer, watchdog;

static void on_poll(struct loop_timer *t)
{
	if (until())
		loop_stop(L);
	else
		loop_timer_arm(L, t, 2);
}

static void on_watchdog(struct loop_timer *t)
{
	(void)t;
	timed_out = 1;
	loop_stop(L);
}

/* Run the loop until cond() holds, failing after ms. */
static void run_until(int (*cond)(void), uint64_t ms, const char *what)
{
	until = cond;
	timed_out = 0;
	poll_timer.cb = on_poll;
	watchdog.cb = on_watchdog;
	loop_timer_arm(L, &poll_timer, 0);
	loop_timer_arm(L, &watchdog, ms);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &poll_timer);
	loop_timer_disarm(L, &watchdog);
	if (timed_out)
		fprintf(stderr, "timed out: %s\n", what);
	CHECK(!timed_out);
}

/* on_close must run exactly once per conn: mark the conn's udata. */
static char closed_mark;

static void close_once(struct conn *c)
{
	CHECK(conn_udata(c) != &closed_mark);
	conn_set_udata(c, &closed_mark);
}

/* --- echo server with backpressure --------------------------------------- */

struct side {
	int ready, closes, eofs, writables, pauses, err;
	char why[160];
	size_t rx, tx;
};

static struct side srv, cli;

static void side_reset(void)
{
	memset(&srv, 0, sizeof(srv));
	memset(&cli, 0, sizeof(cli));
}

static void side_closed(struct side *s, struct conn *c, int err, const char *why)
{
	close_once(c);
	s->closes++;
	s->err = err;
	snprintf(s->why, sizeof(s->why), "%s", why ? why : "");
}

static void echo_on_ready(struct conn *c)
{
	(void)c;
	srv.ready++;
}

/* Echo what fits below the cap; with no room, pause until on_writable. */
static size_t echo_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	size_t space = conn_out_space(c);

	if (space == 0) {
		srv.pauses++;
		conn_pause(c, 1);
		return 0;
	}
	if (n > space)
		n = space;
	CHECK_EQ_INT(conn_write(c, p, n), 0);
	srv.rx += n;
	return n;
}

static void echo_on_writable(struct conn *c)
{
	srv.writables++;
	conn_pause(c, 0);
}

static void echo_on_eof(struct conn *c)
{
	srv.eofs++;
	conn_close(c, 0, NULL);
}

static void echo_on_close(struct conn *c, int err, const char *why)
{
	side_closed(&srv, c, err, why);
}

static const struct conn_handler echo_h = {
	.on_ready = echo_on_ready,
	.on_data = echo_on_data,
	.on_writable = echo_on_writable,
	.on_eof = echo_on_eof,
	.on_close = echo_on_close,
};

/* --- blasting client: writes total bytes, checks the echo ----------------- */

static uint8_t *pattern;
static size_t total;
static size_t cli_cap;
static int cli_enobufs_checked;

static void blast_pump(struct conn *c)
{
	while (cli.tx < total) {
		size_t space = conn_out_space(c), k = total - cli.tx;

		if (space == 0)
			return;
		if (k > space)
			k = space;
		if (k > 64 * 1024)
			k = 64 * 1024;
		CHECK_EQ_INT(conn_write(c, pattern + cli.tx, k), 0);
		cli.tx += k;
	}
}

static void blast_on_ready(struct conn *c)
{
	cli.ready++;
	if (cli_cap) {
		/* Past 4x the soft cap, writes are refused. */
		CHECK_EQ_INT(conn_write(c, pattern, 4 * cli_cap + 1), -ENOBUFS);
		cli_enobufs_checked = 1;
	}
	blast_pump(c);
}

static size_t blast_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	CHECK(cli.rx + n <= total);
	if (cli.rx + n > total)
		n = total - cli.rx;
	if (memcmp(p, pattern + cli.rx, n) != 0) {
		CHECK(!"echo corrupted");
		conn_abort(c, -EIO, "corrupted");
		return 0;
	}
	cli.rx += n;
	if (cli.rx == total)
		conn_close(c, 0, NULL);
	return n;
}

static void blast_on_writable(struct conn *c)
{
	cli.writables++;
	blast_pump(c);
}

static void blast_on_eof(struct conn *c)
{
	cli.eofs++;
	conn_close(c, 0, NULL);
}

static void blast_on_close(struct conn *c, int err, const char *why)
{
	side_closed(&cli, c, err, why);
}

static const struct conn_handler blast_h = {
	.on_ready = blast_on_ready,
	.on_data = blast_on_data,
	.on_writable = blast_on_writable,
	.on_eof = blast_on_eof,
	.on_close = blast_on_close,
};

static int echo_done(void)
{
	return srv.closes == 1 && cli.closes == 1 && conn_live_count() == 0;
}

/* One echo run: plain or TLS, with the given caps. */
static void echo_run(const char *name, struct tls_ctx *stls, struct tls_ctx *ctls,
		     const char *expect, size_t cap, size_t bytes)
{
	struct conn_opts co = { .out_cap = cap };
	struct conn *c;

	fprintf(stderr, "-- %s\n", name);
	side_reset();
	srv_h = &echo_h;
	srv_tls = stls;
	memset(&srv_opts, 0, sizeof(srv_opts));
	/* The echo side gets the smaller cap, so it must pause its input. */
	srv_opts.out_cap = cap / 4;
	total = bytes;
	cli_cap = cap;
	cli_enobufs_checked = 0;
	c = conn_connect(L, (struct sockaddr *)&srv_addr, sizeof(srv_addr), 0, ctls,
			 ctls ? "weft-test" : NULL, expect, &blast_h, &co, NULL);
	CHECK(c != NULL);
	if (!c)
		return;
	/* Written before the connect (and handshake) finished: queued, and
	 * for TLS kept as plaintext until the peer is verified. */
	CHECK_EQ_INT(conn_write(c, pattern, 1000), 0);
	cli.tx = 1000;
	CHECK_EQ_INT(conn_live_count(), 1);
	CHECK(conn_tls(c) == (ctls ? conn_tls(c) : NULL));
	if (ctls)
		CHECK(conn_tls(c) != NULL);
	CHECK(conn_loop(c) == L);
	{
		char want[64];

		snprintf(want, sizeof(want), "127.0.0.1:%u", ntohs(srv_addr.sin_port));
		CHECK_EQ_STR(conn_peer_str(c), want);
		CHECK_EQ_INT(conn_peer_addr(c)->ss_family, AF_INET);
	}
	run_until(echo_done, 15000, name);
	CHECK_EQ_INT(cli.ready, 1);
	CHECK_EQ_INT(srv.ready, 1);
	CHECK_EQ_INT(cli.tx, bytes);
	CHECK_EQ_INT(cli.rx, bytes);
	CHECK_EQ_INT(srv.rx, bytes);
	CHECK_EQ_INT(cli.err, 0);
	CHECK_EQ_INT(srv.err, 0);
	CHECK_EQ_INT(srv.eofs, 1);
	CHECK_EQ_INT(cli.eofs, 0);
	if (cap)
		CHECK(cli_enobufs_checked);
	if (cap && cap < 64 * 1024) {
		/* The cap is far below the data: both sides had to wait. */
		CHECK(cli.writables > 0);
		CHECK(srv.pauses > 0);
		CHECK(srv.writables > 0);
	}
	CHECK_EQ_INT(conn_live_count(), 0);
}

/* --- raw blocking peer in a thread ---------------------------------------- */

struct raw {
	pthread_t th;
	const char *send;	/* bytes to write first (may be NULL) */
	int shut_wr;		/* then shutdown(SHUT_WR) */
	char got[256];		/* what was read until EOF or error */
	size_t got_len;
	int read_ret;		/* last read(): 0 EOF, -1 error */
	int read_errno;
	int done;
};

static void *raw_main(void *arg)
{
	struct raw *r = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 8 };
	ssize_t n;

	/* A broken server must fail the test, not hang it in join. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) < 0)
		goto out;
	if (r->send && write(fd, r->send, strlen(r->send)) != (ssize_t)strlen(r->send))
		goto out;
	if (r->shut_wr)
		shutdown(fd, SHUT_WR);
	for (;;) {
		n = read(fd, r->got + r->got_len, sizeof(r->got) - 1 - r->got_len);
		if (n <= 0) {
			r->read_ret = (int)n;
			r->read_errno = n < 0 ? errno : 0;
			break;
		}
		r->got_len += (size_t)n;
	}
out:
	close(fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void raw_start(struct raw *r)
{
	CHECK(pthread_create(&r->th, NULL, raw_main, r) == 0);
}

static struct raw *cur_raw;

static int raw_done(void)
{
	return __atomic_load_n(&cur_raw->done, __ATOMIC_ACQUIRE) && srv.closes == 1 &&
	       conn_live_count() == 0;
}

/* --- half-close ------------------------------------------------------------- */

static char hc_buf[64];
static size_t hc_len;

static size_t hc_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	(void)c;
	if (n > sizeof(hc_buf) - hc_len)
		n = sizeof(hc_buf) - hc_len;
	memcpy(hc_buf + hc_len, p, n);
	hc_len += n;
	return n;
}

/* The peer stopped sending; we may still answer, then close. */
static void hc_on_eof(struct conn *c)
{
	srv.eofs++;
	CHECK_EQ_INT(conn_write(c, "bye:", 4), 0);
	CHECK_EQ_INT(conn_write(c, hc_buf, hc_len), 0);
	conn_close(c, 0, NULL);
	CHECK_EQ_INT(conn_write(c, "late", 4), -EPIPE);
}

static const struct conn_handler hc_h = {
	.on_ready = echo_on_ready,
	.on_data = hc_on_data,
	.on_eof = hc_on_eof,
	.on_close = echo_on_close,
};

static void test_half_close(void)
{
	struct raw r = { .send = "hello", .shut_wr = 1 };

	fprintf(stderr, "-- half-close\n");
	side_reset();
	hc_len = 0;
	srv_h = &hc_h;
	srv_tls = NULL;
	memset(&srv_opts, 0, sizeof(srv_opts));
	cur_raw = &r;
	raw_start(&r);
	run_until(raw_done, 5000, "half-close");
	pthread_join(r.th, NULL);
	CHECK_EQ_INT(srv.ready, 1);
	CHECK_EQ_INT(srv.eofs, 1);
	CHECK_EQ_INT(srv.err, 0);
	r.got[r.got_len] = 0;
	CHECK_EQ_STR(r.got, "bye:hello");
	CHECK_EQ_INT(r.read_ret, 0);		/* orderly FIN, not a reset */
}

/* --- abort -------------------------------------------------------------------- */

static size_t ab_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	(void)p;
	conn_write(c, "unsent", 6);
	conn_abort(c, -ECONNRESET, "test abort");
	CHECK_EQ_INT(conn_write(c, "x", 1), -EPIPE);
	conn_close(c, 0, "ignored after abort");
	return n;
}

static const struct conn_handler ab_h = {
	.on_data = ab_on_data,
	.on_close = echo_on_close,
};

static void test_abort(void)
{
	struct raw r = { .send = "x" };

	fprintf(stderr, "-- abort\n");
	side_reset();
	srv_h = &ab_h;
	srv_tls = NULL;
	memset(&srv_opts, 0, sizeof(srv_opts));
	cur_raw = &r;
	raw_start(&r);
	run_until(raw_done, 5000, "abort");
	pthread_join(r.th, NULL);
	CHECK_EQ_INT(srv.err, -ECONNRESET);
	CHECK_EQ_STR(srv.why, "test abort");
	CHECK_EQ_INT(r.read_ret, -1);
	CHECK_EQ_INT(r.read_errno, ECONNRESET);
}

/* --- idle and handshake timeouts ------------------------------------------- */

static void timeout_run(const char *name, struct tls_ctx *stls, uint32_t idle_ms,
			uint32_t hs_ms, const char *why)
{
	struct raw r = { 0 };
	uint64_t t0 = loop_now_ms(L), dt;

	fprintf(stderr, "-- %s\n", name);
	side_reset();
	srv_h = &echo_h;
	srv_tls = stls;
	memset(&srv_opts, 0, sizeof(srv_opts));
	srv_opts.idle_timeout_ms = idle_ms;
	srv_opts.handshake_timeout_ms = hs_ms;
	cur_raw = &r;
	raw_start(&r);
	run_until(raw_done, 5000, name);
	pthread_join(r.th, NULL);
	dt = loop_now_ms(L) - t0;
	CHECK_EQ_INT(srv.err, -ETIMEDOUT);
	CHECK_EQ_STR(srv.why, why);
	CHECK(dt >= (idle_ms ? idle_ms : hs_ms));
	CHECK(dt < 3000);
	CHECK_EQ_INT(r.read_ret, 0);		/* the peer saw the close */
	CHECK_EQ_INT(srv.ready, stls ? 0 : 1);
}

/* A TLS client that sends a record header announcing 16 KiB, then one byte
 * every 20 ms: every byte is progress, none completes a record. */
static void *trickle_main(void *arg)
{
	struct raw *r = arg;
	static const uint8_t head[] = { 0x16, 0x03, 0x01, 0x40, 0x00 };
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	char b;

	if (connect(fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) < 0 ||
	    write(fd, head, sizeof(head)) != (ssize_t)sizeof(head))
		goto out;
	for (int i = 0; i < 100; i++) {		/* 2 s at most */
		usleep(20000);
		if (write(fd, "\1", 1) != 1)
			break;
		if (recv(fd, &b, 1, MSG_DONTWAIT) == 0)
			break;			/* closed by the server */
	}
out:
	close(fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void test_hs_deadline_absolute(struct tls_ctx *stls)
{
	struct raw r = { 0 };
	uint64_t t0 = loop_now_ms(L), dt;

	fprintf(stderr, "-- TLS handshake deadline, trickling peer\n");
	side_reset();
	srv_h = &echo_h;
	srv_tls = stls;
	memset(&srv_opts, 0, sizeof(srv_opts));
	srv_opts.handshake_timeout_ms = 300;
	cur_raw = &r;
	CHECK(pthread_create(&r.th, NULL, trickle_main, &r) == 0);
	run_until(raw_done, 5000, "trickling handshake");
	pthread_join(r.th, NULL);
	dt = loop_now_ms(L) - t0;
	CHECK_EQ_INT(srv.err, -ETIMEDOUT);
	CHECK_EQ_STR(srv.why, "TLS handshake timed out");
	CHECK(dt >= 300 && dt < 1000);		/* not pushed back by 15 bytes of progress */
}

/* Plain TCP counts until close: 2 per address, the third is refused, and a
 * closed one gives its slot back. */
static struct raw held[4];
static struct conn *pconns[8];
static int npconns;

static void *hold_main(void *arg)
{
	struct raw *r = arg;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = { .tv_sec = 8 };
	char b;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) == 0) {
		r->read_ret = (int)read(fd, &b, 1);	/* until the server closes */
		if (r->read_ret < 0)
			r->read_errno = errno;
	}
	close(fd);
	__atomic_store_n(&r->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void pending_on_ready(struct conn *c)
{
	srv.ready++;
	if (npconns < 8)
		pconns[npconns++] = c;
	if (srv.ready == 3)
		conn_close(c, 0, NULL);		/* the one after the slot came back */
}

static size_t pending_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	(void)c;
	(void)p;
	return n;
}

static void pending_on_close(struct conn *c, int err, const char *why)
{
	side_closed(&srv, c, err, why);
}

static const struct conn_handler pending_h = {
	.on_ready = pending_on_ready,
	.on_data = pending_on_data,
	.on_close = pending_on_close,
};

static int held_two(void)
{
	return srv_accepted == 3 && srv_refused == 1 && srv.ready == 2 &&
	       __atomic_load_n(&held[2].done, __ATOMIC_ACQUIRE);
}

static int one_more(void)
{
	return srv_accepted == 4 && srv.ready == 3 && srv.closes == 2;
}

static struct listener_pending *pend;

/* The closed conn has given its slot back (conn_close ends asynchronously). */
static int slot_back(void)
{
	return listener_pending_count(pend) == 1;
}

static int all_gone(void)
{
	return srv.closes == 3 && conn_live_count() == 0;
}

static void test_pending(void)
{
	struct listener_pending *p = pend = listener_pending_new(16, 2);

	fprintf(stderr, "-- pending cap per address\n");
	side_reset();
	srv_accepted = srv_refused = 0;
	npconns = 0;
	srv_h = &pending_h;
	srv_tls = NULL;
	memset(&srv_opts, 0, sizeof(srv_opts));
	srv_opts.pending = p;
	memset(held, 0, sizeof(held));
	for (int i = 0; i < 3; i++) {
		CHECK(pthread_create(&held[i].th, NULL, hold_main, &held[i]) == 0);
		usleep(20000);
	}
	run_until(held_two, 3000, "two held, one refused");
	CHECK_EQ_INT(srv_refused, 1);
	CHECK_EQ_INT(listener_pending_count(p), 2);
	CHECK_EQ_INT(held[2].read_ret, 0);	/* the refused one saw EOF at once */
	/* Close one: its slot comes back and the next one from the address is
	 * taken (the handler closes it, which gives the slot back again). */
	CHECK_EQ_INT(npconns, 2);
	if (npconns == 2)
		conn_close(pconns[0], 0, NULL);
	/* Only then the next connect: before it, the address is still full. */
	run_until(slot_back, 3000, "the closed one's slot is given back");
	CHECK(pthread_create(&held[3].th, NULL, hold_main, &held[3]) == 0);
	run_until(one_more, 3000, "a slot given back is taken again");
	CHECK_EQ_INT(srv_refused, 1);
	CHECK_EQ_INT(listener_pending_count(p), 1);
	if (npconns >= 2)
		conn_close(pconns[1], 0, NULL);
	run_until(all_gone, 3000, "the last held one closed");
	CHECK_EQ_INT(listener_pending_count(p), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(held[i].th, NULL);
	srv_opts.pending = NULL;
	listener_pending_free(p);
}

/* --- connect refused --------------------------------------------------------- */

static void plain_on_close(struct conn *c, int err, const char *why)
{
	side_closed(&cli, c, err, why);
}

static void plain_on_ready(struct conn *c)
{
	cli.ready++;
	conn_close(c, 0, NULL);
}

static const struct conn_handler refused_h = {
	.on_ready = plain_on_ready,
	.on_close = plain_on_close,
};

static int v6_listen_fd = -1;

/* Take the peer out of the backlog and close it, so our orderly close sees
 * its FIN instead of waiting out the 5 s bound. */
static void v6_on_ready(struct conn *c)
{
	int fd = accept(v6_listen_fd, NULL, NULL);

	CHECK(fd >= 0);
	if (fd >= 0)
		close(fd);
	plain_on_ready(c);
}

static const struct conn_handler v6_h = {
	.on_ready = v6_on_ready,
	.on_close = plain_on_close,
};

static int cli_closed(void)
{
	return cli.closes == 1 && conn_live_count() == 0;
}

static void test_refused(void)
{
	struct sockaddr_in sa;
	socklen_t alen = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	fprintf(stderr, "-- connect refused\n");
	side_reset();
	/* A port that was just free and is not listening. */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &alen) == 0);
	close(fd);
	CHECK(conn_connect(L, (struct sockaddr *)&sa, sizeof(sa), 0, NULL, NULL, NULL,
			   &refused_h, NULL, NULL) != NULL);
	run_until(cli_closed, 5000, "connect refused");
	CHECK_EQ_INT(cli.ready, 0);
	CHECK_EQ_INT(cli.err, -ECONNREFUSED);
	CHECK(strstr(cli.why, "connect to 127.0.0.1:") != NULL);
}

/* IPv6: peer string in brackets, SO_MARK accepted (we are root in tests;
 * without CAP_NET_ADMIN the connect fails up front, which is also fine). */
static void test_ipv6(void)
{
	struct sockaddr_in6 sa;
	socklen_t alen = sizeof(sa);
	int fd = socket(AF_INET6, SOCK_STREAM, 0);
	struct conn *c;
	char want[64];

	fprintf(stderr, "-- ipv6\n");
	side_reset();
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "no IPv6 loopback; skipping\n");
		if (fd >= 0)
			close(fd);
		return;
	}
	CHECK(listen(fd, 4) == 0);
	CHECK(getsockname(fd, (struct sockaddr *)&sa, &alen) == 0);
	v6_listen_fd = fd;
	c = conn_connect(L, (struct sockaddr *)&sa, sizeof(sa), geteuid() == 0 ? 1337 : 0,
			 NULL, NULL, NULL, &v6_h, NULL, NULL);
	CHECK(c != NULL);
	if (c) {
		snprintf(want, sizeof(want), "[::1]:%u", ntohs(sa.sin6_port));
		CHECK_EQ_STR(conn_peer_str(c), want);
	}
	run_until(cli_closed, 5000, "ipv6");
	CHECK_EQ_INT(cli.ready, 1);
	CHECK_EQ_INT(cli.err, 0);
	close(fd);
}

/* --- many connections ---------------------------------------------------------- */

#define NMANY 200
static int many_ready, many_closed, many_errs;

static void many_on_ready(struct conn *c)
{
	many_ready++;
	CHECK_EQ_INT(conn_write(c, "hi", 2), 0);
}

static size_t many_on_data(struct conn *c, const uint8_t *p, size_t n)
{
	/* "hi" may arrive split: keep one byte until both are here. */
	if (n < 2)
		return 0;
	CHECK(memcmp(p, "hi", 2) == 0);
	conn_close(c, 0, NULL);
	return n;
}

static void many_on_close(struct conn *c, int err, const char *why)
{
	close_once(c);
	many_closed++;
	if (err) {
		many_errs++;
		fprintf(stderr, "close: %d %s\n", err, why);
	}
}

static const struct conn_handler many_h = {
	.on_ready = many_on_ready,
	.on_data = many_on_data,
	.on_close = many_on_close,
};

static void many_srv_on_close(struct conn *c, int err, const char *why)
{
	close_once(c);
	srv.closes++;
	if (err) {
		many_errs++;
		fprintf(stderr, "server close: %d %s\n", err, why);
	}
}

static const struct conn_handler many_srv_h = {
	.on_ready = echo_on_ready,
	.on_data = echo_on_data,
	.on_writable = echo_on_writable,
	/* on_eof NULL: the conn closes itself */
	.on_close = many_srv_on_close,
};

static int many_done(void)
{
	return many_closed == NMANY && srv.closes == NMANY && conn_live_count() == 0;
}

static void test_many(void)
{
	int made = 0;

	fprintf(stderr, "-- %d connections\n", NMANY);
	side_reset();
	srv_h = &many_srv_h;
	srv_tls = NULL;
	memset(&srv_opts, 0, sizeof(srv_opts));
	srv_accepted = 0;
	many_ready = many_closed = many_errs = 0;
	for (int i = 0; i < NMANY; i++)
		made += conn_connect(L, (struct sockaddr *)&srv_addr, sizeof(srv_addr), 0, NULL,
				     NULL, NULL, &many_h, NULL, NULL) != NULL;
	CHECK_EQ_INT(made, NMANY);
	CHECK_EQ_INT(conn_live_count(), NMANY);
	run_until(many_done, 15000, "many");
	CHECK_EQ_INT(many_ready, NMANY);
	CHECK_EQ_INT(srv.ready, NMANY);
	CHECK_EQ_INT(srv_accepted, NMANY);
	CHECK_EQ_INT(many_errs, 0);
	CHECK_EQ_INT(conn_live_count(), 0);
}

/* --- TLS ------------------------------------------------------------------------ */

static char tmpdir[64];

/* A P-256 CA and a leaf SVID for spiffe://cluster.local/ns/default/sa/x. */
static int certs_make(void)
{
	if (pki_dir_make(tmpdir, sizeof(tmpdir), "test-conn") != 0)
		return -1;
	if (pki_ca_make(tmpdir, "ca", NULL, "/O=weft-test-ca", 1) != 0)
		return -1;
	return pki_leaf_make(tmpdir, "leaf", "ca",
			     "critical,URI:spiffe://cluster.local/ns/default/sa/x", NULL, 1);
}

/* conn_start_fd: TLS on a socket that came connected (one end of a socket
 * pair, as weftd's inner tunnels through a gateway), echoed by a conn
 * accepted on the other end: handshake from the task, data both ways. */
static void test_start_fd(struct tls_ctx *stls, struct tls_ctx *ctls)
{
	struct conn *c, *s;
	int sv[2];

	fprintf(stderr, "-- TLS over a socket pair (conn_start_fd)\n");
	side_reset();
	total = 256 * 1024;
	cli_cap = 0;
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	s = conn_accept(L, sv[1], stls, &echo_h, NULL, NULL);
	c = conn_start_fd(L, sv[0], "pair", ctls, NULL, "spiffe://cluster.local/ns/default/sa/x",
			  &blast_h, NULL, NULL);
	CHECK(s != NULL && c != NULL);
	if (!s || !c)
		return;
	CHECK_EQ_STR(conn_peer_str(c), "pair");
	CHECK_EQ_INT(cli.ready, 0);		/* not from inside the call */
	run_until(echo_done, 15000, "TLS over a socket pair");
	CHECK_EQ_INT(cli.ready, 1);
	CHECK_EQ_INT(srv.ready, 1);
	CHECK_EQ_INT(cli.rx, total);
	CHECK_EQ_INT(cli.err, 0);
	/* And a wrong identity fails there as on TCP. */
	side_reset();
	total = 16;
	CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	s = conn_accept(L, sv[1], stls, &echo_h, NULL, NULL);
	c = conn_start_fd(L, sv[0], "pair", ctls, NULL, "spiffe://cluster.local/ns/default/sa/y",
			  &blast_h, NULL, NULL);
	CHECK(s != NULL && c != NULL);
	run_until(echo_done, 5000, "TLS over a socket pair, wrong identity");
	CHECK_EQ_INT(cli.ready, 0);
	CHECK_EQ_INT(cli.err, -EPROTO);
}

static void test_tls(void)
{
	static const char *const tds[] = { "cluster.local", NULL };
	struct tls_ctx_opts so = { 0 }, co = { 0 };
	struct tls_ctx *stls = NULL, *ctls = NULL;
	size_t ca_len = 0, leaf_len = 0, key_len = 0;
	char *ca, *leaf, *key, err[TLS_ERR_MAX];
	struct conn *c;

	fprintf(stderr, "-- TLS\n");
	if (certs_make() < 0) {
		fprintf(stderr, "openssl could not make test certificates; TLS tests skipped\n");
		pki_dir_remove(tmpdir);
		return;
	}
	ca = pki_file_read(tmpdir, "ca.pem", &ca_len);
	leaf = pki_file_read(tmpdir, "leaf.pem", &leaf_len);
	key = pki_file_read(tmpdir, "leaf.key", &key_len);
	CHECK(ca && leaf && key);
	if (!ca || !leaf || !key)
		goto out;

	so.role = TLS_SERVER;
	so.peer_auth = TLS_PEER_NONE;
	so.chain_pem = leaf;
	so.chain_len = leaf_len;
	so.key_pem = key;
	so.key_len = key_len;
	stls = tls_ctx_new(&so, err, sizeof(err));
	if (!stls)
		fprintf(stderr, "server ctx: %s\n", err);
	co.role = TLS_CLIENT;
	co.peer_auth = TLS_PEER_REQUIRE;
	co.bundle_pem = ca;
	co.bundle_len = ca_len;
	co.trust_domains = tds;
	ctls = tls_ctx_new(&co, err, sizeof(err));
	if (!ctls)
		fprintf(stderr, "client ctx: %s\n", err);
	CHECK(stls && ctls);
	if (!stls || !ctls)
		goto out;

	echo_run("TLS echo 1 MiB", stls, ctls, "spiffe://cluster.local/ns/default/sa/x",
		 0, 1 << 20);
	echo_run("TLS echo, backpressure", stls, ctls, NULL, 4096, 256 * 1024);

	/* The server is not who the client expects: the handshake fails on
	 * the client with the TLS layer's reason; no data is delivered. */
	fprintf(stderr, "-- TLS wrong identity\n");
	side_reset();
	srv_h = &echo_h;
	srv_tls = stls;
	memset(&srv_opts, 0, sizeof(srv_opts));
	total = 16;
	cli_cap = 0;
	c = conn_connect(L, (struct sockaddr *)&srv_addr, sizeof(srv_addr), 0, ctls, NULL,
			 "spiffe://cluster.local/ns/default/sa/y", &blast_h, NULL, NULL);
	CHECK(c != NULL);
	run_until(echo_done, 5000, "TLS wrong identity");
	CHECK_EQ_INT(cli.ready, 0);
	CHECK_EQ_INT(srv.ready, 0);
	CHECK_EQ_INT(cli.err, -EPROTO);
	CHECK(strstr(cli.why, "expected") != NULL);
	CHECK(srv.err != 0);
	fprintf(stderr, "client: %s / server: %s\n", cli.why, srv.why);

	timeout_run("TLS handshake timeout", stls, 0, 200, "TLS handshake timed out");
	test_hs_deadline_absolute(stls);
	test_start_fd(stls, ctls);
out:
	tls_ctx_free(stls);
	tls_ctx_free(ctls);
	free(ca);
	free(leaf);
	free(key);
	pki_dir_remove(tmpdir);
}

/* Everything once with conns reading into their own buffers, once with the
 * loop's receive pool: a small pool, so that many conns at once also run it
 * dry and fall back to their own buffers (-ENOBUFS). */
static void run_all(unsigned pool)
{
	L = loop_new(256);
	CHECK(L != NULL);
	if (!L)
		return;
	if (pool) {
		CHECK_EQ_INT(loop_pool_init(L, pool, 16384), 0);
		CHECK_EQ_INT((int)loop_pool_size(L), 16384);
	}
	fprintf(stderr, "--- %s\n", pool ? "with the receive pool" : "own buffers");
	srv_listen();

	echo_run("plain echo 1 MiB", NULL, NULL, NULL, 0, 1 << 20);
	echo_run("plain echo, backpressure", NULL, NULL, NULL, 4096, 512 * 1024);
	test_half_close();
	test_abort();
	test_refused();
	test_ipv6();
	test_many();
	test_pending();
	if (pool) {
		/* Input came: no trim; then a quiet period: the pages go, once;
		 * and the pool still carries data afterwards. */
		CHECK_EQ_INT(loop_pool_trim(L), 0);
		CHECK_EQ_INT(loop_pool_trim(L), 1);
		CHECK_EQ_INT(loop_pool_trim(L), 0);
		echo_run("plain echo after the pool was trimmed", NULL, NULL, NULL, 0, 256 * 1024);
		CHECK_EQ_INT(loop_pool_trim(L), 0);
	}
	timeout_run("plain idle timeout", NULL, 150, 0, "idle timeout");
	test_tls();

	close(listen_fd);
	loop_free(L);
	L = NULL;
}

int main(void)
{
	uint32_t x = 2463534242u;

	signal(SIGPIPE, SIG_IGN);
	pattern = malloc(1 << 20);
	for (size_t i = 0; i < (1u << 20); i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		pattern[i] = (uint8_t)x;
	}
	run_all(0);
	run_all(4);
	free(pattern);
	return check_done("test_conn");
}
