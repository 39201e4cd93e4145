/* SPDX-License-Identifier: Apache-2.0 */
/* Registry file watch: inotify on the file's folder (editors and
 * ConfigMap mounts replace files by rename, so watching the file itself
 * would lose track), read through the io_uring loop, debounced, reloaded
 * and handed to the change callback. A bad edit is logged with file:line
 * and the last good registry stays in service. */
#include <errno.h>
#include <stdbool.h>
#include <limits.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <weft/file.h>
#include <weft/log.h>
#include <weft/loop.h>

#include <weft/registry.h>
#include "regwatch.h"

#define REGISTRY_FILE_MAX (16u << 20)
#define REGWATCH_DEBOUNCE_MS 50

struct regwatch {
	struct loop *loop;
	char *path;
	char *dir;
	const char *base;		/* file name within dir */
	int ifd;			/* inotify */
	struct loop_op read_op;
	int read_inflight;
	struct loop_timer debounce;
	struct registry *reg;
	uint64_t version;
	uint64_t failures;		/* reloads refused */
	struct registry fed;		/* only its bundles and remotes: attached to each registry */
	bool fed_dirty;			/* changed since the last registry was made */
	unsigned char digest[crypto_generichash_BYTES];
	regwatch_change_fn on_change;
	void *arg;
	char evbuf[4096] __attribute__((aligned(8)));
};

static int regwatch_read_file(struct regwatch *rw, struct registry **out,
			      unsigned char digest[crypto_generichash_BYTES],
			      char *err, size_t errlen)
{
	size_t len;
	char *buf;
	int rc;

	rc = file_read(rw->path, REGISTRY_FILE_MAX, &buf, &len);
	if (rc) {
		snprintf(err, errlen, "%s: %s", rw->path,
			 rc == -EFBIG ? "larger than 16 MiB" : strerror(-rc));
		return rc;
	}
	crypto_generichash(digest, crypto_generichash_BYTES, (unsigned char *)buf, len, NULL, 0);
	*out = registry_parse(buf, len, rw->path, err, errlen);
	free(buf);
	return *out ? 0 : -EINVAL;
}

/* What every registry carries besides the file: a copy of the federated
 * bundles and a reference to the remote networks, into r (which has
 * neither). */
static int regwatch_attach(const struct regwatch *rw, struct registry *r)
{
	if (rw->fed.remotes)
		r->remotes = reg_remotes_ref(rw->fed.remotes);
	if (!rw->fed.n_bundles)
		return 0;
	r->bundles = calloc(rw->fed.n_bundles, sizeof(*r->bundles));
	if (!r->bundles)
		return -ENOMEM;
	for (size_t i = 0; i < rw->fed.n_bundles; i++) {
		r->bundles[i].trust_domain = strdup(rw->fed.bundles[i].trust_domain);
		r->bundles[i].pem = strdup(rw->fed.bundles[i].pem);
		r->n_bundles = i + 1;
		if (!r->bundles[i].trust_domain || !r->bundles[i].pem)
			return -ENOMEM;
	}
	return 0;
}

static void regwatch_detach(struct registry *r)
{
	registry_bundles_free(r);
	reg_remotes_unref(r->remotes);
	r->remotes = NULL;
}

static int bundles_same(const struct registry *r, const struct reg_bundle *b, size_t n)
{
	if (r->n_bundles != n)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (strcmp(r->bundles[i].trust_domain, b[i].trust_domain) ||
		    strcmp(r->bundles[i].pem, b[i].pem))
			return 0;
	return 1;
}

/* The bundles or the remote networks changed: they go out on the current
 * registry (the last good one when the file does not load, so that a
 * domain taken away is taken away now, whatever the state of the file). */
static int regwatch_publish_attached(struct regwatch *rw, const char *what)
{
	struct registry prev = *rw->reg, fresh = { 0 };

	if (regwatch_attach(rw, &fresh)) {
		regwatch_detach(&fresh);
		log_error("%s not published: out of memory", what);
		return -ENOMEM;
	}
	rw->reg->bundles = fresh.bundles;
	rw->reg->n_bundles = fresh.n_bundles;
	rw->reg->remotes = fresh.remotes;
	rw->fed_dirty = false;
	rw->version++;
	log_info("%s published on the last good registry: version %llu, %zu federated trust "
		 "domains, %zu remote networks", what, (unsigned long long)rw->version, fresh.n_bundles,
		 fresh.remotes ? fresh.remotes->n : 0);
	if (rw->on_change)
		rw->on_change(rw->arg, &prev, rw->reg, rw->version);
	regwatch_detach(&prev);
	return 0;
}

int regwatch_set_remotes(struct regwatch *rw, struct reg_remotes *rs)
{
	reg_remotes_unref(rw->fed.remotes);
	rw->fed.remotes = rs;
	return regwatch_publish_attached(rw, "remote networks");
}

int regwatch_set_bundles(struct regwatch *rw, struct reg_bundle *b, size_t n)
{
	int rc;

	if (bundles_same(&rw->fed, b, n)) {
		struct registry same = { .bundles = b, .n_bundles = n };

		registry_bundles_free(&same);
		return regwatch_reload(rw);	/* as SIGHUP expects */
	}
	registry_bundles_free(&rw->fed);
	rw->fed.bundles = b;
	rw->fed.n_bundles = n;
	rw->fed_dirty = true;
	rc = regwatch_reload(rw);
	if (rc == -EINVAL && rw->reg)
		return regwatch_publish_attached(rw, "federated bundles");
	return rc;
}

