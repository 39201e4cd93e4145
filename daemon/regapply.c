/* SPDX-License-Identifier: Apache-2.0 */
/* The control thread's registry (regapply.h). It is a chores thread of its
 * own, not the disk's: an update must not wait behind a slow fsync. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <weft/chores.h>
#include <weft/log.h>
#include <weft/regcache.h>

#include "regapply.h"
#include "weftd.h"

/* Updates waiting for the control thread, at most: an agent that sends
 * faster than they apply (or a hostile one) must not queue memory without
 * bound. Past it an update is dropped, and every delta after it is refused
 * until a snapshot (the registry would otherwise be a wrong one). */
#define REGAPPLY_PENDING_MAX 64
#define REGAPPLY_BYTES_MAX (128u << 20)

struct regapply {
	struct weftd *d;
	struct chores *thread;
	struct regcache *writer;		/* the control thread's own */
	void (*changed)(struct weftd *d);
	atomic_uint queued;			/* updates added, not yet applied */
	int dirty;				/* control thread: applied, not copied yet */
	int need_snapshot;			/* control thread: deltas refused */
	unsigned pending;			/* loop side: updates not yet done */
	size_t pending_bytes;
	int lost;				/* loop side: one was dropped */
	double last_ms;				/* the last update's apply and copy */
};

enum regapply_kind { RA_UPDATE, RA_FREE, RA_SNAPSHOT };

struct regapply_job {
	struct chore c;
	struct regapply *ra;
	enum regapply_kind kind;
	int after_loss;			/* an update before this one was dropped */
	uint8_t *msg;			/* RA_UPDATE: the message; RA_SNAPSHOT: the result */
	size_t len;
	struct regcache *rc;		/* RA_UPDATE: the copy to publish; RA_FREE: to free */
	void (*snap_done)(struct weftd *d, uint8_t *buf, size_t len);
	double ms;
	int err;
	char why[256];
};

static double regapply_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/* Apply j's message to the writer; after a dropped update only a snapshot
 * (a whole registry) may follow. */
static int regapply_apply(struct regapply *ra, struct regapply_job *j)
{
	struct regcache *fresh;
	int ret;

	if (!ra->need_snapshot)
		return regcache_apply(ra->writer, j->msg, j->len, j->why, sizeof(j->why));
	fresh = regcache_new();
	if (!fresh)
		return -ENOMEM;
	ret = regcache_apply_snapshot(fresh, j->msg, j->len, j->why, sizeof(j->why));
	if (ret) {
		regcache_free(fresh);
		if (ret == -EINVAL && !strstr(j->why, "snapshot"))
			return ret;
		snprintf(j->why, sizeof(j->why), "an earlier update was dropped: waiting for a "
			 "snapshot, deltas refused until then");
		return -EINVAL;
	}
	regcache_free(ra->writer);
	ra->writer = fresh;
	ra->need_snapshot = 0;
	return 0;
}

static void regapply_run(struct chore *c)
{
	struct regapply_job *j = (struct regapply_job *)c;
	struct regapply *ra = j->ra;
	double t0;

	switch (j->kind) {
	case RA_FREE:
		regcache_free(j->rc);
		j->rc = NULL;
		return;
	case RA_SNAPSHOT:
		if (regcache_snapshot(ra->writer, &j->msg, &j->len))
			j->msg = NULL;
		return;
	case RA_UPDATE:
		break;
	}
	t0 = regapply_clock_ms();
	if (j->after_loss)
		ra->need_snapshot = 1;
	j->err = regapply_apply(ra, j);
	free(j->msg);
	j->msg = NULL;
	if (!j->err)
		ra->dirty = 1;
	/* Only the last of a burst is copied (whether or not it was itself
	 * accepted): the others' effects are in the writer already, and the
	 * loop would swap twice for nothing. */
	if (atomic_fetch_sub(&ra->queued, 1) == 1 && ra->dirty) {
		char why[256];

		j->rc = regcache_clone(ra->writer, why, sizeof(why));
		if (j->rc)
			ra->dirty = 0;
		else if (!j->err)
			log_warn("registry copy for the data path failed (%s); kept for the next "
				 "update", why);
	}
	j->ms = regapply_clock_ms() - t0;
}

