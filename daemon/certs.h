/* SPDX-License-Identifier: Apache-2.0 */
/* weftd's identities: the node SVID (bootstrapped with the token) and one
 * workload SVID per identity its enrolled pods use, requested from the
 * agent with ImpersonatedIdentity. Keys are generated here and never leave
 * the node. Each SVID is renewed at half its lifetime, with exponential
 * backoff (0.5 s -> 150 s) on failure; the old certificate stays in use
 * until it expires, so rotation never drops a live connection. */
#ifndef DAEMON_CERTS_H
#define DAEMON_CERTS_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct loop;
struct agentc;
struct tls_ctx;
struct certs;
struct ident;

struct certs_opts {
	const char *trust_domain;
	const char *node;
	int gateway;			/* the node identity is spiffe://td/weft/gateway/<node> */
	const char *bundle_pem;		/* roots of the trust domain(s) we accept */
	size_t bundle_len;
	const char *const *trust_domains;	/* accepted peer trust domains, NULL-terminated */
	uint32_t ttl_s;			/* requested SVID lifetime (0: agent default) */
};

/* Called when an identity's state changes (first certificate, renewal,
 * failure). ready = 1 when a valid certificate is in use. */
typedef void (*certs_change_fn)(void *arg, struct ident *id, int ready);

struct certs *certs_new(struct loop *l, struct agentc *ac, const struct certs_opts *o,
			certs_change_fn on_change, void *arg);
void certs_free(struct certs *c);

/* Federated trust domains from the registry (sorted): accepted as peers,
 * each verified against its own bundle; every identity's contexts are made
 * again from its current certificate at once, without the agent.
 * 1 changed, 0 unchanged, -ENOMEM. */
struct reg_bundle;
int certs_set_federation(struct certs *c, const struct reg_bundle *b, size_t n);
/* 1 if peers of trust domain td (len bytes) are accepted now: a configured
 * one or a federated one. Connections that outlive a change ask this. */
int certs_td_accepted(const struct certs *c, const char *td, size_t len);

/* The node identity (spiffe://td/weft/node/<node>, or weft/gateway/<node>
 * for a gateway); requested at once. */
struct ident *certs_node(struct certs *c);
/* A workload identity for an enrolled pod, created and requested on first
 * use; counted: each certs_get needs one certs_put. The pods' references
 * are what keeps an identity renewing: once the last one is put, no
 * CreateCertificate is sent for it any more, and its holds are told. */
struct ident *certs_get(struct certs *c, const char *spiffe_id);
void certs_put(struct ident *id);

/* A hold keeps an identity (its ID and its current certificate) alive for
 * an object that uses it on a pod's behalf -- a tunnel key -- but does not
 * keep it renewing. on_unused runs (from certs_put, so it must only
 * schedule work) when no pod uses the identity any more; the holder then
 * lets go with ident_unhold once it is done with it. A held identity that
 * a pod takes again with certs_get resumes renewing. Every hold is let go
 * before certs_free. */
struct ident_hold;
typedef void (*ident_unused_fn)(struct ident_hold *h);
struct ident_hold {
	struct ident_hold *next;
	struct ident *id;
	ident_unused_fn on_unused;
};
void ident_hold(struct ident *id, struct ident_hold *h, ident_unused_fn on_unused);
void ident_unhold(struct ident_hold *h);
/* 1 while an enrolled pod (a certs_get) uses the identity; always 1 for
 * the node identity. */
int ident_in_use(const struct ident *id);

const char *ident_id(const struct ident *id);
int ident_ready(const struct ident *id);
time_t ident_not_after(const struct ident *id);
/* Why the last certificate request failed, or "". */
const char *ident_last_error(const struct ident *id);
/* TLS contexts with the current certificate (NULL until ready). Client:
 * for tunnels (verifies servers as SVIDs of trust_domains). Server: the
 * node identity's 15008 listener context (requires client SVIDs). A new
 * context replaces the old one at renewal; connections made with the old
 * one keep it (tls contexts are reference-counted). */
struct tls_ctx *ident_client_ctx(const struct ident *id);
struct tls_ctx *ident_server_ctx(const struct ident *id);
/* JSON array of every identity (admin /certs), with "pods" (certs_get
 * references), "holds" (tunnel keys) and "renewing". Bytes written. */
size_t certs_json(const struct certs *c, char *buf, size_t len);
struct promtext;
/* weft_certificate_* for metrics.c. */
void certs_metrics(const struct certs *c, struct promtext *t);
/* Readable state for /certs and logs. */
int ident_describe(const struct ident *id, char *buf, size_t len);

#endif
