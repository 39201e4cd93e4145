/* SPDX-License-Identifier: Apache-2.0 */
/* Listening sockets: one accept in flight per listener, re-armed after each
 * completion; on a resource shortage accepting pauses for a backoff that
 * doubles up to LISTENER_BACKOFF_MAX_MS and resets on the next success, so an
 * fd-exhausted daemon waits instead of spinning through accept errors. And
 * the per-source-address count of pending connections. */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <unistd.h>

#include <weft/listener.h>
#include <weft/log.h>
#include <weft/loop.h>

#define LISTENER_F_ARMED	(1u << 0)	/* an accept is in flight */
#define LISTENER_F_CANCELLING	(1u << 1)	/* our cancel of it is in flight */
#define LISTENER_F_CLOSING	(1u << 2)	/* listener_close was called */
#define LISTENER_F_PAUSED	(1u << 3)	/* the retry timer is armed */
#define LISTENER_F_DONE		(1u << 4)	/* on_closed queued */
#define LISTENER_F_RESERVE	(1u << 5)	/* may accept into the fd reserve */

/* The fd reserve: accepted sockets may take the process's descriptors only
 * up to its soft RLIMIT_NOFILE minus this many, which stay for what
 * accepted connections need next (a tunnel, an upstream socket, the agent,
 * a file). A multishot accept would let the kernel take a whole backlog's
 * worth of fds in one go before we see the first (measured: 100 queued
 * connections went straight to EMFILE past the ceiling), so every accept
 * is one-shot: at most one fd in flight per listener, and the reserve must
 * exceed the number of ordinary listeners (two per pod, the HBONE one).
 * At the ceiling the fd is reset and every ordinary listener pauses, as on
 * EMFILE. The state is the process's (its fds are): listeners live on one
 * loop thread. */
#define LISTENER_RESERVE_MIN 16u
#define LISTENER_RESERVE_MAX 1024u

static unsigned long listener_ceiling;	/* 0: not read yet */
static unsigned long listener_reserve;
static struct listener *listener_list;	/* the ordinary (not F_RESERVE) ones */

/* Errors other than a resource shortage (ECONNABORTED, EPROTO, ...) belong to
 * one connection and re-arm at once; this many in a row pause all the same. */
#define LISTENER_ERRORS_MAX 16

static void listener_arm(struct listener *ls);
static void listener_cancel(struct listener *ls);
static void listener_ceiling_read(void);

static struct listener *listener_of_op(struct loop_op *op, size_t off)
{
	return (struct listener *)((char *)op - off);
}

int listener_socket(const struct sockaddr *sa, socklen_t len, int backlog)
{
	int one = 1, fd, err;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		err = -errno;
		close(fd);
		return err;
	}
	return fd;
}

int listener_nofile_raise(void)
{
	struct rlimit rl;
	rlim_t old;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	old = rl.rlim_cur;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			int err = -errno;

			log_warn("RLIMIT_NOFILE stays %llu: raising it to its hard limit %llu: %s",
				 (unsigned long long)old, (unsigned long long)rl.rlim_max,
				 strerror(-err));
			listener_ceiling_read();
			return err;
		}
	}
	listener_ceiling_read();
	log_info("RLIMIT_NOFILE %llu -> %llu (the hard limit); accepted connections may use "
		 "fds below %lu, the rest stay for tunnels and upstream connections",
		 (unsigned long long)old, (unsigned long long)rl.rlim_cur, listener_ceiling);
	return 0;
}

/* RLIMIT_NOFILE's soft limit less the reserve (limit / 16, within
 * LISTENER_RESERVE_MIN..MAX); a limit too small for a reserve has none. */
static void listener_ceiling_read(void)
{
	struct rlimit rl;
	unsigned long lim, reserve;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > (1ul << 30))
		lim = 1ul << 30;
	else
		lim = rl.rlim_cur;
	reserve = lim / 16;
	if (reserve < LISTENER_RESERVE_MIN)
		reserve = LISTENER_RESERVE_MIN;
	if (reserve > LISTENER_RESERVE_MAX)
		reserve = LISTENER_RESERVE_MAX;
	listener_ceiling = lim > 2 * reserve ? lim - reserve : lim;
	listener_reserve = lim > 2 * reserve ? reserve : 0;
}

void listener_fd_limit_reread(void)
{
	listener_ceiling_read();
}

unsigned long listener_fd_ceiling(void)
{
	if (!listener_ceiling)
		listener_ceiling_read();
	return listener_ceiling;
}

