/* SPDX-License-Identifier: Apache-2.0 */
/* The io_uring loop: timer order and disarm, the heap under churn, tasks
 * after dispatch (FIFO, next round when queued while running), a signal
 * through signalfd, multishot accept + recv + send on loopback, cancel,
 * messages posted from other threads (order per poster, none lost, to a
 * loop that runs on a thread of its own). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <liburing.h>	/* IORING_CQE_F_MORE */

#include <weft/loop.h>

#include "../check.h"

#define container_of(p, type, m) ((type *)((char *)(p) - offsetof(type, m)))

static struct loop *L;
static int watchdog_fired;

static void on_watchdog(struct loop_timer *t)
{
	(void)t;
	watchdog_fired = 1;
	loop_stop(L);
}

/* Run the loop with a watchdog: a hung test fails instead of hanging. */
static void run_bounded(uint64_t ms)
{
	struct loop_timer wd = { .cb = on_watchdog };

	watchdog_fired = 0;
	loop_timer_arm(L, &wd, ms);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &wd);
}

/* --- timers ------------------------------------------------------------- */

struct ttimer {
	struct loop_timer t;
	int id;
	uint64_t armed_at;
	uint64_t delay;
};

static int fired[16];
static int nfired;
static int late;

static void on_ttimer(struct loop_timer *t)
{
	struct ttimer *tt = container_of(t, struct ttimer, t);

	fired[nfired++] = tt->id;
	if (loop_now_ms(L) < tt->armed_at + tt->delay)
		late = -1;	/* fired early */
	if (tt->id == 99)
		loop_stop(L);
}

static void test_timers(void)
{
	struct ttimer t[6];
	uint64_t delays[6] = { 60, 20, 40, 30, 50, 120 };
	int ids[6] = { 3, 1, 2, 7, 8, 99 };

	memset(t, 0, sizeof(t));
	nfired = 0;
	late = 0;
	for (int i = 0; i < 6; i++) {
		t[i].t.cb = on_ttimer;
		t[i].id = ids[i];
		t[i].delay = delays[i];
		t[i].armed_at = loop_now_ms(L);
		loop_timer_arm(L, &t[i].t, delays[i]);
		CHECK(t[i].t.idx != 0);
	}
	/* 7 disarmed, 8 moved from 50 to 10 ms: must fire first. */
	loop_timer_disarm(L, &t[3].t);
	CHECK_EQ_INT(t[3].t.idx, 0);
	loop_timer_disarm(L, &t[3].t);		/* twice is harmless */
	t[4].delay = 10;
	loop_timer_arm(L, &t[4].t, 10);
	run_bounded(3000);
	CHECK(!watchdog_fired);
	CHECK_EQ_INT(nfired, 5);
	CHECK_EQ_INT(fired[0], 8);
	CHECK_EQ_INT(fired[1], 1);
	CHECK_EQ_INT(fired[2], 2);
	CHECK_EQ_INT(fired[3], 3);
	CHECK_EQ_INT(fired[4], 99);
	CHECK_EQ_INT(late, 0);
	for (int i = 0; i < 6; i++)
		CHECK_EQ_INT(t[i].t.idx, 0);
}

/* Many timers, half disarmed at random: the rest fire in deadline order. */
#define NCHURN 2000
static struct loop_timer churn[NCHURN];
static int churn_fired[NCHURN];
static uint64_t churn_last;
static int churn_order_ok = 1;
static int churn_count;

static void on_churn(struct loop_timer *t)
{
	int i = (int)(t - churn);

	churn_fired[i]++;
	churn_count++;
	if (t->at_ms < churn_last)
		churn_order_ok = 0;
	churn_last = t->at_ms;
}

static void on_churn_end(struct loop_timer *t)
{
	(void)t;
	loop_stop(L);
}

static void test_timer_heap(void)
{
	struct loop_timer end = { .cb = on_churn_end };
	unsigned seed = 12345;
	int expect = 0;

	for (int i = 0; i < NCHURN; i++) {
		seed = seed * 1103515245u + 12345u;
		churn[i].cb = on_churn;
		loop_timer_arm(L, &churn[i], (seed >> 8) % 80);
	}
	for (int i = 0; i < NCHURN; i++) {
		seed = seed * 1103515245u + 12345u;
		if ((seed >> 9) & 1)
			loop_timer_disarm(L, &churn[i]);
		else if ((seed >> 10) & 1)
			loop_timer_arm(L, &churn[i], (seed >> 12) % 80);	/* move */
	}
	for (int i = 0; i < NCHURN; i++)
		expect += churn[i].idx != 0;
	loop_timer_arm(L, &end, 150);
	run_bounded(3000);
	CHECK(!watchdog_fired);
	CHECK(churn_order_ok);
	CHECK_EQ_INT(churn_count, expect);
	CHECK(expect > NCHURN / 4);
	for (int i = 0; i < NCHURN; i++)
		CHECK(churn_fired[i] <= 1);
}

