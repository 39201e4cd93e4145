/* SPDX-License-Identifier: Apache-2.0 */
/* The trust domains an agent federates with (DESIGN §8.1): federation_dir
 * holds one file per domain, <trust-domain>.pem (its X.509 roots) or
 * <trust-domain>.json (a SPIFFE trust bundle: a JWK Set whose keys of use
 * "x509-svid" each carry one root in x5c).
 * The agent streams them to its nodes with the registry; they are never
 * merged with its own bundle. */
#ifndef AGENT_FEDERATION_H
#define AGENT_FEDERATION_H

#include <stddef.h>

struct reg_bundle;

/* Read dir's bundles, sorted by trust domain, into *out (n entries; free
 * with federation_free). Files not ending in .pem or .json are ignored; one
 * whose name is not a trust domain, is our own trust domain, is over 64 KiB,
 * holds a private key, a certificate that does not parse or is not a CA,
 * or no certificate fails the whole load, with err. Only the certificates
 * pass, encoded afresh (x509_ca_bundle). A missing dir is an error too;
 * NULL dir is no federation. */
int federation_load(const char *dir, const char *own_td, struct reg_bundle **out, size_t *n,
		    char *err, size_t errlen);
void federation_free(struct reg_bundle *b, size_t n);
/* A SPIFFE bundle document (JSON, len bytes) as PEM roots: every key of use
 * x509-svid must have exactly one x5c certificate, a CA; other keys (e.g.
 * jwt-svid) are skipped; at least one root. 0 with *pem (malloc'd,
 * NUL-terminated), or -EINVAL / -ENOMEM with why. Pure: fuzzed by
 * tests/fuzz/fuzz_spiffe_bundle.c. */
int federation_spiffe_to_pem(const char *json, size_t len, char **pem, char *why,
			     size_t whylen);

#endif