/* fd at or over the ceiling; the limit is read again before saying so
 * (it may have been raised since). */
static int listener_over(unsigned long fd)
{
	if (fd < listener_fd_ceiling())
		return 0;
	listener_ceiling_read();
	return fd >= listener_ceiling;
}

static int listener_resource_error(int err)
{
	return err == -EMFILE || err == -ENFILE || err == -ENOBUFS || err == -ENOMEM;
}

/* Wait backoff_ms before accepting again, and double the next wait. */
static void listener_backoff(struct listener *ls)
{
	ls->flags |= LISTENER_F_PAUSED;
	ls->paused++;
	loop_timer_arm(ls->l, &ls->retry, ls->backoff_ms);
	ls->backoff_ms *= 2;
	if (ls->backoff_ms > LISTENER_BACKOFF_MAX_MS)
		ls->backoff_ms = LISTENER_BACKOFF_MAX_MS;
}

static void listener_pause(struct listener *ls, int err)
{
	static struct log_rl rl = LOG_RL_INIT;

	log_warn_rl(&rl, "%s: accept failed: %s; accepting paused for %u ms", ls->name,
		    strerror(-err), ls->backoff_ms);
	if (err == -EMFILE)
		listener_ceiling_read();	/* the limit is lower than we thought */
	listener_backoff(ls);
}

static void listener_arm(struct listener *ls)
{
	int err = loop_accept_one(ls->l, &ls->accept_op, ls->fd);

	if (err < 0) {
		listener_pause(ls, err);
		return;
	}
	ls->flags |= LISTENER_F_ARMED;
}

static void listener_link(struct listener *ls)
{
	ls->gprev = NULL;
	ls->gnext = listener_list;
	if (listener_list)
		listener_list->gprev = ls;
	listener_list = ls;
}

static void listener_unlink(struct listener *ls)
{
	if (ls->gprev)
		ls->gprev->gnext = ls->gnext;
	else if (listener_list == ls)
		listener_list = ls->gnext;
	if (ls->gnext)
		ls->gnext->gprev = ls->gprev;
	ls->gnext = ls->gprev = NULL;
}

/* An ordinary listener accepted fd at or over the ceiling (or while
 * paused: completions on their way while a cancel travels): reset it, and
 * pause every ordinary listener that is not paused yet. */
static void listener_over_ceiling(struct listener *ls, int fd)
{
	static struct log_rl rl = LOG_RL_INIT;
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
	ls->refused++;
	if (ls->flags & LISTENER_F_PAUSED)
		return;
	log_warn_rl(&rl, "%s: fd %d reached the ceiling %lu (RLIMIT_NOFILE less %lu kept for "
		    "tunnels and upstream connections): connection reset, accepting paused for "
		    "%u ms", ls->name, fd, listener_ceiling, listener_reserve, ls->backoff_ms);
	for (struct listener *x = listener_list; x; x = x->gnext) {
		if (x->flags & (LISTENER_F_PAUSED | LISTENER_F_CLOSING))
			continue;
		listener_backoff(x);
		listener_cancel(x);
	}
}

static void listener_on_closed_task(struct loop_task *t)
{
	struct listener *ls = (struct listener *)((char *)t - offsetof(struct listener,
								       closed_task));

	if (ls->on_closed)
		ls->on_closed(ls);
}

/* Once closing and nothing of ours is in flight: the socket goes (the accept
 * held it, so closing earlier would keep it listening), then on_closed. */
static void listener_maybe_closed(struct listener *ls)
{
	if (!(ls->flags & LISTENER_F_CLOSING) || (ls->flags & LISTENER_F_ARMED))
		return;
	if (ls->fd >= 0) {
		close(ls->fd);
		ls->fd = -1;
	}
	if (ls->flags & (LISTENER_F_CANCELLING | LISTENER_F_DONE))
		return;
	ls->flags |= LISTENER_F_DONE;
	loop_task_queue(ls->l, &ls->closed_task);
}

/* Called again for every completion that still has F_MORE: a cancel can miss
 * a request whose completion is being posted at that moment. */
static void listener_cancel(struct listener *ls)
{
	if ((ls->flags & LISTENER_F_CANCELLING) || !(ls->flags & LISTENER_F_ARMED))
		return;
	if (loop_cancel_fd(ls->l, &ls->cancel_op, ls->fd) == 0)
		ls->flags |= LISTENER_F_CANCELLING;
}

static void listener_on_cancel(struct loop_op *op, int res, unsigned flags)
{
	struct listener *ls = listener_of_op(op, offsetof(struct listener, cancel_op));

	(void)res;
	(void)flags;
	ls->flags &= ~LISTENER_F_CANCELLING;
	listener_maybe_closed(ls);
}

