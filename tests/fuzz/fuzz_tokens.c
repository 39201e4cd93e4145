/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer target for the agent's token file parser (tokens_parse): bytes
 * as a token file. A refusal must say why. An accepted file must hold one
 * entry per "<node> <token>" line, and every token must look up to a node
 * that carries it (checked against a second, naive reading of the lines);
 * the whole input, a token with one byte changed and an empty token must
 * not match unless they are one of the file's tokens. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../agent/tokens.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_PAIRS_MAX 4096

struct pair {
	const char *node, *tok;
	size_t nodelen, toklen;
};

static int is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* The lines tokens_parse accepted, read the simple way. */
static size_t pairs_read(const char *b, size_t len, struct pair *v)
{
	size_t n = 0, pos = 0;

	while (pos < len) {
		const char *l = b + pos, *nl = memchr(l, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - l) : len - pos, i = 0;

		pos += ll + 1;
		while (i < ll && is_ws(l[i]))
			i++;
		if (i == ll || l[i] == '#' || l[i] == '\r')
			continue;
		if (n == FUZZ_PAIRS_MAX)
			abort();
		v[n].node = l + i;
		while (i < ll && !is_ws(l[i]))
			i++;
		v[n].nodelen = (size_t)(l + i - v[n].node);
		while (i < ll && is_ws(l[i]))
			i++;
		v[n].tok = l + i;
		while (i < ll && !is_ws(l[i]) && l[i] != '\r')
			i++;
		v[n].toklen = (size_t)(l + i - v[n].tok);
		n++;
	}
	return n;
}

/* 1 if some accepted line carries tok and names node. */
static int pairs_has(const struct pair *v, size_t n, const char *tok, size_t toklen,
		     const char *node)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].toklen == toklen && !memcmp(v[i].tok, tok, toklen) &&
		    (!node || (strlen(node) <= v[i].nodelen &&
			       !strncmp(v[i].node, node, v[i].nodelen))))
			return 1;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pair v[FUZZ_PAIRS_MAX];
	char err[512] = "";
	const char *who;
	struct tokens *t;
	char *b, *flip;
	size_t n;

	if (size > (256u << 10))
		return 0;
	b = malloc(size ? size : 1);
	if (!b)
		return 0;
	memcpy(b, data, size);
	t = tokens_parse(b, size, "fuzz", err, sizeof(err));
	if (!t) {
		if (!err[0])
			abort();
		free(b);
		return 0;
	}
	n = pairs_read(b, size, v);
	if (tokens_count(t) != n)
		abort();
	for (size_t i = 0; i < n; i++) {
		who = tokens_lookup(t, v[i].tok, v[i].toklen);
		if (!who || !pairs_has(v, n, v[i].tok, v[i].toklen, who))
			abort();
	}
	who = tokens_lookup(t, b, size);
	if (who && !pairs_has(v, n, b, size, who))
		abort();
	who = tokens_lookup(t, "", 0);
	if (who)
		abort();			/* tokens are at least 16 bytes */
	if (n && (flip = malloc(v[0].toklen))) {
		memcpy(flip, v[0].tok, v[0].toklen);
		flip[v[0].toklen - 1] ^= 1;
		who = tokens_lookup(t, flip, v[0].toklen);
		if (who && !pairs_has(v, n, flip, v[0].toklen, who))
			abort();
		free(flip);
	}
	tokens_free(t);
	free(b);
	return 0;
}
