/* SPDX-License-Identifier: Apache-2.0 */
/* The nghttp2 plumbing grpc.c, grpcc.c and h2tun.c share: session setup,
 * feeding peer bytes, flushing frames into the caller's byte sink, the
 * "session over" test, GOAWAY, deadlines and gRPC message reassembly. Pure
 * like its users: no sockets, clock or logging. */
#ifndef WEFT_H2GLUE_H
#define WEFT_H2GLUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>

#include <nghttp2/nghttp2.h>

/* A header field whose name is a string literal (never copied); nghttp2
 * copies the value at submit, so it may live on the stack. */
#define H2GLUE_NV(n, v) { (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), \
			  NGHTTP2_NV_FLAG_NO_COPY_NAME }

/* Output callback: take all n bytes (copy them); 0 or -errno (fatal). The
 * same type as grpc_send_fn and h2tun_send_fn. */
typedef int (*h2glue_send_fn)(void *io, const uint8_t *p, size_t n);
/* How many more bytes the sink wants now; 0 pauses output. */
typedef size_t (*h2glue_space_fn)(void *io);

struct h2glue_sink {
	h2glue_send_fn send;
	h2glue_space_fn space;
	void *io;
};

/* Plaintext per TLS record (the TLS maximum): h2glue_flush writes at most
 * this much per send where it can, and DATA frames are cut to fit in it. */
#define H2GLUE_RECORD		16384
/* DATA payload that fills one record with its 9-byte frame header. */
#define H2GLUE_DATA_FIT		(H2GLUE_RECORD - 9)

/* h2glue_setup.flags */
#define H2GLUE_SERVER		(1u << 0)	/* a server session, else a client */
#define H2GLUE_MANUAL_WINDOW	(1u << 1)	/* windows re-open only through
						 * nghttp2_session_consume */
#define H2GLUE_NO_HTTP		(1u << 2)	/* HTTP semantics are the caller's */

struct h2glue_setup {
	unsigned flags;
	/* Callbacks for nghttp2; NULL ones are left unset. */
	nghttp2_on_begin_headers_callback on_begin_headers;
	nghttp2_on_header_callback on_header;
	nghttp2_on_frame_recv_callback on_frame_recv;
	nghttp2_on_data_chunk_recv_callback on_data_chunk_recv;
	nghttp2_on_frame_send_callback on_frame_send;
	nghttp2_on_frame_not_send_callback on_frame_not_send;
	nghttp2_on_stream_close_callback on_stream_close;
	uint32_t peer_max_streams;	/* assumed until the peer's SETTINGS; 0: nghttp2's */
	uint64_t reset_burst;		/* RST_STREAM from the peer before GOAWAY; */
	uint64_t reset_rate;		/* 0: nghttp2's default limit */
	const nghttp2_settings_entry *settings;	/* our SETTINGS frame */
	size_t n_settings;
	int32_t conn_window;		/* our connection window (a WINDOW_UPDATE) */
};

/* Create *h2 with user data ud, SETTINGS and connection window queued.
 * 0 or -ENOMEM (*h2 untouched then). */
int h2glue_session_new(nghttp2_session **h2, const struct h2glue_setup *setup, void *ud);

/* Peer bytes into nghttp2. 0, or -EPROTO after queueing a
 * GOAWAY(PROTOCOL_ERROR) for an error nghttp2 did not answer itself (a bad
 * preface). Connection errors nghttp2 does answer (a DATA frame on stream
 * 0...) return 0 with a GOAWAY queued: h2glue_goaway_failed sees it go. */
int h2glue_feed(nghttp2_session *h2, const uint8_t *p, size_t n);

/* Hand queued frames to the sink while it has space. 0 when everything is
 * out or the sink is full; -EPROTO when nghttp2 failed (*lib_err, when not
 * NULL, gets its error code; it is left 0 otherwise); or the sink's -errno.
 * Either failure is fatal for the session. */
int h2glue_flush(nghttp2_session *h2, const struct h2glue_sink *k, int *lib_err);

/* 1 when the session is over: it failed, or its connection-error GOAWAY is
 * out, or neither side wants more and the caller is not busy. */
int h2glue_done(nghttp2_session *h2, bool fatal, bool proto_err, bool busy);

/* For on_frame_send: a GOAWAY carrying an error code went out, so the
 * connection is failing. */
bool h2glue_goaway_failed(const nghttp2_frame *frame);
/* Queue a graceful GOAWAY: streams up to the last one processed may finish. */
void h2glue_goaway(nghttp2_session *h2);

/* Whether deadline (ms, 0: none) has passed at now_ms. One still ahead
 * lowers *next (the earliest pending deadline, 0: none yet) to it. */
bool h2glue_deadline_due(uint64_t deadline, uint64_t now_ms, uint64_t *next);

/* A gRPC length-prefixed message arriving in DATA pieces. Zeroed is empty. */
struct h2glue_msg {
	uint8_t pfx[5];
	unsigned pfx_len;
	uint32_t len;			/* declared, valid once pfx_len == 5 */
	uint8_t *buf;			/* grows with what arrives, at most len */
	size_t got, cap;
};

/* Take what is missing of the 5-byte prefix from *p (*n bytes), advancing
 * both. Returns 0 while incomplete, 1 once complete with len set (checked
 * by the caller before any body byte is buffered), or -EINVAL for flags
 * grpc_frame_parse refuses (pfx[0] == 1: compressed). */
int h2glue_msg_prefix(struct h2glue_msg *m, const uint8_t **p, size_t *n);
/* Take body bytes up to the declared length from *p (*n bytes), advancing
 * both. 0, or -ENOMEM with nothing taken. The message is complete once
 * got == len. */
int h2glue_msg_body(struct h2glue_msg *m, const uint8_t **p, size_t *n);
/* Free the buffer and forget the message, prefix included. */
void h2glue_msg_reset(struct h2glue_msg *m);

#endif
