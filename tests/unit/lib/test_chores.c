/* SPDX-License-Identifier: Apache-2.0 */
/* The chores thread: chores run in order on a thread that is not the
 * loop's, their done callbacks come back in order on the loop's thread, a
 * chore that blocks for a long time does not stop the loop's timers, and
 * stopping runs what is still queued. */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <weft/chores.h>
#include <weft/loop.h>

#include "../check.h"

#define N 200

struct job {
	struct chore c;
	int seq;
	pthread_t ran_on;
	int sleep_ms;
};

static struct loop *L;
static pthread_t main_thread;
static int run_next, done_next, run_bad, done_bad, done_wrong_thread, done_count, done_want;
static int ticks;

static void job_run(struct chore *c)
{
	struct job *j = (struct job *)c;

	j->ran_on = pthread_self();
	if (j->seq != run_next++)
		run_bad++;
	if (j->sleep_ms)
		usleep((useconds_t)j->sleep_ms * 1000);
}

static void job_done(struct chore *c)
{
	struct job *j = (struct job *)c;

	if (!pthread_equal(pthread_self(), main_thread) || pthread_equal(j->ran_on, main_thread))
		done_wrong_thread++;
	if (j->seq != done_next++)
		done_bad++;
	if (++done_count == done_want)
		loop_stop(L);
}

static void on_tick(struct loop_timer *t)
{
	ticks++;
	loop_timer_arm(L, t, 5);
}

static int watchdog;

static void on_watchdog(struct loop_timer *t)
{
	(void)t;
	watchdog = 1;
	loop_stop(L);
}

static void test_order_and_threads(struct chores *s)
{
	static struct job jobs[N];
	struct loop_timer wd = { .cb = on_watchdog };

	run_next = done_next = run_bad = done_bad = done_wrong_thread = done_count = 0;
	done_want = N;
	for (int i = 0; i < N; i++) {
		jobs[i] = (struct job){ .c = { .run = job_run, .done = job_done }, .seq = i };
		chores_add(s, &jobs[i].c, L);
	}
	loop_timer_arm(L, &wd, 10000);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &wd);
	CHECK_EQ_INT(watchdog, 0);
	CHECK_EQ_INT(done_count, N);
	CHECK_EQ_INT(run_bad, 0);
	CHECK_EQ_INT(done_bad, 0);
	CHECK_EQ_INT(done_wrong_thread, 0);
	CHECK_EQ_INT(chores_queued(s), 0);
}

/* A chore blocked for 300 ms (an fsync on a slow disk): the loop's 5 ms
 * timer keeps firing meanwhile. On the loop itself it would fire once. */
static void test_blocking_chore(struct chores *s)
{
	static struct job slow;
	struct loop_timer tick = { .cb = on_tick }, wd = { .cb = on_watchdog };

	run_next = done_next = done_count = 0;
	done_want = 1;
	ticks = 0;
	slow = (struct job){ .c = { .run = job_run, .done = job_done }, .seq = 0, .sleep_ms = 300 };
	chores_add(s, &slow.c, L);
	CHECK(chores_queued(s) == 1);
	loop_timer_arm(L, &tick, 5);
	loop_timer_arm(L, &wd, 10000);
	CHECK_EQ_INT(loop_run(L), 0);
	loop_timer_disarm(L, &tick);
	loop_timer_disarm(L, &wd);
	CHECK_EQ_INT(done_count, 1);
	/* 60 ticks at best, fewer on a busy machine; a loop that waited on
	 * the chore makes 1 or 2. */
	CHECK(ticks >= 10);
}

static int stop_ran;

static void stop_run(struct chore *c)
{
	(void)c;
	usleep(2000);
	stop_ran++;
}

static void test_stop_runs_queued(void)
{
	static struct chore cs[10];
	struct chores *s = chores_start();

	CHECK(s != NULL);
	if (!s)
		return;
	stop_ran = 0;
	for (int i = 0; i < 10; i++) {
		cs[i] = (struct chore){ .run = stop_run };
		chores_add(s, &cs[i], L);
	}
	chores_stop(s);
	CHECK_EQ_INT(stop_ran, 10);
	chores_stop(NULL);
}

int main(void)
{
	struct chores *s;

	main_thread = pthread_self();
	L = loop_new(16);
	s = chores_start();
	CHECK(L && s);
	if (!L || !s)
		return check_done("test_chores");
	test_order_and_threads(s);
	test_blocking_chore(s);
	chores_stop(s);
	test_stop_runs_queued();
	loop_free(L);
	return check_done("test_chores");
}
