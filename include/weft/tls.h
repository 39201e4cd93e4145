/* SPDX-License-Identifier: Apache-2.0 */
/* TLS 1.3 on wolfSSL through memory buffers: the caller moves ciphertext
 * between the socket and this layer (no sockets here), so the same code runs
 * under io_uring, in unit tests and under the fuzzer. Peers are verified as
 * SPIFFE X.509-SVIDs. */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define TLS_ERR_MAX 256

struct tls_ctx;
struct tls;

enum tls_role {
	TLS_CLIENT = 1,
	TLS_SERVER,
};

enum tls_peer_auth {
	TLS_PEER_REQUIRE = 1,	/* peer must present a valid SVID */
	TLS_PEER_OPTIONAL,	/* server: verify a client cert if one is sent */
	TLS_PEER_NONE,		/* no peer certificate checks (tests, benches) */
};

/* The trust bundle of a federated trust domain (DESIGN §8.1). */
struct tls_bundle {
	const char *trust_domain;
	const char *pem;		/* its roots (PEM, one or more) */
	size_t len;
};

struct tls_ctx_opts {
	enum tls_role role;
	enum tls_peer_auth peer_auth;
	const char *chain_pem;		/* our certificate chain, leaf first; may be NULL for a client without identity */
	size_t chain_len;
	const char *key_pem;		/* our private key (PEM); wiped copies only */
	size_t key_len;
	const char *bundle_pem;		/* trust roots (PEM, one or more) */
	size_t bundle_len;
	const char *const *trust_domains; /* NULL-terminated; peer's SPIFFE ID must be in one */
	/* Federation: a peer whose SPIFFE ID is of one of these trust
	 * domains must chain to that domain's bundle, and any other peer to
	 * bundle_pem: bundles are never merged, so no CA can vouch for a
	 * trust domain not its own. (Which domains are accepted at all is
	 * still trust_domains.) */
	const struct tls_bundle *federated;
	size_t n_federated;
	const char *alpn;		/* e.g. "h2"; NULL for none */
	const char *ciphers;		/* NULL: TLS_AES_256_GCM_SHA384 first, then CHACHA20, then AES_128 */
	int no_crypto_device;		/* 1: wolfSSL software only, not lib/cryptodev.c */
};

/* Returns a context (holding one reference) or NULL with err filled in.
 * Contexts are reference-counted: tls_ctx_ref takes a reference,
 * tls_ctx_free drops one, and every tls made from a context holds one until
 * tls_free, so a context replaced at certificate rotation stays alive for
 * the connections that use it. */
struct tls_ctx *tls_ctx_new(const struct tls_ctx_opts *o, char *err, size_t errlen);
struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx);
void tls_ctx_free(struct tls_ctx *ctx);

/* A connection's TLS state. sni (client only) may be NULL. */
struct tls *tls_new(struct tls_ctx *ctx, const char *sni);
void tls_free(struct tls *t);
/* Call periodically: when no handshake ran and no context was made since
 * the last call, drop
 * wolfSSL's ECC point cache (up to ~12 MB of heap), once per quiet spell.
 * 1 if it was dropped. */
int tls_cache_trim(void);

/* Client: require the server's SPIFFE ID to equal id exactly (copied); an
 * id ending in '/' (spiffe://td/weft/node/) takes any one more segment. */
int tls_expect_peer(struct tls *t, const char *id);

/* Ciphertext from the socket. Returns 0, or -ENOBUFS when more than the
 * bounded input buffer (64 KiB + one record) is pending. */
int tls_feed(struct tls *t, const uint8_t *p, size_t n);
/* 0 once the handshake is complete (peer verified), -EAGAIN when more input
 * is needed, -EPROTO on failure (tls_error() says why, in words). */
int tls_handshake(struct tls *t);
int tls_handshake_done(const struct tls *t);
/* Decrypted bytes: > 0 count, 0 peer sent close_notify, -EAGAIN nothing
 * yet, -EPROTO error (bad record MAC etc.). */
ssize_t tls_read(struct tls *t, void *buf, size_t len);
/* Encrypt len bytes into the output buffer; returns len or -EPROTO. The
 * output buffer is bounded (256 KiB pending): past that the count is short,
 * like write(2), or -EAGAIN when nothing fit; drain tls_out_peek first. */
ssize_t tls_write(struct tls *t, const void *buf, size_t len);
/* Queue a close_notify alert. */
void tls_shutdown(struct tls *t);
/* Ciphertext for the socket: a pointer to the pending bytes and their
 * count; consume what was sent. */
size_t tls_out_peek(const struct tls *t, const uint8_t **p);
void tls_out_consume(struct tls *t, size_t n);

const char *tls_error(const struct tls *t);
/* The peer leaf's SPIFFE ID (its one URI SAN); 0, or -ENOENT without one. */
int tls_peer_id(const struct tls *t, char *out, size_t len);
/* The peer-certificate checks the handshake's verify callback makes, as a
 * pure function (no TLS state, no I/O; fuzzed by tests/fuzz/fuzz_tls_peer.c):
 * the leaf certificate (DER) parses, is not a CA, has exactly one URI SAN,
 * and that URI is a SPIFFE ID in one of trust_domains (NULL-terminated; NULL
 * allows none) and equal to expect unless expect is NULL. Returns 0 with the
 * ID in *id (malloc'd, the caller frees), or -EPROTO / -ENOMEM with *id NULL
 * and the reason in err. With verify == 0 nothing is checked: *id is the one
 * URI SAN if there is exactly one, else NULL. */
int tls_svid_check(const uint8_t *der, size_t len, int verify,
		   const char *const *trust_domains, const char *expect,
		   char **id, char *err, size_t errlen);
const char *tls_cipher_name(const struct tls *t);
const char *tls_alpn(const struct tls *t);

#endif
