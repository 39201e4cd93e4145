/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for x509_ca_bundle, the check every federated bundle
 * passes in the agent (federation_dir .pem files) and again in weftd (the
 * registry stream): any bytes, exactly that many. An accepted bundle is
 * CA certificates as fresh PEM and nothing else: NUL-free, no key, and
 * the same bytes when checked again. A refusal leaves no output and says
 * why. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/x509.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *buf, *out = (char *)1, *again, why[256] = "";
	size_t len = 1, len2;
	int rc;

	if (size > 70000)
		return 0;
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	rc = x509_ca_bundle(buf, size, 32, 65536, &out, &len, why, sizeof(why));
	if (rc == 0) {
		if (!out || strlen(out) != len || len > 65536 || memmem(out, len, "PRIVATE KEY", 11) ||
		    strncmp(out, "-----BEGIN CERTIFICATE-----\n", 28))
			abort();
		if (x509_ca_bundle(out, len, 32, 65536, &again, &len2, why, sizeof(why)) ||
		    len2 != len || memcmp(again, out, len))
			abort();
		free(again);
		free(out);
	} else if (out != NULL || len != 0 || !why[0] || (rc != -EINVAL && rc != -ENOMEM)) {
		abort();
	}
	free(buf);
	return 0;
}
