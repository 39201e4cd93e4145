/* SPDX-License-Identifier: Apache-2.0 */
/* Listeners: with RLIMIT_NOFILE lowered so that only a few accepts fit, 20
 * queued clients make accept fail with EMFILE: accepting pauses (a bounded
 * number of accept completions and little CPU over a second, not a spin) and
 * resumes by itself once fds are free again, until every client is in. Close
 * waits for the accept's completion, then on_closed runs once. The fd
 * reserve: 100 clients against a limit 64 fds above what is open get fds
 * only below the ceiling (limit less 16), never an EMFILE. And the
 * pending-per-address table: caps per address and in all, against a model
 * under random churn. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#include "../check.h"

#define CLIENTS 20
#define FIT 3			/* accepted sockets that fit under the lowered limit */

static struct loop *L;
static loop_cb real_accept_cb;
static unsigned completions;
static int accepted[128];
static unsigned emfiles;		/* accept completions that failed with EMFILE */
static unsigned naccepted;
static int closed_calls;

static void on_watchdog(struct loop_timer *t)
{
	(void)t;
	loop_stop(L);
}

static void run_for(uint64_t ms)
{
	struct loop_timer wd = { .cb = on_watchdog };

	loop_timer_arm(L, &wd, ms);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &wd);
}

/* Counts every completion of the listener's accept, then hands it on. */
static void counting_accept(struct loop_op *op, int res, unsigned flags)
{
	completions++;
	emfiles += res == -EMFILE;
	real_accept_cb(op, res, flags);
}

static void on_accept(struct listener *ls, int fd)
{
	(void)ls;
	if (naccepted < sizeof(accepted) / sizeof(accepted[0]))
		accepted[naccepted++] = fd;
	else
		close(fd);
}

static void on_closed(struct listener *ls)
{
	(void)ls;
	closed_calls++;
	loop_stop(L);
}

static double cpu_now(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
	       ru.ru_stime.tv_usec / 1e6;
}

/* The lowest free fd number (what the next socket would get). */
static int next_fd(void)
{
	int fd = dup(0);

	if (fd >= 0)
		close(fd);
	return fd;
}

static void test_emfile(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct listener ls;
	struct rlimit old, low;
	int clients[CLIENTS], fd, lfd;
	double cpu0, cpu;
	unsigned c0, p0;

	lfd = listener_socket((struct sockaddr *)&sa, sizeof(sa), 64);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	/* Client sockets first: they need fds too, before the limit drops. */
	for (int i = 0; i < CLIENTS; i++) {
		clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		CHECK(clients[i] >= 0);
	}
	/* The kernel reads the limit when the accept is queued, so lower it
	 * before listener_start. */
	CHECK_EQ_INT(getrlimit(RLIMIT_NOFILE, &old), 0);
	low = old;
	low.rlim_cur = (rlim_t)next_fd() + FIT;
	CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);

	listener_start(&ls, L, lfd, "test 127.0.0.1", on_accept, on_closed, NULL);
	real_accept_cb = ls.accept_op.cb;
	ls.accept_op.cb = counting_accept;
	for (int i = 0; i < CLIENTS; i++)
		CHECK_EQ_INT(connect(clients[i], (struct sockaddr *)&sa, sizeof(sa)), 0);

	/* A second of EMFILE: FIT clients in, then pauses of 50, 100, 200,
	 * 400 ms... — a handful of completions, no spin. */
	cpu0 = cpu_now();
	run_for(1000);
	cpu = cpu_now() - cpu0;
	CHECK_EQ_INT(naccepted, FIT);
	CHECK(listener_paused(&ls));
	CHECK(ls.paused >= 3 && ls.paused <= 6);
	CHECK(completions <= FIT + 8);
	CHECK(cpu < 0.2);
	fprintf(stderr, "EMFILE for 1 s: %u completions, %lu pauses, %.3f CPU-s\n", completions,
		ls.paused, cpu);

	/* fds free up: accepting resumes at the next retry (at most the
	 * backoff cap later), FIT more come in. */
	for (unsigned i = 0; i < naccepted; i++)
		close(accepted[i]);
	naccepted = 0;
	c0 = completions;
	run_for(LISTENER_BACKOFF_MAX_MS + 200);
	CHECK_EQ_INT(naccepted, FIT);
	CHECK(completions - c0 <= FIT + 8);	/* backoff restarts at 50 ms after a success */

	/* The limit back: everyone left is accepted at the next retry, and the
	 * backoff starts again from its minimum after a success. */
	CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
	for (unsigned i = 0; i < naccepted; i++)
		close(accepted[i]);
	naccepted = 0;
	p0 = (unsigned)ls.paused;
	run_for(LISTENER_BACKOFF_MAX_MS + 200);
	CHECK_EQ_INT(naccepted, CLIENTS - 2 * FIT);
	CHECK(!listener_paused(&ls));
	CHECK_EQ_INT(ls.backoff_ms, LISTENER_BACKOFF_MIN_MS);
	CHECK_EQ_INT(ls.paused, p0 + 0);
	for (unsigned i = 0; i < naccepted; i++)
		close(accepted[i]);
	naccepted = 0;

	/* A new client after the storm is accepted at once. */
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK_EQ_INT(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	run_for(100);
	CHECK_EQ_INT(naccepted, 1);
	close(fd);
	for (unsigned i = 0; i < naccepted; i++)
		close(accepted[i]);
	naccepted = 0;

	/* Close: on_closed once, after the accept's cancel completed; the
	 * listening socket is gone (a connect is refused). */
	c0 = completions;
	listener_close(&ls);
	listener_close(&ls);
	CHECK_EQ_INT(closed_calls, 0);
	run_for(1000);
	CHECK_EQ_INT(closed_calls, 1);
	CHECK(completions > c0);	/* the accept ended (-ECANCELED) before */
	CHECK_EQ_INT(ls.fd, -1);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 && errno == ECONNREFUSED);
	close(fd);
	for (int i = 0; i < CLIENTS; i++)
		close(clients[i]);
}

