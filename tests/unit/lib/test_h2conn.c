/* SPDX-License-Identifier: Apache-2.0 */
/* h2conn: an HBONE client and server (h2tun sessions) over real loopback
 * TCP on one loop, eight CONNECT streams moving data both ways, and then
 * one side's TCP is reset at a random moment: 1,000 times. Every stream
 * object holds a reference on its side and ends from a timer of its own
 * 0-2 ms after its stream closed, reading its side's object then
 * (what a relay does after the tunnel died: the use-after-free of issue 8).
 * Checked: each side is released exactly once, only after its last stream
 * object let go, and nothing is left; run under ASan by `make test`, any
 * access to freed memory is a report. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/conn.h>
#include <weft/h2conn.h>
#include <weft/h2tun.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "../check.h"

#define ROUNDS 1000
#define STREAMS 8
#define CHUNK 4096

static struct loop *L;
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

/* One side: an h2conn and its h2tun. */
struct side {
	struct h2conn h2c;
	struct h2tun *t;
	int client;
	unsigned holders;		/* stream objects holding a reference */
	uint64_t magic;			/* read by stream objects after the end */
};

/* One stream's object, like an hstream or a relay. */
struct tstream {
	struct side *s;
	int32_t id;
	int open;			/* 200 seen / sent, writing */
	struct loop_timer done;		/* ends us 0-2 ms after the stream */
};

static struct uint_counts {
	unsigned released, released_client, released_server;
	unsigned streams_made, streams_done;
	unsigned live_sides;
	uint64_t bytes;
	unsigned bad;			/* a side released while held, twice, ... */
} n;

#define SIDE_MAGIC 0x51de51de51de51deull

static const uint8_t payload[CHUNK];

static void ts_done_timer(struct loop_timer *tm)
{
	struct tstream *ts = (struct tstream *)((char *)tm - offsetof(struct tstream, done));
	struct side *s = ts->s;

	/* The side's object must still be there: we hold it. */
	if (s->magic != SIDE_MAGIC)
		n.bad++;
	s->holders--;
	n.streams_done++;
	free(ts);
	h2conn_put(&s->h2c);
}

static struct tstream *ts_new(struct side *s, int32_t id)
{
	struct tstream *ts = calloc(1, sizeof(*ts));

	if (!ts)
		abort();
	ts->s = s;
	ts->id = id;
	ts->done.cb = ts_done_timer;
	s->holders++;
	n.streams_made++;
	h2conn_hold(&s->h2c);
	h2tun_stream_set_udata(s->t, id, ts);
	return ts;
}

static void ts_write(struct side *s, struct tstream *ts)
{
	while (ts->open) {
		ssize_t w = h2tun_write(s->t, ts->id, payload, 1 + rnd(CHUNK));

		if (w <= 0)
			break;
		n.bytes += (uint64_t)w;
		if (rnd(4) == 0)
			break;		/* on_writable or the next data brings us back */
	}
	h2conn_kick(&s->h2c);
}

static void cb_connect(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req)
{
	struct side *s = h2tun_udata(t);
	struct tstream *ts = ts_new(s, id);

	(void)req;
	h2tun_respond(t, id, 200);
	ts->open = 1;
	ts_write(s, ts);
}

static void cb_response(struct h2tun *t, int32_t id, int status)
{
	struct side *s = h2tun_udata(t);
	struct tstream *ts = h2tun_stream_udata(t, id);

	if (ts && status == 200) {
		ts->open = 1;
		ts_write(s, ts);
	}
}

static size_t cb_data(struct h2tun *t, int32_t id, const uint8_t *p, size_t len)
{
	struct side *s = h2tun_udata(t);
	struct tstream *ts = h2tun_stream_udata(t, id);

	(void)p;
	h2tun_consume(t, id, len);
	if (ts)
		ts_write(s, ts);
	return len;
}

static void cb_writable(struct h2tun *t, int32_t id)
{
	struct tstream *ts = h2tun_stream_udata(t, id);

	if (ts)
		ts_write(h2tun_udata(t), ts);
}

static void cb_close(struct h2tun *t, int32_t id, enum h2tun_end how, uint32_t code)
{
	struct tstream *ts = h2tun_stream_udata(t, id);

	(void)how;
	(void)code;
	if (!ts)
		return;
	ts->open = 0;
	h2tun_stream_set_udata(t, id, NULL);
	/* Later, like a relay that waits for its app socket to close. */
	loop_timer_arm(L, &ts->done, rnd(3));
}

static const struct h2tun_callbacks cbs = {
	.on_connect = cb_connect,
	.on_response = cb_response,
	.on_data = cb_data,
	.on_writable = cb_writable,
	.on_close = cb_close,
};

/* --- the sides' hooks ---------------------------------------------------------- */

static struct side *server_side, *client_side;
static int round_over;
static void on_reset(struct loop_timer *t);
static struct loop_timer reset = { .cb = on_reset };

