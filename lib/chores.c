/* SPDX-License-Identifier: Apache-2.0 */
/* The chores thread: a FIFO under a mutex, a condition variable to sleep
 * on, one chore at a time. It has no ring of its own: a chore blocks by
 * definition, and its result goes home through the home loop's messages. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>

#include <weft/chores.h>
#include <weft/log.h>

/* A chore's frames are small (file writes, socket(), a 2 KiB log line);
 * room for a sanitizer's larger frames too. */
#define CHORES_STACK (512u * 1024)

struct chores {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	struct chore *head, *tail;
	unsigned queued;
	int stopping;
};

static void chores_on_done(struct loop_msg *m)
{
	struct chore *c = (struct chore *)((char *)m - offsetof(struct chore, msg));

	c->done(c);
}

static void *chores_main(void *arg)
{
	struct chores *s = arg;
	int has_done;

	pthread_mutex_lock(&s->lock);
	for (;;) {
		struct chore *c = s->head;

		if (!c) {
			if (s->stopping)
				break;
			pthread_cond_wait(&s->wake, &s->lock);
			continue;
		}
		s->head = c->next;
		if (!s->head)
			s->tail = NULL;
		pthread_mutex_unlock(&s->lock);
		/* Read before run: a chore without done may free itself. */
		has_done = c->done != NULL;
		c->run(c);
		/* After this the home may free c: nothing touches it here. */
		if (has_done)
			loop_post(c->home, &c->msg);
		pthread_mutex_lock(&s->lock);
		/* Counted down after run and the post: chores_queued() == 0
		 * means every done callback is on its way home. */
		s->queued--;
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

struct chores *chores_start(void)
{
	struct chores *s = calloc(1, sizeof(*s));
	pthread_attr_t attr;
	sigset_t all, old;
	int ret;

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->wake, NULL);
	/* Signals are the main loop's (its signalfd): the new thread starts
	 * with all of them blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, CHORES_STACK);
	ret = pthread_create(&s->thread, &attr, chores_main, s);
	pthread_attr_destroy(&attr);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ret) {
		pthread_cond_destroy(&s->wake);
		pthread_mutex_destroy(&s->lock);
		free(s);
		errno = ret;
		return NULL;
	}
	return s;
}

void chores_add(struct chores *s, struct chore *c, struct loop *home)
{
	c->home = home;
	c->next = NULL;
	c->msg.cb = chores_on_done;
	pthread_mutex_lock(&s->lock);
	if (s->tail)
		s->tail->next = c;
	else
		s->head = c;
	s->tail = c;
	s->queued++;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
}

unsigned chores_queued(struct chores *s)
{
	unsigned n;

	pthread_mutex_lock(&s->lock);
	n = s->queued;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void chores_stop(struct chores *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = 1;
	pthread_cond_signal(&s->wake);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->wake);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
