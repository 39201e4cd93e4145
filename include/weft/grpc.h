/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC over HTTP/2 (nghttp2), server side: unary and server-streaming calls,
 * length-prefixed messages, status trailers, deadlines, a message size cap.
 * No I/O here: bytes go in with grpc_session_feed and out through the send
 * callback, so the session can be driven by conn.c, unit tests or a fuzzer. */
#ifndef WEFT_GRPC_H
#define WEFT_GRPC_H

#include <stddef.h>
#include <stdint.h>

#define GRPC_MSG_MAX (4u << 20)		/* 4 MiB, as gRPC's default */
/* With an auth hook: what a session reads from its peer before any of its
 * calls is admitted (prefaces, SETTINGS, HEADERS; no DATA is credited),
 * and how long it may take to get there (from its first bytes). */
#define GRPC_PREAUTH_MAX	(64u << 10)
#define GRPC_PREAUTH_MS		10000
#define GRPC_PRINCIPAL_MAX	64

enum grpc_status {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_UNAUTHENTICATED = 16,
};

struct grpc_session;
struct grpc_call;

/* Called once per call, when its (single) request message is complete.
 * The message bytes are valid only during the call. The handler answers now
 * (grpc_call_send + grpc_call_finish) or keeps the call for later (server
 * streaming) until it finishes it or on_cancel runs. */
typedef void (*grpc_handler_fn)(struct grpc_call *call, const uint8_t *msg,
				size_t len, void *arg);
typedef void (*grpc_cancel_fn)(struct grpc_call *call, void *arg);

/* What one authenticated caller holds across all its sessions. Owned by
 * the auth hook's owner, which keeps it until every session that charged it
 * is freed; grpc.c only counts into it. */
struct grpc_quota {
	uint32_t calls;			/* admitted calls still alive */
	uint64_t bytes;			/* request bytes reserved */
	uint64_t bytes_max;		/* beyond: RESOURCE_EXHAUSTED; 0: no cap */
};

/* What an auth hook decides for a call. */
struct grpc_auth {
	char who[GRPC_PRINCIPAL_MAX];	/* the caller (grpc_call_principal) */
	struct grpc_quota *quota;	/* charged while the call lives, or NULL */
	char why[256];			/* refusal reason, sent as grpc-message */
};

/* Called once per call when its request HEADERS are complete and valid,
 * before a byte of its body is accepted (headers only: grpc_call_header,
 * grpc_call_path, grpc_call_conn_ctx). GRPC_OK admits the call; any other
 * status refuses it there (trailers-only, then the stream is reset) with
 * out->why. A session whose calls have never been admitted grants no
 * flow-control credit, reads at most GRPC_PREAUTH_MAX bytes and lives
 * GRPC_PREAUTH_MS; its first admitted call opens its windows. */
typedef enum grpc_status (*grpc_auth_fn)(struct grpc_call *call, void *arg,
					 struct grpc_auth *out);

struct grpc_method {
	const char *path;		/* "/package.Service/Method" */
	grpc_handler_fn handler;
	void *arg;
};

struct grpc_server {
	const struct grpc_method *methods;
	size_t n_methods;
	uint32_t max_msg;		/* 0: GRPC_MSG_MAX */
	uint32_t max_streams;		/* 0: 100 concurrent calls per connection */
	grpc_auth_fn auth;		/* NULL: every call admitted, windows open */
	void *auth_arg;
};

/* Output callback: take all n bytes (copy them); return 0 or -errno (fatal). */
typedef int (*grpc_send_fn)(void *io, const uint8_t *p, size_t n);
/* How many more bytes the sink wants now; 0 pauses output. */
typedef size_t (*grpc_space_fn)(void *io);

struct grpc_session *grpc_session_new(const struct grpc_server *srv,
				      grpc_send_fn send, grpc_space_fn space,
				      void *io, void *conn_ctx);
/* Drop the session: every live call gets on_cancel first. NULL ok. */
void grpc_session_free(struct grpc_session *s);
/* Bytes from the peer. now_ms anchors grpc-timeout deadlines. Returns 0,
 * or -EPROTO on an HTTP/2 protocol error or a peer that read past its
 * pre-authentication allowance (the caller flushes, then closes;
 * grpc_session_error says which). */
int grpc_session_feed(struct grpc_session *s, const uint8_t *p, size_t n, uint64_t now_ms);
/* Push pending frames to the sink while it has space. 0, or -errno. */
int grpc_session_flush(struct grpc_session *s);
/* 1 when neither side wants more (GOAWAY done, or fatal error). */
int grpc_session_done(const struct grpc_session *s);
/* Fail calls whose deadline passed with DEADLINE_EXCEEDED, and end a
 * session still unauthenticated GRPC_PREAUTH_MS after its first bytes
 * (GOAWAY; grpc_session_done then says so). Returns the earliest remaining
 * deadline (ms), or 0 when none. */
uint64_t grpc_session_expire(struct grpc_session *s, uint64_t now_ms);
/* Send GOAWAY; live calls may finish. */
void grpc_session_drain(struct grpc_session *s);
/* Why the session failed in words, or NULL: for the caller's log line. */
const char *grpc_session_error(const struct grpc_session *s);
/* 1 once a call of the session has been admitted (or there is no hook). */
int grpc_session_authenticated(const struct grpc_session *s);

/* Request metadata (lowercase name), or NULL. */
const char *grpc_call_header(const struct grpc_call *c, const char *name);
const char *grpc_call_path(const struct grpc_call *c);
void *grpc_call_conn_ctx(const struct grpc_call *c);
/* The caller the auth hook named for this call, or "" (no hook). */
const char *grpc_call_principal(const struct grpc_call *c);
/* Queue one response message (copied). 0, or -EPIPE if the call is gone. */
int grpc_call_send(struct grpc_call *c, const uint8_t *msg, size_t len);
/* Close the call with status and message (sent as trailers once queued
 * messages are out). The call object is invalid after this returns. */
void grpc_call_finish(struct grpc_call *c, enum grpc_status st, const char *msg);
void grpc_call_on_cancel(struct grpc_call *c, grpc_cancel_fn fn, void *arg);
/* Bytes queued but not yet handed to the sink (for streaming flow control). */
size_t grpc_call_pending(const struct grpc_call *c);

const char *grpc_status_name(enum grpc_status st);

/* gRPC length-prefixed message framing (pure, exposed for tests/fuzzing).
 * Parse one frame header from p: returns 5 and sets *len, or 0 when fewer
 * than 5 bytes, -EINVAL for a compressed flag (we advertise none). */
int grpc_frame_parse(const uint8_t *p, size_t n, uint32_t *len);
void grpc_frame_header(uint8_t out[5], uint32_t len);
/* Parse a grpc-timeout value ("100m", "5S"...) into ms; -EINVAL if bad. */
int grpc_timeout_parse(const char *v, uint64_t *ms);

struct h2conn_engine;
/* The session as an h2conn engine (lib/h2conn.h). */
extern const struct h2conn_engine grpc_session_engine;

#endif
