/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the agent's CSR policy: the input is tried as a PEM
 * CSR as it is, and as DER wrapped in PEM armour by us, so mutations reach
 * both the PEM layer and wolfSSL's PKCS#10 decoder. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/x509.h>

#include "../../agent/csr.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_pem(const char *pem, size_t len)
{
	struct csr c;
	char why[256];

	if (csr_parse(pem, len, &c, why, sizeof(why)) == 0) {
		/* An accepted CSR always carries a valid SPIFFE ID and a key. */
		if (!c.pubkey_der || c.pubkey_len == 0 || !c.key_is_p256 ||
		    spiffe_id_parse(c.uri, strlen(c.uri), NULL, NULL) != 0)
			abort();
	} else if (why[0] == '\0') {
		abort();	/* every rejection names its reason */
	}
	csr_deinit(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *pem = NULL;
	size_t len = 0;

	try_pem((const char *)data, size);
	if (size > 0 && x509_der_to_pem(data, size, "CERTIFICATE REQUEST", &pem, &len) == 0) {
		try_pem(pem, len);
		free(pem);
	}
	return 0;
}
