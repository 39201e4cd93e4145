/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for trace_from_parent: a peer's traceparent header
 * value. Accepted only in the exact W3C form, and then the id is the 32
 * digits after "00-"; refused, the id is a new valid one; either way the id
 * is 32 lower-case hex digits, not all zero, and traceparent(id) parses
 * back to it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../daemon/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int valid_id(const char *id)
{
	int nonzero = 0;

	if (strlen(id) != TRACE_ID_LEN)
		return 0;
	for (int i = 0; i < TRACE_ID_LEN; i++) {
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return 0;
		nonzero |= id[i] != '0';
	}
	return nonzero;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), id[TRACE_ID_LEN + 1], back[TRACE_ID_LEN + 1];
	char tp[TRACE_PARENT_LEN + 1];
	int rc;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;
	rc = trace_from_parent(s, id);
	if (!valid_id(id))
		abort();
	if (rc == 0 && (strlen(s) != TRACE_PARENT_LEN || memcmp(s, "00-", 3) ||
			memcmp(s + 3, id, TRACE_ID_LEN)))
		abort();
	trace_parent(tp, id);
	if (trace_from_parent(tp, back) || strcmp(back, id))
		abort();
	free(s);
	return 0;
}
