/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the SPIFFE trust bundle reader of federation_dir
 * (federation_spiffe_to_pem): any bytes, exactly that many (ASan sees a
 * read past the end). Accepted output must be PEM certificates and nothing
 * else; a refusal must leave no output and say why. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/federation.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *pem = (char *)1, why[256] = "";
	int rc;

	if (size > 70000)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	rc = federation_spiffe_to_pem(buf, size, &pem, why, sizeof(why));
	if (rc == 0) {
		if (!pem || strncmp(pem, "-----BEGIN CERTIFICATE-----", 27))
			abort();
		free(pem);
	} else if (pem != NULL || !why[0]) {
		abort();
	}
	free(buf);
	return 0;
}