/* --- tasks ---------------------------------------------------------------- */

static char order[32];
static int norder;
static int second_dispatched;
static struct loop_task task_a, task_b, task_c;
static int task_a_saw_second;

static void note(char ch)
{
	if (norder < (int)sizeof(order) - 1)
		order[norder++] = ch;
}

static void on_task_c(struct loop_task *t)
{
	(void)t;
	note('C');
	loop_stop(L);
}

static void on_task_a(struct loop_task *t)
{
	(void)t;
	note('A');
	task_a_saw_second = second_dispatched;
	loop_task_queue(L, &task_c);		/* next round: after B */
}

static void on_task_b(struct loop_task *t)
{
	(void)t;
	note('B');
}

struct pipe_read {
	struct loop_op op;
	char buf[8];
	int which;
};

static void on_pipe_read(struct loop_op *op, int res, unsigned flags)
{
	struct pipe_read *pr = container_of(op, struct pipe_read, op);

	(void)flags;
	CHECK_EQ_INT(res, 1);
	note(pr->which == 1 ? '1' : '2');
	if (pr->which == 1) {
		loop_task_queue(L, &task_a);
		loop_task_queue(L, &task_b);
		loop_task_queue(L, &task_a);	/* no-op: already queued */
	} else {
		second_dispatched = 1;
	}
}

static void test_tasks(void)
{
	struct pipe_read r1 = { .op.cb = on_pipe_read, .which = 1 };
	struct pipe_read r2 = { .op.cb = on_pipe_read, .which = 2 };
	int p1[2], p2[2];

	CHECK(pipe(p1) == 0 && pipe(p2) == 0);
	/* Both reads complete in the same submission, so both CQEs are
	 * reaped in one batch: tasks queued by the first must wait for
	 * the second's dispatch. */
	CHECK(write(p1[1], "x", 1) == 1 && write(p2[1], "y", 1) == 1);
	task_a.cb = on_task_a;
	task_b.cb = on_task_b;
	task_c.cb = on_task_c;
	CHECK_EQ_INT(loop_read(L, &r1.op, p1[0], r1.buf, 1), 0);
	CHECK_EQ_INT(loop_read(L, &r2.op, p2[0], r2.buf, 1), 0);
	run_bounded(2000);
	CHECK(!watchdog_fired);
	order[norder] = 0;
	CHECK_EQ_STR(order, "12ABC");
	CHECK(task_a_saw_second);
	close(p1[0]); close(p1[1]); close(p2[0]); close(p2[1]);
}

/* --- signals -------------------------------------------------------------- */

static int got_signo;
static struct loop_task raise_task;

static void on_signal(struct loop *l, int signo)
{
	got_signo = signo;
	loop_stop(l);
}

static void on_raise(struct loop_task *t)
{
	(void)t;
	raise(SIGUSR1);
}

static void test_signals(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	CHECK_EQ_INT(loop_signals(L, &set, on_signal), 0);
	/* Raised from inside the running loop, so the read is already armed
	 * (it must also work if the signal is pending first). */
	raise_task.cb = on_raise;
	loop_task_queue(L, &raise_task);
	run_bounded(2000);
	CHECK(!watchdog_fired);
	CHECK_EQ_INT(got_signo, SIGUSR1);

	/* Pending before the loop runs: delivered on the next read. */
	got_signo = 0;
	raise(SIGUSR1);
	run_bounded(2000);
	CHECK(!watchdog_fired);
	CHECK_EQ_INT(got_signo, SIGUSR1);
}

/* --- sockets -------------------------------------------------------------- */

#define NCLIENTS 3

struct srv_conn {
	struct loop_op recv_op, send_op, close_op;
	int fd;
	char buf[64];
	int nrecv;
};

static struct loop_op accept_op;
static int listen_fd;
static int accepted;
static int closed_conns;
static int accept_more_seen;
static struct srv_conn sconns[NCLIENTS];

static void on_srv_close(struct loop_op *op, int res, unsigned flags)
{
	(void)op; (void)flags;
	CHECK_EQ_INT(res, 0);
	if (++closed_conns == NCLIENTS)
		loop_stop(L);
}

