/* SPDX-License-Identifier: Apache-2.0 */
/* The byte pump of every proxied connection: an app-side TCP conn (A)
 * joined to either another TCP conn (same-node delivery, passthrough) or
 * an HBONE stream (B). Copies both ways with bounded buffers (a slow
 * reader slows the writer), carries half-close (FIN) and reset each way,
 * counts bytes, and reports once when both sides are gone. */
#ifndef DAEMON_RELAY_H
#define DAEMON_RELAY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <weft/h2tun.h>

struct loop;
struct conn;
struct relay;

struct relay_stats {
	uint64_t a_to_b;		/* bytes the app side sent */
	uint64_t b_to_a;
	uint64_t start_ms, end_ms;
	int reset;			/* ended by a reset (either side) */
	const char *why;		/* first error in words, or NULL */
};

struct relay_hooks {
	/* Side A (when it was connected by us) or side B (a conn) is up. */
	void (*on_connected)(struct relay *r, int side);
	/* A connect of ours failed before any data: err, why. */
	void (*on_connect_failed)(struct relay *r, int side, int err, const char *why);
	/* Both sides are gone; r is freed after this returns. */
	void (*on_done)(struct relay *r, const struct relay_stats *st);
};

/* Side A from an accepted app socket (takes the fd). Its bytes are held
 * until side B is attached. NULL when out of memory (fd closed). */
struct relay *relay_accept(struct loop *l, int fd, const struct relay_hooks *h, void *udata);
/* Side A from our own connect (inbound delivery into a pod): fd already
 * made (in the pod's netns, marked); on_connected(0) or on_connect_failed. */
struct relay *relay_connect(struct loop *l, int fd, const struct sockaddr *sa, socklen_t salen,
			    const struct relay_hooks *h, void *udata);

/* Side B as a TCP connect from fd to sa (same-node delivery or
 * passthrough). 0, or -errno (then the relay is unchanged). */
int relay_attach_connect(struct relay *r, int fd, const struct sockaddr *sa, socklen_t salen);
/* Side B as HBONE stream id of t (open: 200 seen / sent). kick(t) is called
 * whenever the session has frames to flush. The session's owner keeps the
 * stream's udata and routes its events to relay_stream_*(). */
void relay_attach_stream(struct relay *r, struct h2tun *t, int32_t id,
			 void (*kick)(struct h2tun *t));

/* Stream events, called by the owner of the h2tun session for streams
 * whose udata is a relay. */
size_t relay_stream_data(struct relay *r, const uint8_t *p, size_t n);
void relay_stream_eof(struct relay *r);
void relay_stream_writable(struct relay *r);
void relay_stream_closed(struct relay *r, enum h2tun_end how, uint32_t h2_error);

/* Side A's FIN ends the relay: side B is reset and A closed, instead of
 * carrying the half-close. For a byte path whose bytes carry their own
 * close (an inner tunnel's TLS), so that the far side of B cannot hold it
 * half-open. */
void relay_end_on_eof(struct relay *r);
/* Reset both sides now (policy change, shutdown, failed setup). */
void relay_reset(struct relay *r, const char *why);
/* Side A's socket: for SO_ORIGINAL_DST and the peer address. */
struct conn *relay_conn(const struct relay *r, int side);
void *relay_udata(const struct relay *r);
unsigned long relay_live_count(void);

#endif
