/* SPDX-License-Identifier: Apache-2.0 */
/* The certificate authority: a root (generated on first start and kept in
 * the state directory) or a given root/intermediate, and SVID signing. */
#ifndef AGENT_CA_H
#define AGENT_CA_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct ca;
struct csr;
struct x509_key;

struct ca_opts {
	const char *state_dir;		/* root-cert.pem, ca-cert.pem, ca-key.pem live here */
	const char *trust_domain;
	const char *cert_file;		/* optional: a given CA cert (root or intermediate) */
	const char *key_file;		/* its key */
	const char *chain_file;		/* optional: intermediates..root above cert_file */
};

/* Open or create the CA. NULL with err on failure. */
struct ca *ca_open(const struct ca_opts *o, char *err, size_t errlen);
void ca_free(struct ca *ca);

/* Sign an X.509-SVID for uri with the CSR's public key, valid from now-60 s
 * for ttl_s seconds (clamped to the CA's own expiry). Returns 0 and a
 * malloc'd array of n PEM strings, leaf first, root last (free with
 * ca_chain_free), or -errno. */
int ca_sign(struct ca *ca, const uint8_t *pubkey_der, size_t pubkey_len,
	    const char *uri, const char *const *dns, size_t n_dns,
	    uint32_t ttl_s, char ***chain, size_t *n);
void ca_chain_free(char **chain, size_t n);

/* Root bundle PEM (the roots of this trust domain), owned by ca. */
const char *ca_bundle_pem(const struct ca *ca, size_t *len);
/* Path of the bundle file written into state_dir. */
const char *ca_bundle_path(const struct ca *ca);
/* When the signing certificate expires (no certificate outlives it). */
time_t ca_not_after(const struct ca *ca);

#endif
