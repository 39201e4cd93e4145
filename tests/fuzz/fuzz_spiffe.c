/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for spiffe_id_parse, which reads the URI SAN of every
 * peer certificate: arbitrary bytes (not NUL-terminated, so a read past
 * len is an ASan report). An accepted ID must be well formed (valid trust
 * domain; path "" or "/seg/..." of valid segments), must print back to the
 * very bytes parsed and re-parse to the same result; the workload and node
 * shapes extracted from it must format back to the same ID. A refusal must
 * say why. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/spiffe.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_path(const char *path)
{
	char seg[SPIFFE_ID_MAX];
	const char *p = path;

	if (!*p)
		return;
	if (*p != '/')
		abort();
	while (*p == '/') {
		const char *e = strchr(p + 1, '/');
		size_t n = e ? (size_t)(e - p - 1) : strlen(p + 1);

		memcpy(seg, p + 1, n);
		seg[n] = 0;
		if (!spiffe_segment_valid(seg))
			abort();
		p += 1 + n;
	}
	if (*p)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct spiffe_id id, again;
	static char txt[SPIFFE_ID_MAX + 16], fmt[SPIFFE_ID_MAX + 16];
	char ns[SPIFFE_ID_MAX], sa[SPIFFE_ID_MAX], node[SPIFFE_ID_MAX];
	const char *why = "unset";
	char *s = malloc(size ? size : 1);
	int n;

	if (!s)
		return 0;
	memcpy(s, data, size);
	if (spiffe_id_parse(s, size, &id, &why)) {
		if (!why || !why[0])
			abort();
		free(s);
		return 0;
	}
	if (why || !spiffe_td_valid(id.td))
		abort();
	check_path(id.path);
	n = snprintf(txt, sizeof(txt), "spiffe://%s%s", id.td, id.path);
	if (n < 0 || (size_t)n != size || memcmp(txt, s, size))
		abort();
	if (spiffe_id_parse(txt, (size_t)n, &again, &why) || strcmp(id.td, again.td) ||
	    strcmp(id.path, again.path))
		abort();
	if (!spiffe_id_workload(&id, ns, sizeof(ns), sa, sizeof(sa))) {
		if (spiffe_workload_format(fmt, sizeof(fmt), id.td, ns, sa) != n ||
		    strcmp(fmt, txt))
			abort();
	}
	if (!spiffe_id_node(&id, node, sizeof(node))) {
		if (spiffe_node_format(fmt, sizeof(fmt), id.td, node) != n || strcmp(fmt, txt))
			abort();
	}
	free(s);
	return 0;
}