static void on_srv_send(struct loop_op *op, int res, unsigned flags)
{
	struct srv_conn *s = container_of(op, struct srv_conn, send_op);

	(void)flags;
	CHECK_EQ_INT(res, 4);
	CHECK_EQ_INT(loop_recv(L, &s->recv_op, s->fd, s->buf, sizeof(s->buf)), 0);
}

static void on_srv_recv(struct loop_op *op, int res, unsigned flags)
{
	struct srv_conn *s = container_of(op, struct srv_conn, recv_op);

	(void)flags;
	if (res > 0) {
		CHECK_EQ_INT(res, 4);
		CHECK(memcmp(s->buf, "ping", 4) == 0);
		s->nrecv++;
		CHECK_EQ_INT(loop_send(L, &s->send_op, s->fd, "pong", 4), 0);
		return;
	}
	CHECK_EQ_INT(res, 0);		/* client closed */
	CHECK_EQ_INT(s->nrecv, 1);
	CHECK_EQ_INT(loop_close(L, &s->close_op, s->fd), 0);
}

static void on_accept(struct loop_op *op, int res, unsigned flags)
{
	struct srv_conn *s;

	(void)op;
	if (flags & IORING_CQE_F_MORE)
		accept_more_seen++;
	else if (res >= 0 || res == -ECANCELED)
		CHECK_EQ_INT(loop_accept(L, &accept_op, listen_fd), 0);	/* re-arm */
	if (res < 0)
		return;
	CHECK(accepted < NCLIENTS);
	if (accepted >= NCLIENTS) {
		close(res);
		return;
	}
	s = &sconns[accepted++];
	s->fd = res;
	s->recv_op.cb = on_srv_recv;
	s->send_op.cb = on_srv_send;
	s->close_op.cb = on_srv_close;
	CHECK_EQ_INT(loop_recv(L, &s->recv_op, s->fd, s->buf, sizeof(s->buf)), 0);
}

static struct sockaddr_in srv_addr;
static int client_ok;

static void *client_main(void *arg)
{
	(void)arg;
	for (int i = 0; i < NCLIENTS; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);
		char buf[8];
		ssize_t n;

		if (connect(fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) < 0) {
			close(fd);
			return NULL;
		}
		if (write(fd, "ping", 4) != 4) {
			close(fd);
			return NULL;
		}
		n = read(fd, buf, sizeof(buf));
		if (n == 4 && memcmp(buf, "pong", 4) == 0)
			__atomic_fetch_add(&client_ok, 1, __ATOMIC_RELAXED);
		close(fd);
	}
	return NULL;
}

static void test_sockets(void)
{
	socklen_t alen = sizeof(srv_addr);
	pthread_t th;

	listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	memset(&srv_addr, 0, sizeof(srv_addr));
	srv_addr.sin_family = AF_INET;
	srv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(bind(listen_fd, (struct sockaddr *)&srv_addr, sizeof(srv_addr)) == 0);
	CHECK(listen(listen_fd, 16) == 0);
	CHECK(getsockname(listen_fd, (struct sockaddr *)&srv_addr, &alen) == 0);
	accept_op.cb = on_accept;
	CHECK_EQ_INT(loop_accept(L, &accept_op, listen_fd), 0);
	CHECK(pthread_create(&th, NULL, client_main, NULL) == 0);
	run_bounded(5000);
	pthread_join(th, NULL);
	CHECK(!watchdog_fired);
	CHECK_EQ_INT(accepted, NCLIENTS);
	CHECK_EQ_INT(closed_conns, NCLIENTS);
	CHECK_EQ_INT(client_ok, NCLIENTS);
	/* One SQE served every client. */
	CHECK_EQ_INT(accept_more_seen, NCLIENTS);
}

/* Cancel by fd: a recv that would never complete, and the accept. */
static int cancel_recv_res = 1, cancel_res = -1, accept_cancelled;

static void on_cancel_recv(struct loop_op *op, int res, unsigned flags)
{
	(void)op; (void)flags;
	cancel_recv_res = res;
}

static void on_cancel(struct loop_op *op, int res, unsigned flags)
{
	(void)op; (void)flags;
	cancel_res = res;
}

static void on_accept_cancel(struct loop_op *op, int res, unsigned flags)
{
	(void)op;
	if (res == -ECANCELED && !(flags & IORING_CQE_F_MORE))
		accept_cancelled = 1;
}

static void on_cancel_end(struct loop_timer *t)
{
	(void)t;
	loop_stop(L);
}

