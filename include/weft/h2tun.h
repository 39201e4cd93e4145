/* SPDX-License-Identifier: Apache-2.0 */
/* HBONE: TCP streams carried as HTTP/2 CONNECT streams over one mTLS
 * connection (nghttp2). Client and server side. Pure like grpc.c: bytes in
 * with h2tun_feed, bytes out through the send callback, so tunnels can be
 * driven by conn.c, unit tests or a fuzzer.
 *
 * Flow control is end to end: the window of a stream is only re-opened
 * (h2tun_consume) once the bytes were written to the app's socket, so a
 * slow reader slows the writer and nothing buffers without bound. */
#ifndef WEFT_H2TUN_H
#define WEFT_H2TUN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define H2TUN_STREAM_WINDOW (4u << 20)	/* 4 MiB */
#define H2TUN_CONN_WINDOW (16u << 20)	/* 16 MiB */
#define H2TUN_MAX_STREAMS 1000

struct h2tun;

enum h2tun_role {
	H2TUN_CLIENT = 1,
	H2TUN_SERVER,
};

/* Why a stream ended, as the other layers report it. */
enum h2tun_end {
	H2TUN_END_CLOSED = 0,		/* both directions finished (END_STREAM each way) */
	H2TUN_END_RESET,		/* RST_STREAM from the peer (app reset) */
	H2TUN_END_REFUSED,		/* refused / non-200 / GOAWAY before it started */
	H2TUN_END_TUNNEL,		/* the tunnel (TLS/TCP/HTTP/2) failed */
};

#define H2TUN_NETWORK_MAX 64		/* x-forwarded-network, with its NUL */

struct h2tun_connect_req {
	const char *authority;		/* "ip:port" */
	const char *forwarded;		/* "for=\"ip:port\"" or NULL */
	const char *traceparent;	/* W3C traceparent or NULL */
	/* x-forwarded-network: the source's network, on the inner CONNECT
	 * of a connection from another network (DESIGN §8.1), or NULL */
	const char *network;
};

struct h2tun_callbacks {
	/* Server: a CONNECT arrived. Answer later with h2tun_respond(). Other
	 * methods and malformed requests are answered 400 by h2tun itself. */
	void (*on_connect)(struct h2tun *t, int32_t id, const struct h2tun_connect_req *req);
	/* Client: the response status of a CONNECT (200 = open). */
	void (*on_response)(struct h2tun *t, int32_t id, int status);
	/* Stream bytes from the peer. Return how many were taken; the rest is
	 * offered again after h2tun_resume_read(). Taken bytes must be
	 * acknowledged with h2tun_consume() once written onward. */
	size_t (*on_data)(struct h2tun *t, int32_t id, const uint8_t *p, size_t n);
	/* The peer half-closed (END_STREAM). */
	void (*on_eof)(struct h2tun *t, int32_t id);
	/* There is room again in the stream's send queue after h2tun_write
	 * took less than offered. */
	void (*on_writable)(struct h2tun *t, int32_t id);
	/* The stream is gone; its id is invalid after this returns. */
	void (*on_close)(struct h2tun *t, int32_t id, enum h2tun_end how, uint32_t h2_error);
	/* The peer sent GOAWAY: no new streams (h2tun_connect says -EPIPE);
	 * live ones finish. */
	void (*on_goaway)(struct h2tun *t);
};

typedef int (*h2tun_send_fn)(void *io, const uint8_t *p, size_t n);
typedef size_t (*h2tun_space_fn)(void *io);

struct h2tun *h2tun_new(enum h2tun_role role, const struct h2tun_callbacks *cb,
			h2tun_send_fn send, h2tun_space_fn space, void *io, void *udata);
/* Every live stream gets on_close(H2TUN_END_TUNNEL) first. NULL ok. */
void h2tun_free(struct h2tun *t);
void *h2tun_udata(const struct h2tun *t);

/* Bytes from the peer: 0, or -EPROTO (flush, then close the connection). */
int h2tun_feed(struct h2tun *t, const uint8_t *p, size_t n);
/* Push pending frames to the sink while it has space. 0 or -errno. */
int h2tun_flush(struct h2tun *t);
/* 1 when the session wants no more I/O (GOAWAY both ways, or fatal). */
int h2tun_done(const struct h2tun *t);

/* Client: open a CONNECT stream. Returns the stream id (> 0), or
 * -EAGAIN when the peer's concurrent-stream limit is reached, -EPIPE after
 * GOAWAY, -ENOMEM. */
int32_t h2tun_connect(struct h2tun *t, const struct h2tun_connect_req *req, void *stream_udata);
/* Server: answer a CONNECT. 200 opens the stream; any other status ends it. */
int h2tun_respond(struct h2tun *t, int32_t id, int status);

/* Queue stream bytes (copied). Returns how many were taken (may be less
 * than n when the stream's send queue is full: wait for on_writable), or
 * -EPIPE when the stream cannot send. */
ssize_t h2tun_write(struct h2tun *t, int32_t id, const uint8_t *p, size_t n);
/* Bytes queued for sending over all streams (at most 16 MiB: past that a
 * write is short and on_writable comes once half of it is sent), and how
 * many writes that budget cut. */
size_t h2tun_send_queued(const struct h2tun *t);
uint64_t h2tun_send_cuts(const struct h2tun *t);
/* Half-close: END_STREAM after the queued bytes. */
int h2tun_shutdown(struct h2tun *t, int32_t id);
/* Reset the stream (the app reset its connection): RST_STREAM CANCEL/CONNECT_ERROR. */
void h2tun_reset(struct h2tun *t, int32_t id, uint32_t h2_error);
/* The app took n bytes delivered by on_data: re-open the window. */
void h2tun_consume(struct h2tun *t, int32_t id, size_t n);
/* Offer bytes kept by on_data again. */
void h2tun_resume_read(struct h2tun *t, int32_t id);

void *h2tun_stream_udata(struct h2tun *t, int32_t id);
void h2tun_stream_set_udata(struct h2tun *t, int32_t id, void *udata);
unsigned h2tun_stream_count(const struct h2tun *t);
/* Streams the peer allows us to open now (client). */
unsigned h2tun_streams_available(const struct h2tun *t);

/* Keepalive: send a PING; h2tun_ping_outstanding() tells if the last one
 * is unanswered (the caller times it out). */
int h2tun_ping(struct h2tun *t);
int h2tun_ping_outstanding(const struct h2tun *t);
/* Send GOAWAY: no new streams, live ones finish. */
void h2tun_goaway(struct h2tun *t);

struct h2conn_engine;
/* The session as an h2conn engine (lib/h2conn.h). */
extern const struct h2conn_engine h2tun_engine;

#endif
