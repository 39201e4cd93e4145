/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the registry parser and its protobuf conversion:
 * arbitrary bytes through registry_parse; whatever parses is serialized as a
 * snapshot, diffed against itself (must be empty) and against an empty
 * registry, and the snapshot must decode again. ASan/UBSan catch the rest,
 * LeakSanitizer the leaks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "registry.pb-c.h"
#include <weft/registry.h>
#include <weft/regproto.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char empty_yaml[] = "{}";
	char err[REG_ERR_MAX];
	struct registry *r, *empty;
	Weft__Registry__V1__WatchResponse *m;
	uint8_t *buf = NULL;
	size_t len = 0;

	r = registry_parse((const char *)data, size, "fuzz.yaml", err, sizeof(err));
	if (!r) {
		/* every rejection says why, and names the file */
		if (strncmp(err, "fuzz.yaml:", 10) != 0)
			abort();
		return 0;
	}
	if (regproto_snapshot(r, 1, &buf, &len) == 0) {
		m = weft__registry__v1__watch_response__unpack(NULL, len, buf);
		if (!m || m->n_upserts != r->n_nodes + r->n_workloads + r->n_services + r->n_policies)
			abort();
		weft__registry__v1__watch_response__free_unpacked(m, NULL);
		free(buf);
	}
	buf = NULL;
	if (regproto_delta(r, r, 2, &buf, &len) == 0 && buf)
		abort();	/* a registry never differs from itself */

	empty = registry_parse(empty_yaml, sizeof(empty_yaml) - 1, "empty", err, sizeof(err));
	if (empty) {
		if (regproto_delta(empty, r, 3, &buf, &len) == 0)
			free(buf);
		if (regproto_delta(r, empty, 4, &buf, &len) == 0)
			free(buf);
		registry_free(empty);
	}
	registry_free(r);
	return 0;
}