static void test_cancel(void)
{
	struct loop_op rop = { .cb = on_cancel_recv }, cop = { .cb = on_cancel };
	struct loop_op cop2 = { .cb = on_cancel };
	struct loop_timer end = { .cb = on_cancel_end };
	int sv[2];
	char buf[16];

	CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	CHECK_EQ_INT(loop_recv(L, &rop, sv[0], buf, sizeof(buf)), 0);
	loop_timer_arm(L, &end, 30);
	run_bounded(2000);
	CHECK_EQ_INT(cancel_recv_res, 1);	/* still pending */
	CHECK_EQ_INT(loop_cancel_fd(L, &cop, sv[0]), 0);
	loop_timer_arm(L, &end, 30);
	run_bounded(2000);
	CHECK_EQ_INT(cancel_recv_res, -ECANCELED);
	CHECK_EQ_INT(cancel_res, 1);		/* one request cancelled */

	/* The multishot accept still armed from test_sockets. */
	accept_op.cb = on_accept_cancel;
	CHECK_EQ_INT(loop_cancel_fd(L, &cop2, listen_fd), 0);
	loop_timer_arm(L, &end, 30);
	run_bounded(2000);
	CHECK(accept_cancelled);
	close(sv[0]);
	close(sv[1]);
	close(listen_fd);
}

/* --- loop_post ---------------------------------------------------------- */

#define POSTERS 3
#define POSTS 2000

struct post {
	struct loop_msg m;
	int who, seq;
};

static struct post posts[POSTERS][POSTS];
static int post_next[POSTERS], post_bad, post_got;
static struct loop *post_to;

static void on_post(struct loop_msg *m)
{
	struct post *p = container_of(m, struct post, m);

	if (p->seq != post_next[p->who])
		post_bad++;
	post_next[p->who] = p->seq + 1;
	if (++post_got == POSTERS * POSTS)
		loop_stop(post_to);
}

static void *poster(void *arg)
{
	int who = (int)(intptr_t)arg;

	for (int i = 0; i < POSTS; i++) {
		posts[who][i] = (struct post){ .m.cb = on_post, .who = who, .seq = i };
		loop_post(post_to, &posts[who][i].m);
		if (i % 256 == 0)
			usleep(100);	/* some batches, some wake-ups */
	}
	return NULL;
}

static void test_post(void)
{
	struct loop_timer wd = { .cb = on_watchdog };
	pthread_t t[POSTERS];

	post_to = L;
	memset(post_next, 0, sizeof(post_next));
	post_bad = post_got = 0;
	watchdog_fired = 0;
	for (int i = 0; i < POSTERS; i++)
		CHECK_EQ_INT(pthread_create(&t[i], NULL, poster, (void *)(intptr_t)i), 0);
	loop_timer_arm(L, &wd, 10000);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &wd);
	for (int i = 0; i < POSTERS; i++)
		pthread_join(t[i], NULL);
	CHECK_EQ_INT(watchdog_fired, 0);
	CHECK_EQ_INT(post_got, POSTERS * POSTS);
	CHECK_EQ_INT(post_bad, 0);
}

/* A loop made and run by a thread of its own (as weftd's control thread):
 * the main thread posts, the loop's thread runs the messages. */
static pthread_t post_runner;
static int post_wrong_thread;
static struct post stop_msg;

static void on_post_owner(struct loop_msg *m)
{
	if (!pthread_equal(pthread_self(), post_runner))
		post_wrong_thread++;
	if (m == &stop_msg.m)
		loop_stop(post_to);
}

static void *run_own(void *arg)
{
	struct loop **out = arg;

	post_to = loop_new(8);
	__atomic_store_n(out, post_to, __ATOMIC_RELEASE);
	if (post_to) {
		loop_run(post_to);
		loop_free(post_to);
	}
	return NULL;
}

static void test_post_other_thread(void)
{
	static struct post m[100];
	struct loop *lp = NULL;

	post_wrong_thread = 0;
	CHECK_EQ_INT(pthread_create(&post_runner, NULL, run_own, &lp), 0);
	while (!__atomic_load_n(&lp, __ATOMIC_ACQUIRE))
		usleep(1000);
	for (int i = 0; i < 100; i++) {
		m[i].m.cb = on_post_owner;
		loop_post(lp, &m[i].m);
	}
	stop_msg.m.cb = on_post_owner;
	loop_post(lp, &stop_msg.m);
	pthread_join(post_runner, NULL);
	CHECK_EQ_INT(post_wrong_thread, 0);
}

int main(void)
{
	L = loop_new(8);	/* small SQ: exercises submit-on-full */
	CHECK(L != NULL);
	if (!L)
		return check_done("test_loop");
	test_timers();
	test_timer_heap();
	test_tasks();
	test_signals();
	test_sockets();
	test_cancel();
	test_post();
	test_post_other_thread();
	loop_free(L);
	loop_free(NULL);
	return check_done("test_loop");
}
