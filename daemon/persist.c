/* SPDX-License-Identifier: Apache-2.0 */
/* State files through the chores thread (persist.h). Without one (unit
 * tests that build a bare struct weftd) the work runs in place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <weft/chores.h>
#include <weft/file.h>
#include <weft/log.h>

#include "persist.h"
#include "weftd.h"

struct persist_job {
	struct chore c;
	uint8_t *buf;			/* NULL: unlink */
	size_t len;
	unsigned *inflight;
	int err;
	char path[512];
	char what[96];
};

static void persist_run(struct chore *c)
{
	struct persist_job *j = (struct persist_job *)c;

	if (j->buf)
		j->err = file_write_atomic(j->path, j->buf, j->len, 0600);
	else if (unlink(j->path) < 0 && errno != ENOENT)
		j->err = -errno;
}

static void persist_done(struct chore *c)
{
	struct persist_job *j = (struct persist_job *)c;

	if (j->err)
		log_warn("cannot %s %s to %s: %s", j->buf ? "save" : "remove", j->what, j->path,
			 strerror(-j->err));
	if (j->inflight)
		(*j->inflight)--;
	free(j->buf);
	free(j);
}

static void persist_queue(struct weftd *d, struct persist_job *j)
{
	if (j->inflight)
		(*j->inflight)++;
	if (!d->chores) {
		persist_run(&j->c);
		persist_done(&j->c);
		return;
	}
	chores_add(d->chores, &j->c, d->loop);
}

static struct persist_job *persist_job_new(const char *path, const char *what)
{
	struct persist_job *j = calloc(1, sizeof(*j));

	if (!j)
		return NULL;
	j->c.run = persist_run;
	j->c.done = persist_done;
	snprintf(j->path, sizeof(j->path), "%s", path);
	snprintf(j->what, sizeof(j->what), "%s", what);
	return j;
}

void persist_write(struct weftd *d, const char *path, uint8_t *buf, size_t len,
		   const char *what, unsigned *inflight)
{
	struct persist_job *j = persist_job_new(path, what);

	if (!j) {
		log_warn("cannot save %s to %s: out of memory", what, path);
		free(buf);
		return;
	}
	/* file_write_atomic wants a real pointer for an empty file too. */
	j->buf = buf ? buf : malloc(1);
	j->len = len;
	j->inflight = inflight;
	if (!j->buf) {
		free(j);
		log_warn("cannot save %s to %s: out of memory", what, path);
		return;
	}
	persist_queue(d, j);
}

void persist_unlink(struct weftd *d, const char *path)
{
	struct persist_job *j = persist_job_new(path, "state file");

	/* Not in place: a write of the same file may still be queued, and
	 * would bring the record back after it. A record left behind names
	 * a netns that is gone, and the next start drops it. */
	if (!j) {
		log_warn("cannot remove %s: out of memory", path);
		return;
	}
	persist_queue(d, j);
}
