/* SPDX-License-Identifier: Apache-2.0 */
/* An HTTP/2 session over a conn: the glue between a conn (TCP or TLS on the
 * loop, lib/conn) and a pure session engine (h2tun, grpc_session,
 * grpcc_session) that the tunnel client, the HBONE server, the agent's gRPC
 * server and the agent client share: bytes in are fed to the session, the
 * session's output is flushed when there is room, a finished session closes
 * the conn, and memory goes only when nothing points at it any more.
 *
 * Who frees what (the rule every user follows):
 * - The owner embeds a struct h2conn in its own object and frees that object
 *   only in on_release, or at once when h2conn_accept/h2conn_connect failed
 *   (no hook ran), or when h2conn_detach returned 1.
 * - The h2conn owns the conn and the session. When the conn ends, on_close
 *   runs (the session is still there: streams can be looked at), then the
 *   session is freed with the engine's free, which ends every stream (their
 *   close callbacks run, a child may drop its reference from there).
 * - A child that can outlive one of the session's callbacks (a relay, a
 *   stream object with a task of its own) holds a reference (h2conn_hold,
 *   h2conn_put) and may read the owner's object until it puts it.
 * - on_release runs from a loop task, once the conn has closed and the last
 *   reference is gone, never inside another callback: exactly once.
 * - Nothing here frees the owner's memory by itself, and no hook runs after
 *   on_release. */
#ifndef WEFT_H2CONN_H
#define WEFT_H2CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <weft/conn.h>
#include <weft/loop.h>

struct h2conn;

/* A session engine: the session's own functions, over a void pointer. */
struct h2conn_engine {
	/* Bytes from the peer; < 0 (or != 0): a protocol error (the session
	 * has queued its GOAWAY). */
	int (*feed)(void *sess, const uint8_t *p, size_t n, uint64_t now_ms);
	/* Write what is queued through h2conn_send; < 0: the session failed. */
	int (*flush)(void *sess);
	/* Nonzero once neither side has anything more to say: close. */
	int (*done)(const void *sess);
	void (*free)(void *sess);
	/* The protocol error in words, or NULL (the hook may be NULL). */
	const char *(*error)(const void *sess);
};

struct h2conn_hooks {
	/* TCP (and TLS, peer verified) up. May create the session
	 * (h2conn_set_session) or refuse (h2conn_abort). Optional. */
	void (*on_ready)(struct h2conn *h);
	/* After bytes were fed and the output flushed (fed 1), and after each
	 * kick's flush (fed 0): timers that follow the session (call
	 * deadlines, the peer's last sign of life). Optional. */
	void (*on_serviced)(struct h2conn *h, int fed);
	/* The peer broke HTTP/2: why (the engine's words or a generic one)
	 * and the bytes that did it, for the log. The conn closes after.
	 * Optional. */
	void (*on_proto_error)(struct h2conn *h, const char *why, const uint8_t *p, size_t n);
	/* The conn ended (err 0: orderly); the session is freed right after. */
	void (*on_close)(struct h2conn *h, int err, const char *why);
	/* Last call: no conn, no session, no reference. Free the owner. */
	void (*on_release)(struct h2conn *h);
};

/* Embed in the owner; fields are private to h2conn.c. */
struct h2conn {
	struct loop *l;
	struct conn *conn;
	void *sess;
	const struct h2conn_engine *eng;
	const struct h2conn_hooks *hooks;
	void *udata;
	struct loop_task task;
	unsigned refs;
	unsigned flags;			/* H2CONN_F_* in h2conn.c */
};

/* Set up h (the session may come later, from on_ready). Never fails. */
void h2conn_init(struct h2conn *h, struct loop *l, const struct h2conn_hooks *hooks,
		 void *udata);
/* The session to drive (h2conn takes it): before the conn starts or from
 * on_ready. Its send/space functions are h2conn_send/h2conn_space with h. */
void h2conn_set_session(struct h2conn *h, const struct h2conn_engine *eng, void *sess);

/* Take an accepted socket / connect (see conn.h for the arguments). 0, or
 * -errno with no hook called and nothing left to free but the session and
 * the owner (errno as conn_accept leaves it, for listener_pending_refusal). */
int h2conn_accept(struct h2conn *h, int fd, struct tls_ctx *tls, const struct conn_opts *o);
int h2conn_connect(struct h2conn *h, const struct sockaddr *sa, socklen_t salen, uint32_t mark,
		   struct tls_ctx *tls, const char *sni, const char *expect_id,
		   const struct conn_opts *o);

/* The same over a socket that is connected already (conn_start_fd). */
int h2conn_start_fd(struct h2conn *h, int fd, const char *peer, struct tls_ctx *tls,
		    const char *sni, const char *expect_id, const struct conn_opts *o);

/* The engines' I/O, with io = the h2conn. */
int h2conn_send(void *io, const uint8_t *p, size_t n);
size_t h2conn_space(void *io);

/* Write the session's output now (no-op before ready or once closing). */
void h2conn_flush(struct h2conn *h);
/* The same from a loop task, after the current callback: what stream
 * users call when they queued something. */
void h2conn_kick(struct h2conn *h);
/* Send what is queued, then close (err 0), or close now dropping it (err <
 * 0, the peer sees a reset). Idempotent; on_close follows. */
void h2conn_close(struct h2conn *h, int err, const char *why);

void h2conn_hold(struct h2conn *h);
void h2conn_put(struct h2conn *h);

/* At exit, when the loop will not run again: free the session, abort the
 * conn without hooks. 1: the owner may free its memory now; 0: a task of
 * h's is queued in the loop, leave the memory to the process's end. */
int h2conn_detach(struct h2conn *h);

/* closing: h2conn_close was called or the conn ended; closed: it ended. */
int h2conn_closing(const struct h2conn *h);
int h2conn_closed(const struct h2conn *h);
struct conn *h2conn_conn(const struct h2conn *h);	/* NULL once closed */
void *h2conn_session(const struct h2conn *h);		/* NULL once closed */
void *h2conn_udata(const struct h2conn *h);

#endif