/* Close while paused: the timer goes, on_closed comes without waiting for
 * it. */
static void test_close_paused(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct listener ls;
	struct rlimit old, low;
	int lfd, cl;
	socklen_t len = sizeof(sa);

	lfd = listener_socket((struct sockaddr *)&sa, sizeof(sa), 8);
	CHECK(lfd >= 0);
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = (rlim_t)next_fd();	/* not even one fits */
	setrlimit(RLIMIT_NOFILE, &low);
	closed_calls = 0;
	listener_start(&ls, L, lfd, "test paused", on_accept, on_closed, NULL);
	CHECK_EQ_INT(connect(cl, (struct sockaddr *)&sa, sizeof(sa)), 0);
	run_for(30);
	CHECK(listener_paused(&ls));
	CHECK_EQ_INT(naccepted, 0);
	listener_close(&ls);
	run_for(500);
	CHECK_EQ_INT(closed_calls, 1);
	CHECK(!listener_paused(&ls));
	setrlimit(RLIMIT_NOFILE, &old);
	close(cl);
}

/* The fd reserve: near the ceiling the multishot goes one-shot, so the
 * kernel never hands out the reserve's fds; past it connections are reset
 * and accepting pauses; no accept fails with EMFILE; with the limit back
 * everyone left is accepted. */
