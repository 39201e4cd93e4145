/* SPDX-License-Identifier: Apache-2.0 */
/* Trace ids (trace.h). */
#include <string.h>

#include <sodium.h>

#include "trace.h"

/* Random bytes from a pool refilled 4 KiB at a time: randombytes_buf is a
 * getrandom() syscall per call, once per connection otherwise. */
static void trace_random(unsigned char *out, size_t n)
{
	static unsigned char pool[4096];
	static size_t left;

	if (left < n) {
		randombytes_buf(pool, sizeof(pool));
		left = sizeof(pool);
	}
	memcpy(out, pool + sizeof(pool) - left, n);
	sodium_memzero(pool + sizeof(pool) - left, n);	/* each id used once */
	left -= n;
}

static void trace_hex(char *out, const unsigned char *b, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * n] = 0;
}

void trace_new(char id[TRACE_ID_LEN + 1])
{
	unsigned char b[TRACE_ID_LEN / 2];

	trace_random(b, sizeof(b));
	b[0] |= 1;		/* never all zero, which the spec forbids */
	trace_hex(id, b, sizeof(b));
}

void trace_parent(char out[TRACE_PARENT_LEN + 1], const char id[TRACE_ID_LEN + 1])
{
	unsigned char span[8];

	trace_random(span, sizeof(span));
	span[0] |= 1;
	memcpy(out, "00-", 3);
	memcpy(out + 3, id, TRACE_ID_LEN);
	out[3 + TRACE_ID_LEN] = '-';
	trace_hex(out + 4 + TRACE_ID_LEN, span, sizeof(span));
	memcpy(out + 4 + TRACE_ID_LEN + 16, "-01", 4);
}

/* n lower-case hex digits at p, not all '0'. */
static int trace_hexrun(const char *p, size_t n)
{
	int nonzero = 0;

	for (size_t i = 0; i < n; i++) {
		if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'a' && p[i] <= 'f')))
			return 0;
		nonzero |= p[i] != '0';
	}
	return nonzero;
}

int trace_from_parent(const char *tp, char id[TRACE_ID_LEN + 1])
{
	if (tp && strlen(tp) == TRACE_PARENT_LEN && !memcmp(tp, "00-", 3) &&
	    trace_hexrun(tp + 3, TRACE_ID_LEN) && tp[3 + TRACE_ID_LEN] == '-' &&
	    trace_hexrun(tp + 4 + TRACE_ID_LEN, 16) && tp[20 + TRACE_ID_LEN] == '-' &&
	    ((tp[21 + TRACE_ID_LEN] >= '0' && tp[21 + TRACE_ID_LEN] <= '9') ||
	     (tp[21 + TRACE_ID_LEN] >= 'a' && tp[21 + TRACE_ID_LEN] <= 'f')) &&
	    ((tp[22 + TRACE_ID_LEN] >= '0' && tp[22 + TRACE_ID_LEN] <= '9') ||
	     (tp[22 + TRACE_ID_LEN] >= 'a' && tp[22 + TRACE_ID_LEN] <= 'f'))) {
		memcpy(id, tp + 3, TRACE_ID_LEN);
		id[TRACE_ID_LEN] = 0;
		return 0;
	}
	trace_new(id);
	return -1;
}