static void regapply_add(struct regapply *ra, struct regapply_job *j)
{
	chores_add(ra->thread, &j->c, ra->d->loop);
}

static void regapply_done(struct chore *c)
{
	struct regapply_job *j = (struct regapply_job *)c;
	struct regapply *ra = j->ra;
	struct weftd *d = ra->d;

	switch (j->kind) {
	case RA_FREE:
		free(j);
		return;
	case RA_SNAPSHOT:
		j->snap_done(d, j->msg, j->len);
		free(j);
		return;
	case RA_UPDATE:
		break;
	}
	ra->pending--;
	ra->pending_bytes -= j->len;
	ra->last_ms = j->ms;
	if (j->err)
		log_warn("registry update rejected: %s", j->why[0] ? j->why : strerror(-j->err));
	if (j->rc) {
		struct regcache *old = d->reg;

		d->reg = j->rc;
		log_debug("registry version %llu applied (%.1f ms on the control thread)",
			  (unsigned long long)regcache_version(d->reg), j->ms);
		ra->changed(d);
		/* The old copy goes back to be freed there: for a big registry
		 * that is thousands of frees. */
		j->kind = RA_FREE;
		j->rc = old;
		regapply_add(ra, j);
		return;
	}
	free(j);
}

static struct regapply_job *regapply_job_new(struct regapply *ra, enum regapply_kind kind)
{
	struct regapply_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->c.run = regapply_run;
	j->c.done = regapply_done;
	j->ra = ra;
	j->kind = kind;
	return j;
}

struct regapply *regapply_start(struct weftd *d, void (*changed)(struct weftd *d))
{
	struct regapply *ra = calloc(1, sizeof(*ra));
	char err[256];

	if (!ra)
		return NULL;
	ra->d = d;
	ra->changed = changed;
	ra->writer = regcache_clone(d->reg, err, sizeof(err));
	ra->thread = ra->writer ? chores_start() : NULL;
	if (!ra->thread) {
		regcache_free(ra->writer);
		free(ra);
		errno = ENOMEM;
		return NULL;
	}
	return ra;
}

void regapply_msg(struct regapply *ra, const uint8_t *msg, size_t len)
{
	struct regapply_job *j = regapply_job_new(ra, RA_UPDATE);

	if (j && (ra->pending >= REGAPPLY_PENDING_MAX ||
		  ra->pending_bytes + len > REGAPPLY_BYTES_MAX)) {
		log_error("registry update dropped: %u updates (%zu bytes) still wait for the "
			  "control thread; deltas refused until the next snapshot", ra->pending,
			  ra->pending_bytes);
		ra->lost = 1;
		free(j);
		return;
	}
	if (j)
		j->msg = malloc(len ? len : 1);
	if (!j || !j->msg) {
		free(j);
		log_error("registry update dropped: out of memory; deltas refused until the next "
			  "snapshot");
		ra->lost = 1;
		return;
	}
	memcpy(j->msg, msg, len);
	j->len = len;
	j->after_loss = ra->lost;
	ra->lost = 0;
	ra->pending++;
	ra->pending_bytes += len;
	atomic_fetch_add(&ra->queued, 1);
	regapply_add(ra, j);
}

void regapply_snapshot(struct regapply *ra, void (*done)(struct weftd *d, uint8_t *buf,
							  size_t len))
{
	struct regapply_job *j = regapply_job_new(ra, RA_SNAPSHOT);

	if (!j) {
		done(ra->d, NULL, 0);
		return;
	}
	j->snap_done = done;
	regapply_add(ra, j);
}

unsigned regapply_pending(const struct regapply *ra)
{
	return ra ? ra->pending : 0;
}

double regapply_last_ms(const struct regapply *ra)
{
	return ra ? ra->last_ms : 0;
}

void regapply_stop(struct regapply *ra)
{
	if (!ra)
		return;
	chores_stop(ra->thread);
	regcache_free(ra->writer);
	free(ra);
}
