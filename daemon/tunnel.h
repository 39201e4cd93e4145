/* SPDX-License-Identifier: Apache-2.0 */
/* The pool of outbound HBONE tunnels, keyed by (source workload identity,
 * destination node): at most one tunnel being opened per key at a time,
 * new streams spread over the live ones, a second tunnel past the stream
 * limit, keepalive PINGs, idle close, drain. */
#ifndef DAEMON_TUNNEL_H
#define DAEMON_TUNNEL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <weft/h2tun.h>

struct loop;
struct ident;
struct tunnels;
struct tunnel_req;

struct tunnel_limits {
	unsigned max_tunnels;		/* all keys together */
	unsigned max_streams;		/* per tunnel (<= 1000) */
	unsigned max_pending;		/* stream requests waiting for a tunnel, per key */
	uint32_t connect_timeout_ms;	/* TCP + TLS */
	uint32_t idle_ms;		/* close a tunnel without streams after this */
	uint32_t ping_ms, ping_timeout_ms;
};

/* Result of a stream request. status 200: the stream id of t is open and
 * must be taken (relay_attach_stream) before returning. Otherwise the
 * request failed: why in words, flag is the response_flags word (CONNECT,
 * TLS_FAILURE, IDENTITY_ERROR, UPSTREAM_OVERFLOW, ...). The request is gone
 * after the callback. */
typedef void (*tunnel_open_fn)(void *arg, struct h2tun *t, int32_t id, int status,
			       const char *why, const char *flag);

struct tunnels *tunnels_new(struct loop *l, const struct tunnel_limits *lim);
void tunnels_free(struct tunnels *p);

/* A node of another network (DESIGN §8.1, double HBONE): its tunnels run
 * inside a CONNECT stream to authority (the node's "ip:port") on an outer
 * tunnel, pooled like any other, for (src, gateway) to the remote
 * network's gateway at addr, whose SPIFFE ID is expect_id. */
struct tunnel_via {
	const char *gateway;		/* its key, e.g. "east/gw" */
	const struct sockaddr *addr;
	socklen_t addrlen;
	const char *expect_id;
	const char *authority;
	/* Istio's cost model: a new inner tunnel (a TLS handshake) for every
	 * stream, closed with it, instead of one per (src, node). */
	int unpooled;
};

/* Ask for a CONNECT stream to req->authority through the tunnel for
 * (src, node). expect_id is the destination node's SPIFFE ID; via, when
 * not NULL, a node of another network (copied). The callback runs later,
 * exactly once, unless tunnels_cancel() is called first. */
struct tunnel_req *tunnels_open_stream(struct tunnels *p, struct ident *src, const char *node,
				       const struct sockaddr *node_addr, socklen_t addrlen,
				       const char *expect_id, const struct tunnel_via *via,
				       const struct h2tun_connect_req *req,
				       tunnel_open_fn cb, void *arg);
void tunnels_cancel(struct tunnel_req *r);
/* Flush a tunnel's session soon (relay kick). */
void tunnels_kick(struct h2tun *t);

/* GOAWAY on every tunnel; no new ones. */
void tunnels_drain(struct tunnels *p);
unsigned tunnels_count(const struct tunnels *p);
struct promtext;
/* weft_tunnels_opened_total, weft_tunnel_handshake_seconds, weft_tunnel_streams. */
void tunnels_metrics(const struct tunnels *p, struct promtext *t);
/* The best state of the tunnels of (src, node): "ready", "connecting",
 * "draining", or "none". */
const char *tunnels_state(const struct tunnels *p, const struct ident *src, const char *node);
/* JSON array describing every tunnel (key, state, streams, bytes, age).
 * Returns bytes written (truncated to len). */
size_t tunnels_json(const struct tunnels *p, char *buf, size_t len);

#endif
