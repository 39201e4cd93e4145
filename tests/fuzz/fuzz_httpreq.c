/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the request parser of the small HTTP endpoints (httpreq_parse):
 * bytes as what a client sent, fed whole and then as every prefix, the way
 * the bytes trickle in. An accepted request line must be an upper-case
 * method and an origin-form path of visible ASCII; a decision reached on a
 * prefix (accepted or refused) must be the decision on every longer input,
 * with the same method and path, so a split never changes the answer; the
 * path's query parameters decode to bounded, NUL-free values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <weft/httpreq.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_ok(const char *method, const char *path)
{
	size_t m = strlen(method), p = strlen(path);

	if (!m || m >= HTTPREQ_METHOD_MAX || !p || p >= HTTPREQ_PATH_MAX || path[0] != '/')
		abort();
	for (size_t i = 0; i < m; i++)
		if (method[i] < 'A' || method[i] > 'Z')
			abort();
	for (size_t i = 0; i < p; i++)
		if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char m0[HTTPREQ_METHOD_MAX], p0[HTTPREQ_PATH_MAX];
	char m1[HTTPREQ_METHOD_MAX], p1[HTTPREQ_PATH_MAX];
	enum httpreq whole, part;
	char *buf;

	if (size > 8192)
		return 0;
	/* Exactly size bytes, so a read past the end is ASan's to see. */
	buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);
	whole = httpreq_parse(buf, size, m0, p0);
	if (whole == HTTPREQ_OK)
		check_ok(m0, p0);
	for (size_t k = 0; k < size; k++) {
		part = httpreq_parse(buf, k, m1, p1);
		if (part == HTTPREQ_MORE)
			continue;
		if (part != whole)
			abort();
		if (part == HTTPREQ_OK && (strcmp(m0, m1) || strcmp(p0, p1)))
			abort();
		break;
	}
	/* The query of an accepted path: what comes out is NUL-free and fits. */
	if (whole == HTTPREQ_OK) {
		char v[64];

		for (int k = 0; k < 2; k++) {
			if (httpreq_query(p0, k ? "dst" : "src", v, sizeof(v)) == 0 &&
			    (!v[0] || strlen(v) >= sizeof(v)))
				abort();
		}
	}
	free(buf);
	return 0;
}