static void listener_on_retry(struct loop_timer *t)
{
	struct listener *ls = (struct listener *)((char *)t - offsetof(struct listener, retry));

	ls->flags &= ~LISTENER_F_PAUSED;
	/* An accept still armed (its cancel not through yet) goes on. */
	if (!(ls->flags & (LISTENER_F_CLOSING | LISTENER_F_ARMED)))
		listener_arm(ls);
}

static void listener_on_accept(struct loop_op *op, int res, unsigned flags)
{
	static struct log_rl rl = LOG_RL_INIT;
	struct listener *ls = listener_of_op(op, offsetof(struct listener, accept_op));

	if (!(flags & IORING_CQE_F_MORE))
		ls->flags &= ~LISTENER_F_ARMED;
	if (res >= 0) {
		if (ls->flags & LISTENER_F_CLOSING) {
			close(res);
		} else if (!(ls->flags & LISTENER_F_RESERVE) &&
			   (listener_over((unsigned long)res) ||
			    (ls->flags & LISTENER_F_PAUSED))) {
			listener_over_ceiling(ls, res);
		} else {
			ls->errors = 0;
			ls->backoff_ms = LISTENER_BACKOFF_MIN_MS;
			ls->on_accept(ls, res);		/* may call listener_close */
		}
	} else if (!(ls->flags & LISTENER_F_CLOSING)) {
		ls->errors++;
		if (!listener_resource_error(res) && res != -ECANCELED)
			log_warn_rl(&rl, "%s: accept failed: %s", ls->name, strerror(-res));
	}
	if (ls->flags & LISTENER_F_CLOSING) {
		listener_cancel(ls);
		listener_maybe_closed(ls);
		return;
	}
	if (ls->flags & (LISTENER_F_ARMED | LISTENER_F_PAUSED))
		return;
	/* The accept ended. A shortage of fds or memory, a cancel that
	 * was not ours or a run of errors: wait; otherwise re-arm at once. */
	if (res < 0 && (listener_resource_error(res) || res == -ECANCELED ||
			ls->errors > LISTENER_ERRORS_MAX))
		listener_pause(ls, res);
	else
		listener_arm(ls);
}

void listener_start(struct listener *ls, struct loop *l, int fd, const char *name,
		    listener_accept_cb on_accept, listener_closed_cb on_closed, void *udata)
{
	memset(ls, 0, sizeof(*ls));
	ls->l = l;
	ls->fd = fd;
	ls->on_accept = on_accept;
	ls->on_closed = on_closed;
	ls->udata = udata;
	ls->backoff_ms = LISTENER_BACKOFF_MIN_MS;
	ls->accept_op.cb = listener_on_accept;
	ls->cancel_op.cb = listener_on_cancel;
	ls->retry.cb = listener_on_retry;
	ls->closed_task.cb = listener_on_closed_task;
	snprintf(ls->name, sizeof(ls->name), "%s", name);
	listener_link(ls);
	listener_arm(ls);
}

void listener_use_reserve(struct listener *ls)
{
	if (!(ls->flags & LISTENER_F_RESERVE))
		listener_unlink(ls);
	ls->flags |= LISTENER_F_RESERVE;
}

void listener_close(struct listener *ls)
{
	if (!ls->l || (ls->flags & LISTENER_F_CLOSING))
		return;
	if (!(ls->flags & LISTENER_F_RESERVE))
		listener_unlink(ls);
	ls->flags |= LISTENER_F_CLOSING;
	if (ls->flags & LISTENER_F_PAUSED) {
		loop_timer_disarm(ls->l, &ls->retry);
		ls->flags &= ~LISTENER_F_PAUSED;
	}
	listener_cancel(ls);
	listener_maybe_closed(ls);
}

void listener_deinit(struct listener *ls)
{
	if (!ls->l)
		return;
	if (!(ls->flags & (LISTENER_F_RESERVE | LISTENER_F_CLOSING)))
		listener_unlink(ls);
	loop_timer_disarm(ls->l, &ls->retry);
	if (ls->fd >= 0)
		close(ls->fd);
	ls->fd = -1;
	ls->flags = LISTENER_F_CLOSING | LISTENER_F_DONE;
}

int listener_paused(const struct listener *ls)
{
	return !!(ls->flags & LISTENER_F_PAUSED);
}

void *listener_udata(const struct listener *ls)
{
	return ls->udata;
}

/* --- pending connections per source address -------------------------------- */

