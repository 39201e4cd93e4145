/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC client over HTTP/2 (nghttp2): unary and server-streaming calls.
 * Pure like grpc.c: bytes in with grpcc_session_feed, out through the send
 * callback; weftd drives it over conn.c to reach weft-agent. */
#ifndef WEFT_GRPCC_H
#define WEFT_GRPCC_H

#include <stddef.h>
#include <stdint.h>

#include <weft/grpc.h>

struct grpcc_session;
struct grpcc_call;

/* A response message (valid during the call only). */
typedef void (*grpcc_message_fn)(struct grpcc_call *c, const uint8_t *msg, size_t len, void *arg);
/* The call ended: status from grpc-status (or UNAVAILABLE/INTERNAL when the
 * connection or the framing failed, DEADLINE_EXCEEDED on our timeout); msg
 * from grpc-message, decoded. The call is invalid after this returns. */
typedef void (*grpcc_done_fn)(struct grpcc_call *c, enum grpc_status st, const char *msg, void *arg);

struct grpcc_session *grpcc_session_new(grpc_send_fn send, grpc_space_fn space, void *io,
					const char *authority);
/* Every live call gets done(UNAVAILABLE, "connection closed") first. */
void grpcc_session_free(struct grpcc_session *s);
int grpcc_session_feed(struct grpcc_session *s, const uint8_t *p, size_t n, uint64_t now_ms);
int grpcc_session_flush(struct grpcc_session *s);
int grpcc_session_done(const struct grpcc_session *s);
/* Fail calls past their deadline; returns the earliest remaining deadline or 0. */
uint64_t grpcc_session_expire(struct grpcc_session *s, uint64_t now_ms);
/* Queue an HTTP/2 PING (keepalive for long-lived streams: the peer's idle
 * timer sees traffic, and its ACK arrives through feed). 0, -EPIPE when the
 * session is failing, -ENOMEM. */
int grpcc_session_ping(struct grpcc_session *s);

/* Start a call with one request message (copied). headers is a
 * NULL-terminated list of name, value pairs (e.g. "authorization",
 * "Bearer ..."); authorization and proxy-authorization are always sent
 * never-indexed (HPACK), whoever passes them. timeout_ms 0 = none (sent as
 * grpc-timeout otherwise).
 * NULL on failure (no callback runs then). */
struct grpcc_call *grpcc_call_start(struct grpcc_session *s, const char *path,
				    const char *const *headers, const uint8_t *msg, size_t len,
				    uint32_t timeout_ms, uint64_t now_ms,
				    grpcc_message_fn on_message, grpcc_done_fn on_done, void *arg);
/* Cancel (RST_STREAM); done() runs with CANCELLED. */
void grpcc_call_cancel(struct grpcc_call *c);

struct h2conn_engine;
/* The session as an h2conn engine (lib/h2conn.h). */
extern const struct h2conn_engine grpcc_session_engine;

#endif