static void test_ceiling(void)
{
	enum { N = 100 };
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	struct listener ls;
	struct rlimit old, low;
	int clients[N], lfd, base, maxfd = -1;
	unsigned long ceiling, refused;


	lfd = listener_socket((struct sockaddr *)&sa, sizeof(sa), 128);
	CHECK(lfd >= 0);
	if (lfd < 0)
		return;
	getsockname(lfd, (struct sockaddr *)&sa, &len);
	for (int i = 0; i < N; i++)
		clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	base = next_fd();
	getrlimit(RLIMIT_NOFILE, &old);
	low = old;
	low.rlim_cur = (rlim_t)base + 64;
	CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &low), 0);
	listener_fd_limit_reread();
	ceiling = listener_fd_ceiling();
	CHECK_EQ_INT(ceiling, (unsigned long)base + 64 - 16);
	naccepted = 0;
	emfiles = 0;
	completions = 0;
	listener_start(&ls, L, lfd, "test ceiling", on_accept, NULL, NULL);
	real_accept_cb = ls.accept_op.cb;
	ls.accept_op.cb = counting_accept;
	for (int i = 0; i < N; i++)
		CHECK_EQ_INT(connect(clients[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
	run_for(500);
	for (unsigned i = 0; i < naccepted; i++)
		if (accepted[i] > maxfd)
			maxfd = accepted[i];
	CHECK_EQ_INT(naccepted, ceiling - (unsigned long)base);
	CHECK(maxfd >= 0 && (unsigned long)maxfd < ceiling);
	CHECK(ls.refused >= 1);
	CHECK(ls.paused >= 1);
	CHECK_EQ_INT(emfiles, 0);
	refused = ls.refused;
	fprintf(stderr, "ceiling %lu: %u accepted, %lu reset, %lu pauses, %u completions\n",
		ceiling, naccepted, refused, ls.paused, completions);

	CHECK_EQ_INT(setrlimit(RLIMIT_NOFILE, &old), 0);
	listener_fd_limit_reread();
	run_for(LISTENER_BACKOFF_MAX_MS + 300);
	CHECK_EQ_INT(naccepted + ls.refused, N);
	CHECK_EQ_INT(emfiles, 0);
	for (unsigned i = 0; i < naccepted; i++)
		close(accepted[i]);
	naccepted = 0;
	closed_calls = 0;
	listener_close(&ls);
	run_for(1000);
	CHECK_EQ_INT(closed_calls, 0);	/* on_closed is NULL here */
	for (int i = 0; i < N; i++)
		close(clients[i]);
}

static void ip4(struct sockaddr_in *sa, uint32_t ip, uint16_t port)
{
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_addr.s_addr = htonl(ip);
	sa->sin_port = htons(port);
}

static void test_pending(void)
{
	struct listener_pending *p = listener_pending_new(10, 3);
	struct sockaddr_in a, b;
	struct sockaddr_in6 a6;
	static unsigned model[64];
	unsigned total = 0;

	CHECK(p != NULL);
	ip4(&a, 0x0a000001, 1);
	ip4(&b, 0x0a000002, 2);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&a), 0);
	ip4(&a, 0x0a000001, 999);	/* another port, the same address */
	CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&a), -EBUSY);
	/* ::ffff:10.0.0.1 is the same address. */
	memset(&a6, 0, sizeof(a6));
	a6.sin6_family = AF_INET6;
	a6.sin6_addr.s6_addr[10] = a6.sin6_addr.s6_addr[11] = 0xff;
	a6.sin6_addr.s6_addr[12] = 10;
	a6.sin6_addr.s6_addr[15] = 1;
	CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&a6), -EBUSY);
	CHECK_EQ_INT(listener_pending_of(p, (struct sockaddr *)&a), 3);
	CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&b), 0);
	listener_pending_drop(p, (struct sockaddr *)&a);
	CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&a), 0);
	CHECK_EQ_INT(listener_pending_count(p), 4);
	/* The total cap, from other addresses. */
	for (uint32_t i = 0; i < 6; i++) {
		ip4(&b, 0x0b000000 + i, 1);
		CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&b), 0);
	}
	ip4(&b, 0x0c000000, 1);
	CHECK_EQ_INT(listener_pending_take(p, (struct sockaddr *)&b), -ENOSPC);
	listener_pending_free(p);

	/* Random churn over 64 addresses against a model: the caps hold and
	 * the table never loses or invents a count (backward-shift deletes). */
	p = listener_pending_new(100, 4);
	srand(7);
	for (int round = 0; round < 200000; round++) {
		unsigned k = (unsigned)rand() % 64;
		int rc;

		ip4(&a, 0xc0a80000 + k * 977, 5);
		if (rand() % 2) {
			rc = listener_pending_take(p, (struct sockaddr *)&a);
			if (model[k] >= 4) {
				CHECK_EQ_INT(rc, -EBUSY);
			} else if (total >= 100) {
				CHECK_EQ_INT(rc, -ENOSPC);
			} else {
				CHECK_EQ_INT(rc, 0);
				model[k]++;
				total++;
			}
		} else if (model[k]) {
			listener_pending_drop(p, (struct sockaddr *)&a);
			model[k]--;
			total--;
		}
		if (round % 1000 == 0) {
			for (unsigned j = 0; j < 64; j++) {
				ip4(&b, 0xc0a80000 + j * 977, 6);
				if (listener_pending_of(p, (struct sockaddr *)&b) != model[j])
					CHECK_EQ_INT(listener_pending_of(p, (struct sockaddr *)&b),
						     model[j]);
			}
			CHECK_EQ_INT(listener_pending_count(p), total);
		}
	}
	listener_pending_free(p);
}

int main(void)
{
	log_set_component("test");
	L = loop_new(64);
	CHECK(L != NULL);
	if (!L)
		return 77;
	test_emfile();
	test_close_paused();
	test_ceiling();
	test_pending();
	loop_free(L);
	return check_done("listener");
}
