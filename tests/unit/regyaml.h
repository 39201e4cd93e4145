/* SPDX-License-Identifier: Apache-2.0 */
/* Registry YAML for unit tests (test_regproto.c, test_regcache.c): parse a
 * document, or a copy of one with a single substring replaced, so a test can
 * state a change to its base registry as "this text becomes that".
 * Include after check.h and <weft/registry.h>. */
#ifndef TESTS_REGYAML_H
#define TESTS_REGYAML_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The registry in yaml; a failed CHECK (and NULL) when it does not parse. */
static struct registry *regyaml_parse(const char *yaml)
{
	char err[REG_ERR_MAX];
	struct registry *r = registry_parse(yaml, strlen(yaml), "t.yaml", err, sizeof(err));

	if (!r)
		fprintf(stderr, "parse: %s\n", err);
	CHECK(r != NULL);
	return r;
}

/* base with its first from replaced by to, parsed. A from that does not occur
 * is a bug in the test itself: it stops the binary (exit 1) rather than going
 * on with a registry nobody meant. */
static struct registry *regyaml_edit(const char *base, const char *from, const char *to)
{
	const char *at = strstr(base, from);
	size_t n = strlen(base) + strlen(to) + 1;
	struct registry *r;
	char *buf;

	if (!at) {
		fprintf(stderr, "regyaml_edit: cannot replace %s\n", from);
		exit(1);
	}
	buf = malloc(n);
	if (!buf) {
		fprintf(stderr, "regyaml_edit: out of memory\n");
		exit(1);
	}
	snprintf(buf, n, "%.*s%s%s", (int)(at - base), base, to, at + strlen(from));
	r = regyaml_parse(buf);
	free(buf);
	return r;
}

#endif