int regwatch_reload(struct regwatch *rw)
{
	unsigned char digest[crypto_generichash_BYTES];
	char err[REG_ERR_MAX];
	struct registry *next, *prev;

	if (regwatch_read_file(rw, &next, digest, err, sizeof(err))) {
		rw->failures++;
		log_error("registry not reloaded, keeping version %llu: %s",
			  (unsigned long long)rw->version, err);
		return -EINVAL;
	}
	if (!memcmp(digest, rw->digest, sizeof(digest)) && !rw->fed_dirty) {
		registry_free(next);
		return 0;
	}
	if (regwatch_attach(rw, next)) {
		registry_free(next);
		log_error("registry not reloaded, keeping version %llu: out of memory",
			  (unsigned long long)rw->version);
		return -ENOMEM;
	}
	rw->fed_dirty = false;
	memcpy(rw->digest, digest, sizeof(digest));
	prev = rw->reg;
	rw->reg = next;
	rw->version++;
	log_info("registry %s reloaded: version %llu, %zu nodes, %zu workloads, %zu services, "
		 "%zu policies, %zu federated trust domains", rw->path,
		 (unsigned long long)rw->version, next->n_nodes, next->n_workloads,
		 next->n_services, next->n_policies, next->n_bundles);
	if (rw->on_change)
		rw->on_change(rw->arg, prev, next, rw->version);
	registry_free(prev);
	return 0;
}

static void regwatch_on_debounce(struct loop_timer *t)
{
	struct regwatch *rw = (struct regwatch *)((char *)t - offsetof(struct regwatch, debounce));

	regwatch_reload(rw);
}

static int regwatch_arm_read(struct regwatch *rw);

static void regwatch_on_read(struct loop_op *op, int res, unsigned flags)
{
	struct regwatch *rw = (struct regwatch *)((char *)op - offsetof(struct regwatch, read_op));
	int ours = 0;

	(void)flags;
	rw->read_inflight = 0;
	if (rw->ifd < 0) {
		free(rw);	/* regwatch_free ran while the read was in flight */
		return;
	}
	if (res < 0) {
		if (res != -EINTR && res != -EAGAIN) {
			log_error("registry watch: inotify read failed: %s", strerror(-res));
			return;
		}
	}
	for (int off = 0; off + (int)sizeof(struct inotify_event) <= res;) {
		struct inotify_event *ev = (struct inotify_event *)(rw->evbuf + off);
		if (ev->len && !strcmp(ev->name, rw->base))
			ours = 1;
		if (ev->mask & IN_Q_OVERFLOW)
			ours = 1;
		off += sizeof(*ev) + ev->len;
	}
	/* Coalesce a burst of events (write + close + rename) into one reload. */
	if (ours)
		loop_timer_arm(rw->loop, &rw->debounce, REGWATCH_DEBOUNCE_MS);
	regwatch_arm_read(rw);
}

static int regwatch_arm_read(struct regwatch *rw)
{
	int err;

	rw->read_op.cb = regwatch_on_read;
	err = loop_read(rw->loop, &rw->read_op, rw->ifd, rw->evbuf, sizeof(rw->evbuf));
	if (!err)
		rw->read_inflight = 1;
	return err;
}

struct regwatch *regwatch_new(struct loop *l, const char *path,
			      regwatch_change_fn on_change, void *arg,
			      char *err, size_t errlen)
{
	struct regwatch *rw;
	char *slash;

	rw = calloc(1, sizeof(*rw));
	if (!rw)
		goto fail_oom;
	rw->loop = l;
	rw->ifd = -1;
	rw->on_change = on_change;
	rw->arg = arg;
	rw->debounce.cb = regwatch_on_debounce;
	rw->path = strdup(path);
	rw->dir = strdup(path);
	if (!rw->path || !rw->dir)
		goto fail_rw;
	slash = strrchr(rw->dir, '/');
	if (slash) {
		*slash = 0;
		rw->base = rw->path + (slash - rw->dir) + 1;
		if (!rw->dir[0])
			strcpy(rw->dir, "/");
	} else {
		strcpy(rw->dir, ".");
		rw->base = rw->path;
	}
	if (regwatch_read_file(rw, &rw->reg, rw->digest, err, errlen))
		goto fail_rw_quiet;
	rw->version = 1;
	rw->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (rw->ifd < 0 ||
	    inotify_add_watch(rw->ifd, rw->dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE |
			      IN_DELETE | IN_MODIFY) < 0 ||
	    regwatch_arm_read(rw)) {
		snprintf(err, errlen, "%s: cannot watch folder: %s", rw->dir, strerror(errno));
		goto fail_rw_quiet;
	}
	return rw;
fail_oom:
	snprintf(err, errlen, "%s: out of memory", path);
	return NULL;
fail_rw:
	snprintf(err, errlen, "%s: out of memory", path);
fail_rw_quiet:
	if (rw->ifd >= 0)
		close(rw->ifd);
	registry_free(rw->reg);
	free(rw->path);
	free(rw->dir);
	free(rw);
	return NULL;
}

void regwatch_free(struct regwatch *rw)
{
	if (!rw)
		return;
	loop_timer_disarm(rw->loop, &rw->debounce);
	registry_free(rw->reg);
	rw->reg = NULL;
	regwatch_detach(&rw->fed);
	free(rw->path);
	free(rw->dir);
	rw->path = rw->dir = NULL;
	/* Closing the inotify fd completes the pending read; its completion
	 * frees rw (an object lives until its operations have completed). */
	if (rw->read_inflight) {
		loop_cancel_fd(rw->loop, NULL, rw->ifd);
		close(rw->ifd);
		rw->ifd = -1;
		return;
	}
	close(rw->ifd);
	free(rw);
}

const struct registry *regwatch_current(const struct regwatch *rw, uint64_t *version)
{
	if (version)
		*version = rw->version;
	return rw->reg;
}

uint64_t regwatch_failures(const struct regwatch *rw)
{
	return rw->failures;
}
