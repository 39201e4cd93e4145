/* SPDX-License-Identifier: Apache-2.0 */
/* A thread for the blocking work an event loop must never wait on: file
 * writes with their fsync, heap trimming, sockets made inside other network
 * namespaces. A chore runs there, in the order it was added, and then its
 * done callback runs back on the loop that added it (loop_post). */
#ifndef WEFT_CHORES_H
#define WEFT_CHORES_H

#include <weft/loop.h>

struct chores;

struct chore {
	/* On the chores thread; may block. Touches only what the chore owns. */
	void (*run)(struct chore *c);
	/* On the home loop's thread after run; may free the chore. NULL: none
	 * (the chore must then outlive nothing: static, or freed by run). */
	void (*done)(struct chore *c);
	/* Private. */
	struct loop *home;
	struct loop_msg msg;
	struct chore *next;
};

/* Start the thread (every signal blocked in it). NULL with errno. */
struct chores *chores_start(void);
/* Queue c; done runs on home's thread. Any thread may add. */
void chores_add(struct chores *s, struct chore *c, struct loop *home);
/* Chores added and not yet run (metrics, tests). */
unsigned chores_queued(struct chores *s);
/* Run what is queued, then end the thread. done callbacks already posted
 * run only if their home loops run again. NULL is a no-op. */
void chores_stop(struct chores *s);

#endif
