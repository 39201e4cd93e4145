/* SPDX-License-Identifier: Apache-2.0 */
/* A stream connection on the io_uring loop, plain TCP or TLS behind one
 * interface: the upper layer sees plaintext in on_data and writes plaintext
 * with conn_write. Buffers are bounded; a full input pauses reading. */
#ifndef WEFT_CONN_H
#define WEFT_CONN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct tls_ctx;
struct tls;
struct conn;
struct listener_pending;

struct conn_handler {
	/* TCP connected (client) and TLS handshake done, peer verified. */
	void (*on_ready)(struct conn *c);
	/* Plaintext arrived. Return how many bytes were consumed; the rest is
	 * offered again with the next data (reading pauses while the kept bytes
	 * fill the input buffer). */
	size_t (*on_data)(struct conn *c, const uint8_t *p, size_t n);
	/* Output fell below the low-water mark after conn_out_space() was 0. */
	void (*on_writable)(struct conn *c);
	/* The peer closed its sending side (FIN or close_notify). NULL: close. */
	void (*on_eof)(struct conn *c);
	/* Last call; the conn is freed once its in-flight operations finish.
	 * err is 0 for an orderly close, else -errno; why says it in words. */
	void (*on_close)(struct conn *c, int err, const char *why);
};

struct conn_opts {
	size_t out_cap;			/* soft cap on queued output, bytes (default 256 KiB) */
	uint32_t handshake_timeout_ms;	/* 0: default 10 s */
	uint32_t idle_timeout_ms;	/* 0: none */
	size_t recv_max;		/* plain TCP: bytes per recv, 0: 16 KiB */
	/* conn_accept: count the connection against its source address in
	 * pending (lib/listener.h) until its TLS handshake is over (plain TCP:
	 * until it closes) or it closes; when that is full conn_accept closes
	 * fd and returns NULL with errno EBUSY (per-address cap) or ENOSPC. */
	struct listener_pending *pending;
};

/* Take ownership of an accepted socket; tls may be NULL for plain TCP.
 * Returns NULL (fd closed) with errno ENOMEM when out of memory, or EBUSY /
 * ENOSPC when o->pending refuses the peer. The handshake timeout counts from
 * here and is not extended by the peer's bytes: an absolute deadline. */
struct conn *conn_accept(struct loop *l, int fd, struct tls_ctx *tls,
			 const struct conn_handler *h, const struct conn_opts *o, void *udata);
/* Connect a new socket to sa (copied); sni and expect_id for TLS clients
 * (either may be NULL). mark != 0 sets SO_MARK. */
struct conn *conn_connect(struct loop *l, const struct sockaddr *sa, socklen_t salen,
			  uint32_t mark, struct tls_ctx *tls, const char *sni,
			  const char *expect_id, const struct conn_handler *h,
			  const struct conn_opts *o, void *udata);

/* Same with a socket the caller made (e.g. inside another network
 * namespace); takes ownership of fd, also on failure. */
struct conn *conn_connect_fd(struct loop *l, int fd, const struct sockaddr *sa,
			     socklen_t salen, struct tls_ctx *tls, const char *sni,
			     const char *expect_id, const struct conn_handler *h,
			     const struct conn_opts *o, void *udata);

/* Same with a socket that is connected already (one end of a socketpair
 * whose other end carries the bytes elsewhere, e.g. into a tunnel's
 * stream); peer names it in logs. The handshake starts from a loop task.
 * Takes fd, also on failure (NULL with errno). */
struct conn *conn_start_fd(struct loop *l, int fd, const char *peer, struct tls_ctx *tls,
			   const char *sni, const char *expect_id, const struct conn_handler *h,
			   const struct conn_opts *o, void *udata);

/* Queue plaintext. 0, or -ENOBUFS past 4x the soft cap (caller waits for
 * on_writable), -EPIPE once closing. */
int conn_write(struct conn *c, const void *p, size_t n);
/* Bytes that may be written before the soft cap; 0 means wait. */
size_t conn_out_space(const struct conn *c);
/* Stop/resume reading (flow control from the upper layer). */
void conn_pause(struct conn *c, int paused);
/* Half-close: send FIN once queued output is out; reading goes on and
 * conn_write fails with -EPIPE from now. (TLS conns: same as conn_close.) */
void conn_shutdown(struct conn *c);
/* Flush queued output, then close (bounded by a 5 s timer). */
void conn_close(struct conn *c, int err, const char *why);
/* Close now, dropping queued output; the peer sees a reset. */
void conn_abort(struct conn *c, int err, const char *why);

void *conn_udata(const struct conn *c);
void conn_set_udata(struct conn *c, void *udata);
struct tls *conn_tls(const struct conn *c);		/* NULL for plain TCP */
const struct sockaddr_storage *conn_peer_addr(const struct conn *c);
/* "ip:port" of the peer, for logs. */
const char *conn_peer_str(const struct conn *c);
struct loop *conn_loop(const struct conn *c);
/* Number of live conns (tests, metrics). */
unsigned long conn_live_count(void);

#endif
