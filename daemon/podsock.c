/* SPDX-License-Identifier: Apache-2.0 */
/* A pod's reserve of delivery sockets (podsock.h). Per family: a small
 * stack of fds, a target size, at most one refill on the chores thread at a
 * time. The reserve is reference-counted: the pod holds one reference, a
 * refill in flight another, so a pod deleted meanwhile costs nothing but
 * the refill's sockets being closed when it returns. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <weft/chores.h>
#include <weft/listener.h>
#include <weft/log.h>
#include <weft/netns.h>

#include "podsock.h"
#include "weftd.h"

/* A pod starts with a few sockets per family; each time a connection finds
 * the reserve empty the target doubles, up to the cap, and a quiet trim
 * period brings it back. Idle unconnected sockets cost an fd and ~2 KB of
 * kernel memory each. */
#define PODSOCK_BASE 4
#define PODSOCK_MAX 64

struct podsock_fam {
	int fd[PODSOCK_MAX];
	unsigned n;
	unsigned target;
	unsigned long taken;		/* since the last trim */
	int refilling;
	int grew;			/* target doubled since the last refill */
};

struct podsock {
	struct weftd *d;
	int netns_fd;
	unsigned refs;
	int closed;
	struct podsock_fam fam[2];	/* AF_INET, AF_INET6 */
};

struct podsock_refill {
	struct chore c;
	struct podsock *ps;
	int nsfd;			/* a dup of the pod's, closed after */
	int family;
	int want;
	int made;			/* or -errno */
	int fd[PODSOCK_MAX];
};

static int podsock_fam_index(int family)
{
	return family == AF_INET6;
}

static void podsock_unref(struct podsock *ps)
{
	if (--ps->refs)
		return;
	for (int f = 0; f < 2; f++)
		while (ps->fam[f].n)
			close(ps->fam[f].fd[--ps->fam[f].n]);
	free(ps);
}

static void podsock_refill(struct podsock *ps, int family);

static void podsock_refill_run(struct chore *c)
{
	struct podsock_refill *r = (struct podsock_refill *)c;

	r->made = netns_sockets(r->nsfd, r->family, SOCK_STREAM | SOCK_NONBLOCK, 0, WEFTD_MARK,
				r->fd, r->want);
	close(r->nsfd);
}

static void podsock_refill_done(struct chore *c)
{
	struct podsock_refill *r = (struct podsock_refill *)c;
	struct podsock *ps = r->ps;
	struct podsock_fam *fm = &ps->fam[podsock_fam_index(r->family)];
	int i = 0, kept_all;

	fm->refilling = 0;
	if (r->made < 0) {
		static struct log_rl rl = LOG_RL_INIT;

		log_warn_rl(&rl, "delivery sockets could not be made ahead: %s",
			    strerror(-r->made));
	}
	fm->grew = 0;
	/* Up to the target as it is now (a trim may have lowered it). A
	 * reserve must not eat the fd headroom that the listeners keep for
	 * the agent, tunnels and state files: fds are handed out lowest
	 * first, so one past half the ceiling means the process is busy with
	 * fds, and it is closed instead of kept. */
	for (; !ps->closed && i < r->made && fm->n < fm->target; i++) {
		if ((unsigned long)r->fd[i] >= listener_fd_ceiling() / 2)
			break;
		fm->fd[fm->n++] = r->fd[i];
	}
	kept_all = i == r->made;
	for (; i < r->made; i++)
		close(r->fd[i]);
	/* Taken meanwhile, or the target grew: go on filling, unless the
	 * fd budget stopped this one. */
	if (r->made > 0 && kept_all)
		podsock_refill(ps, r->family);
	free(r);
	podsock_unref(ps);
}

static void podsock_refill(struct podsock *ps, int family)
{
	struct podsock_fam *fm = &ps->fam[podsock_fam_index(family)];
	struct podsock_refill *r;

	if (fm->refilling || ps->closed || fm->n >= fm->target || !ps->d->chores)
		return;

	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->nsfd = fcntl(ps->netns_fd, F_DUPFD_CLOEXEC, 0);
	if (r->nsfd < 0) {
		free(r);
		return;
	}
	r->c.run = podsock_refill_run;
	r->c.done = podsock_refill_done;
	r->ps = ps;
	r->family = family;
	r->want = (int)(fm->target - fm->n);
	fm->refilling = 1;
	ps->refs++;
	chores_add(ps->d->chores, &r->c, ps->d->loop);
}

struct podsock *podsock_new(struct weftd *d, int netns_fd, unsigned fams)
{
	struct podsock *ps = calloc(1, sizeof(*ps));

	if (!ps)
		return NULL;
	ps->d = d;
	ps->netns_fd = netns_fd;
	ps->refs = 1;
	for (int f = 0; f < 2; f++)
		ps->fam[f].target = PODSOCK_BASE;
	if (fams & 1)
		podsock_refill(ps, AF_INET);
	if (fams & 2)
		podsock_refill(ps, AF_INET6);
	return ps;
}

void podsock_netns(struct podsock *ps, int netns_fd)
{
	if (ps)
		ps->netns_fd = netns_fd;
}

int podsock_take(struct podsock *ps, struct weftd *d, int netns_fd, int family)
{
	struct podsock_fam *fm;
	int fd;

	if (!ps || (family != AF_INET && family != AF_INET6)) {
		d->stats.sockets_in_place++;
		return netns_socket(netns_fd, family, SOCK_STREAM | SOCK_NONBLOCK, 0, WEFTD_MARK);
	}
	fm = &ps->fam[podsock_fam_index(family)];
	fm->taken++;
	if (fm->n) {
		fd = fm->fd[--fm->n];
		d->stats.sockets_ahead++;
	} else {
		/* A burst beyond the reserve: this one in place, a reserve
		 * twice as big for the next (once per refill). */
		if (!fm->grew && fm->target < PODSOCK_MAX) {
			fm->target *= 2;
			fm->grew = 1;
		}
		d->stats.sockets_in_place++;
		fd = netns_socket(netns_fd, family, SOCK_STREAM | SOCK_NONBLOCK, 0, WEFTD_MARK);
	}
	if (fm->n <= fm->target / 2)
		podsock_refill(ps, family);
	return fd;
}

void podsock_trim(struct podsock *ps)
{
	if (!ps)
		return;
	for (int f = 0; f < 2; f++) {
		struct podsock_fam *fm = &ps->fam[f];

		if (!fm->taken && fm->target > PODSOCK_BASE)
			fm->target = PODSOCK_BASE;
		while (fm->n > fm->target)
			close(fm->fd[--fm->n]);
		fm->taken = 0;
	}
}

unsigned podsock_ready(const struct podsock *ps)
{
	return ps ? ps->fam[0].n + ps->fam[1].n : 0;
}

void podsock_close(struct podsock *ps)
{
	if (!ps)
		return;
	ps->closed = 1;
	podsock_unref(ps);
}
