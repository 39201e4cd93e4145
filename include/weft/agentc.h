/* SPDX-License-Identifier: Apache-2.0 */
/* A client of weft-agent: one TLS connection (the agent's SPIFFE ID
 * verified) carrying gRPC calls: CreateCertificate, and a Registry/Watch
 * stream kept open across agent restarts (reconnect with backoff). weftd
 * authenticates with its bootstrap token until it has its own SVID, then
 * with mTLS; weft-agent uses it with its own SVID to import a federated
 * agent's registry (agent/remote.c). */
#ifndef WEFT_AGENTC_H
#define WEFT_AGENTC_H

#include <stddef.h>
#include <stdint.h>

#include <weft/grpc.h>

struct loop;
struct tls_ctx;
struct agentc;

struct agentc_opts {
	const char *addr;		/* "ip:port" of the agent */
	const char *server_name;	/* SNI, e.g. "weft-agent" */
	const char *trust_domain;
	const char *bundle_pem;		/* root bundle */
	size_t bundle_len;
	const char *token;		/* bootstrap token (copied into secure memory) */
	const char *node;		/* this node's name (WatchRequest.node) */
	uint32_t mark;			/* SO_MARK of its sockets; 0 none */
};

/* A CreateCertificate result: chain (PEM strings, leaf first) is valid
 * during the callback only; status != GRPC_OK means failure with msg. */
typedef void (*agentc_cert_fn)(void *arg, enum grpc_status st, const char *msg,
			       char *const *chain, size_t n);
/* A WatchResponse (serialized), in order. */
typedef void (*agentc_watch_fn)(void *arg, const uint8_t *msg, size_t len);
/* Connection state changes, for readiness and logs (up = 1 when a Watch
 * stream is open). */
typedef void (*agentc_state_fn)(void *arg, int up, const char *why);

struct agentc *agentc_new(struct loop *l, const struct agentc_opts *o, char *err, size_t errlen);
void agentc_free(struct agentc *a);
/* From now on authenticate with mTLS using this client identity (node
 * SVID chain + key). Takes effect on the next connection; the current one
 * is replaced after in-flight calls finish. */
int agentc_set_identity(struct agentc *a, const char *chain_pem, size_t chain_len,
			const char *key_pem, size_t key_len);
/* CreateCertificate(csr, validity, ImpersonatedIdentity = impersonate or
 * none). Queued until connected; cb runs exactly once (also on
 * agentc_free, with UNAVAILABLE), never from inside this call. Returns 0,
 * or -ENOMEM / -errno when no connection could be made (cb does not run). */
int agentc_create_cert(struct agentc *a, const char *csr_pem, const char *impersonate,
		       uint32_t ttl_s, agentc_cert_fn cb, void *arg);
/* Keep a Registry/Watch stream open and hand every message to cb. */
void agentc_watch(struct agentc *a, agentc_watch_fn cb, agentc_state_fn state, void *arg);

#endif
