/* SPDX-License-Identifier: Apache-2.0 */
/* Certificate signing requests from nodes: parse, verify the self-signature
 * and apply the SVID policy (exactly one URI SAN that is a SPIFFE ID; no
 * DNS/IP/email SAN; no CN). Pure: bytes in, verdict out. */
#ifndef AGENT_CSR_H
#define AGENT_CSR_H

#include <stddef.h>
#include <stdint.h>

#include <weft/spiffe.h>

struct csr {
	struct spiffe_id id;		/* the one URI SAN */
	char uri[SPIFFE_ID_MAX];
	uint8_t *pubkey_der;		/* SubjectPublicKeyInfo, malloc'd */
	size_t pubkey_len;
	int key_is_p256;
};

/* Parse a PEM CSR. Returns 0, or -EINVAL with why (static or in whybuf)
 * naming the rule broken: "not a PEM CSR", "bad signature", "has a DNS SAN",
 * "has a common name", "2 URI SANs", "URI SAN is not a SPIFFE ID: ...". */
int csr_parse(const char *pem, size_t len, struct csr *out, char *why, size_t whylen);
void csr_deinit(struct csr *c);

#endif