static void side_on_ready(struct h2conn *h)
{
	struct side *s = h2conn_udata(h);
	struct h2tun_connect_req req = { .authority = "10.0.0.1:80" };

	if (!s->client) {
		s->t = h2tun_new(H2TUN_SERVER, &cbs, h2conn_send, h2conn_space, h, s);
		if (!s->t)
			abort();
		h2conn_set_session(h, &h2tun_engine, s->t);
		return;
	}
	for (int i = 0; i < STREAMS; i++) {
		int32_t id = h2tun_connect(s->t, &req, NULL);

		if (id > 0)
			ts_new(s, id);
	}
	/* The reset 0-5 ms from now: before the streams open, in the middle
	 * of the data, or once the windows are full. */
	loop_timer_arm(L, &reset, rnd(6));
}

static void side_on_close(struct h2conn *h, int err, const char *why)
{
	(void)h;
	(void)err;
	(void)why;
}

static void side_on_release(struct h2conn *h)
{
	struct side *s = h2conn_udata(h);

	if (s->holders || s->magic != SIDE_MAGIC)
		n.bad++;
	n.released++;
	if (s->client)
		n.released_client++;
	else
		n.released_server++;
	n.live_sides--;
	s->magic = 0;
	free(s);
}

static const struct h2conn_hooks hooks = {
	.on_ready = side_on_ready,
	.on_close = side_on_close,
	.on_release = side_on_release,
};

static struct side *side_new(int client)
{
	struct side *s = calloc(1, sizeof(*s));

	if (!s)
		abort();
	s->client = client;
	s->magic = SIDE_MAGIC;
	h2conn_init(&s->h2c, L, &hooks, s);
	n.live_sides++;
	return s;
}

/* --- the rounds ------------------------------------------------------------------ */


static void on_accept(struct listener *ls, int fd)
{
	struct conn_opts o = { .out_cap = 256u << 10 };

	(void)ls;
	server_side = side_new(0);
	if (h2conn_accept(&server_side->h2c, fd, NULL, &o)) {
		n.live_sides--;
		free(server_side);
		server_side = NULL;
	}
}

/* The reset: one side's TCP goes at once (RST), the other sees it die. */
static void on_reset(struct loop_timer *t)
{
	struct side *s = rnd(2) ? client_side : server_side;

	(void)t;
	if (!s)
		s = client_side;
	h2conn_close(&s->h2c, -ECONNRESET, "test reset");
}

static void on_watchdog(struct loop_timer *t)
{
	(void)t;
	round_over = -1;
	loop_stop(L);
}

static void on_poll(struct loop_timer *t)
{
	if (n.live_sides == 0 && server_side) {
		round_over = 1;
		loop_stop(L);
		return;
	}
	loop_timer_arm(L, t, 1);
}

int main(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct listener ls;
	struct loop_timer wd = { .cb = on_watchdog }, poll = { .cb = on_poll };
	unsigned stuck = 0;
	int lfd;

	log_set_component("test");
	log_level_set("error");
	L = loop_new(256);
	CHECK(L != NULL);
	if (!L)
		return 77;
	lfd = listener_socket((struct sockaddr *)&sa, sizeof(sa), 64);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return 1;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	listener_start(&ls, L, lfd, "test h2conn", on_accept, NULL, NULL);

	for (int r = 0; r < ROUNDS; r++) {
		struct conn_opts o = { .out_cap = 256u << 10 };

		server_side = NULL;
		round_over = 0;
		client_side = side_new(1);
		client_side->t = h2tun_new(H2TUN_CLIENT, &cbs, h2conn_send, h2conn_space,
					   &client_side->h2c, client_side);
		h2conn_set_session(&client_side->h2c, &h2tun_engine, client_side->t);
		if (h2conn_connect(&client_side->h2c, (struct sockaddr *)&sa, sizeof(sa), 0, NULL,
				   NULL, NULL, &o)) {
			CHECK(0);
			break;
		}
		loop_timer_arm(L, &poll, 1);
		loop_timer_arm(L, &wd, 5000);
		CHECK_EQ_INT(loop_run(L), 0);
		loop_timer_disarm(L, &reset);
		loop_timer_disarm(L, &poll);
		loop_timer_disarm(L, &wd);
		if (round_over != 1) {
			stuck++;
			fprintf(stderr, "round %d: sides not released within 5 s (%u live)\n", r,
				n.live_sides);
			break;
		}
	}
	CHECK_EQ_INT(stuck, 0);
	CHECK_EQ_INT(n.bad, 0);
	CHECK_EQ_INT(n.released_client, ROUNDS);
	CHECK_EQ_INT(n.released_server, ROUNDS);
	CHECK_EQ_INT(n.streams_done, n.streams_made);
	CHECK(n.streams_made >= ROUNDS);	/* most rounds had streams */
	CHECK(n.bytes > (uint64_t)ROUNDS * CHUNK);
	fprintf(stderr, "%d rounds: %u stream objects, %llu bytes written, every side released "
		"once after its streams\n", ROUNDS, n.streams_made, (unsigned long long)n.bytes);
	listener_close(&ls);
	loop_timer_arm(L, &wd, 200);
	loop_run(L);
	loop_free(L);
	return check_done("h2conn");
}
