/* SPDX-License-Identifier: Apache-2.0 */
/* X.509 helpers shared by agent and daemon, on wolfCrypt: ECDSA P-256 keys
 * kept in sodium_malloc memory, CSRs, PEM/DER, and a readable summary of a
 * certificate. */
#ifndef WEFT_X509_H
#define WEFT_X509_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct x509_key;

/* New ECDSA P-256 key; NULL on failure. */
struct x509_key *x509_key_generate(void);
/* From PEM ("EC PRIVATE KEY" or PKCS#8 "PRIVATE KEY"); NULL if not P-256. */
struct x509_key *x509_key_from_pem(const char *pem, size_t len);
/* PEM of the private key in sodium_malloc memory: free with x509_secret_free. */
int x509_key_to_pem(const struct x509_key *k, char **pem, size_t *len);
void x509_secret_free(char *p, size_t len);
/* DER SubjectPublicKeyInfo; caller frees. */
int x509_key_public_der(const struct x509_key *k, uint8_t **der, size_t *len);
/* Wipes and frees; NULL ok. */
void x509_key_free(struct x509_key *k);
/* The underlying wolfCrypt ecc_key (for signing); opaque here. */
void *x509_key_ecc(struct x509_key *k);

/* A CSR for uri (one URI SAN, empty subject), signed with SHA-256. PEM,
 * malloc'd. */
int x509_csr_make(struct x509_key *k, const char *uri, char **pem, size_t *len);

/* DER pieces for code that encodes certificate fields by hand (the agent's
 * CA). x509_der_len_put writes the definite length n (< 2^24) at p and
 * returns the bytes written, 1 to 4. x509_san_build writes GeneralNames
 * { [6] uri (if not NULL), [2] dns... } into out (cap bytes, e.g. wolfSSL's
 * Cert.altNames) and its length into *outlen; -ENOSPC when it does not
 * fit. The names are IA5 strings: the caller checks their characters. */
size_t x509_der_len_put(uint8_t *p, size_t n);
int x509_san_build(uint8_t *out, size_t cap, const char *uri,
		   const char *const *dns, size_t n_dns, int *outlen);

/* PEM <-> DER for CERTIFICATE blocks. x509_pem_next walks a bundle: returns
 * the DER of the next certificate (malloc'd) and advances *pos; -ENOENT at
 * the end. */
int x509_pem_next(const char *pem, size_t len, size_t *pos, uint8_t **der, size_t *derlen);
int x509_der_to_pem(const uint8_t *der, size_t len, const char *label, char **pem, size_t *pemlen);

struct x509_summary {
	char uri[2048];		/* first URI SAN */
	int n_uri, n_dns, n_ip, n_email;
	char subject[256];
	char issuer[256];
	char serial[64];	/* hex */
	time_t not_before, not_after;
	int is_ca;
	char key_type[32];	/* "ECDSA P-256", ... */
};
int x509_cert_summary(const uint8_t *der, size_t len, struct x509_summary *out);

/* Trust bundles, re-encoded so that nothing but CA certificates passes
 * (no key, no text, no NUL). x509_ca_append checks that der is a CA
 * certificate (cA=true) and appends it to *pem (malloc'd, NUL-terminated,
 * *pem NULL to start) as a PEM block. x509_ca_bundle makes *out of pem's
 * CERTIFICATE blocks that way: it refuses a bundle holding a private key,
 * a block that does not parse or is not a CA, none, more than max
 * certificates, or more than cap bytes of output. Both return 0, or
 * -EINVAL / -ENOMEM with the reason in why (x509_ca_append's: "does not
 * parse", "is not a CA", "out of memory"). */
int x509_ca_append(char **pem, size_t *len, const uint8_t *der, size_t derlen, char *why,
		   size_t whylen);
int x509_ca_bundle(const char *pem, size_t len, size_t max, size_t cap, char **out,
		   size_t *outlen, char *why, size_t whylen);

#endif