/* An open-addressing table (linear probing, backward-shift deletion) of the
 * addresses with at least one pending connection: at most `total` of them,
 * in twice as many slots, so a probe stays short. The hash is keyed by a
 * random seed: peers choose their addresses. */
struct listener_pending_slot {
	uint8_t ip[16];			/* IPv4 as ::ffff:a.b.c.d */
	unsigned n;			/* 0: free */
};

struct listener_pending {
	unsigned total, per_addr;
	unsigned count;			/* pending in all */
	unsigned mask;			/* slots - 1 */
	uint64_t seed;
	struct listener_pending_slot slot[];
};

struct listener_pending *listener_pending_new(unsigned total, unsigned per_addr)
{
	struct listener_pending *p;
	unsigned slots = 16;

	if (!total || !per_addr || total > (1u << 24))
		return NULL;
	while (slots < total * 2)
		slots *= 2;
	p = calloc(1, sizeof(*p) + slots * sizeof(p->slot[0]));
	if (!p)
		return NULL;
	p->total = total;
	p->per_addr = per_addr;
	p->mask = slots - 1;
	if (getrandom(&p->seed, sizeof(p->seed), GRND_NONBLOCK) != sizeof(p->seed))
		p->seed = (uint64_t)(uintptr_t)p ^ 0x9e3779b97f4a7c15ull;
	return p;
}

void listener_pending_free(struct listener_pending *p)
{
	free(p);
}

/* sa's IP as 16 bytes. Other families (a unix socket's peers) are all one
 * address, ::, which no TCP peer has. */
static void listener_pending_key(const struct sockaddr *sa, uint8_t ip[16])
{
	if (sa->sa_family == AF_INET) {
		memset(ip, 0, 10);
		ip[10] = ip[11] = 0xff;
		memcpy(ip + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(ip, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
	} else {
		memset(ip, 0, 16);
	}
}

static unsigned listener_pending_hash(const struct listener_pending *p, const uint8_t ip[16])
{
	uint64_t a, b, h;

	memcpy(&a, ip, 8);
	memcpy(&b, ip + 8, 8);
	h = (a ^ p->seed) * 0xff51afd7ed558ccdull;
	h ^= (b + (p->seed >> 7)) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 29;
	return (unsigned)h & p->mask;
}

/* The slot holding ip, or the free slot where it would go. */
static unsigned listener_pending_find(const struct listener_pending *p, const uint8_t ip[16])
{
	unsigned i = listener_pending_hash(p, ip);

	while (p->slot[i].n && memcmp(p->slot[i].ip, ip, 16))
		i = (i + 1) & p->mask;
	return i;
}

int listener_pending_take(struct listener_pending *p, const struct sockaddr *sa)
{
	uint8_t ip[16];
	unsigned i;

	listener_pending_key(sa, ip);
	i = listener_pending_find(p, ip);
	if (p->slot[i].n >= p->per_addr)
		return -EBUSY;
	if (p->count >= p->total)
		return -ENOSPC;
	if (!p->slot[i].n)
		memcpy(p->slot[i].ip, ip, 16);
	p->slot[i].n++;
	p->count++;
	return 0;
}

void listener_pending_drop(struct listener_pending *p, const struct sockaddr *sa)
{
	uint8_t ip[16];
	unsigned i, j;

	listener_pending_key(sa, ip);
	i = listener_pending_find(p, ip);
	if (!p->slot[i].n)
		return;		/* not ours: a caller bug, but never underflow */
	p->count--;
	if (--p->slot[i].n)
		return;
	/* Backward shift: move later entries of the run into the hole unless
	 * they already sit between their home and the hole. */
	for (j = (i + 1) & p->mask; p->slot[j].n; j = (j + 1) & p->mask) {
		unsigned home = listener_pending_hash(p, p->slot[j].ip);

		if (((j - home) & p->mask) >= ((j - i) & p->mask)) {
			p->slot[i] = p->slot[j];
			p->slot[j].n = 0;
			i = j;
		}
	}
}

unsigned listener_pending_count(const struct listener_pending *p)
{
	return p->count;
}

const char *listener_pending_refusal(int err)
{
	if (err < 0)
		err = -err;
	return err == EBUSY ? "too many pending from its address" :
	       err == ENOSPC ? "too many pending in all" : NULL;
}

unsigned listener_pending_of(const struct listener_pending *p, const struct sockaddr *sa)
{
	uint8_t ip[16];

	listener_pending_key(sa, ip);
	return p->slot[listener_pending_find(p, ip)].n;
}
