/* SPDX-License-Identifier: Apache-2.0 */
/* Listening sockets on the io_uring loop: one accept in flight at a time (so
 * the kernel never takes more fds than we have seen), pauses with a backoff when the process is out of file
 * descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) instead of spinning,
 * and closes only once its operations have completed. Also a bounded count of
 * pending connections per source address (TLS handshakes not yet done, open
 * admin requests). */
#ifndef WEFT_LISTENER_H
#define WEFT_LISTENER_H

#include <stdint.h>
#include <sys/socket.h>

#include <weft/log.h>
#include <weft/loop.h>

struct listener;

/* An accepted socket (non-blocking, close-on-exec), now the callee's. */
typedef void (*listener_accept_cb)(struct listener *ls, int fd);
/* After listener_close, once no operation of ls is in flight; called from a
 * loop task, so the owner may free the memory holding ls. */
typedef void (*listener_closed_cb)(struct listener *ls);

#define LISTENER_BACKOFF_MIN_MS 50u
#define LISTENER_BACKOFF_MAX_MS 2000u

/* Embed in the owner; fields are private to listener.c. */
struct listener {
	struct loop *l;
	int fd;
	listener_accept_cb on_accept;
	listener_closed_cb on_closed;
	void *udata;
	unsigned flags;			/* LISTENER_F_* in listener.c */
	unsigned backoff_ms;		/* next pause; LISTENER_BACKOFF_MIN_MS after a success */
	unsigned errors;		/* consecutive failed accepts */
	unsigned long paused;		/* times accepting paused (tests, metrics) */
	unsigned long refused;		/* connections reset at the fd ceiling */
	struct loop_op accept_op;
	struct loop_op cancel_op;
	struct loop_timer retry;
	struct loop_task closed_task;
	char name[96];			/* for logs: "HBONE listener 172.30.0.2:15008" */
	struct listener *gnext, *gprev;	/* the process's ordinary listeners */
};

/* At start: the soft RLIMIT_NOFILE up to the hard limit (the default 1024
 * is a few hundred connections for a proxy), logged once as old -> new.
 * 0 or -errno. */
int listener_nofile_raise(void);

/* Accepted sockets get fds below this: the soft RLIMIT_NOFILE less a
 * reserve (1/16 of it, 16..1024) kept for tunnels, upstream sockets and
 * files. One over it is reset and its listener pauses. */
unsigned long listener_fd_ceiling(void);
/* RLIMIT_NOFILE changed (setrlimit, tests): read it again now. weftd reads
 * it at listener_nofile_raise, and again on EMFILE or at the ceiling. */
void listener_fd_limit_reread(void);

/* A listening TCP socket (SO_REUSEADDR, non-blocking, close-on-exec) on sa;
 * fd or -errno. */
int listener_socket(const struct sockaddr *sa, socklen_t len, int backlog);

/* Start accepting on fd (listening; ls takes it, also on failure). name is
 * copied for logs. Never fails: if no SQE can be had it retries after a
 * pause. on_closed may be NULL. */
void listener_start(struct listener *ls, struct loop *l, int fd, const char *name,
		    listener_accept_cb on_accept, listener_closed_cb on_closed, void *udata);
/* ls serves a few capped connections an operator needs most when the
 * process is exhausted (admin API, readiness, the CNI socket): it may
 * accept into the fd reserve, up to the limit itself. */
void listener_use_reserve(struct listener *ls);
/* Stop accepting: cancels the accept, closes the socket once it has ended,
 * then on_closed (from a task). Idempotent. */
void listener_close(struct listener *ls);
/* At exit, when the loop will not run again: close the socket and disarm
 * the timer at once, no callback. */
void listener_deinit(struct listener *ls);
/* 1 while accepting is paused by a resource shortage. */
int listener_paused(const struct listener *ls);
void *listener_udata(const struct listener *ls);

/* Pending connections per source address: at most per_addr for one IP and
 * total in all. Fixed size (sized from total at creation), no allocation
 * afterwards. */
struct listener_pending;

struct listener_pending *listener_pending_new(unsigned total, unsigned per_addr);
void listener_pending_free(struct listener_pending *p);
/* Count one more for sa's IP (the port is ignored; peers of a unix socket
 * are all one address): 0, -EBUSY when that IP has per_addr already,
 * -ENOSPC when total is reached. */
int listener_pending_take(struct listener_pending *p, const struct sockaddr *sa);
/* Give back one taken for sa's IP. */
void listener_pending_drop(struct listener_pending *p, const struct sockaddr *sa);
unsigned listener_pending_count(const struct listener_pending *p);
/* For the log line of a refusal: what errno EBUSY / ENOSPC from
 * listener_pending_take (or conn_accept with conn_opts.pending) means, or
 * NULL for any other errno. */
const char *listener_pending_refusal(int err);
unsigned listener_pending_of(const struct listener_pending *p, const struct sockaddr *sa);

#endif
