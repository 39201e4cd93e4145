/* SPDX-License-Identifier: Apache-2.0 */
/* Node bootstrap tokens. Each token is kept only as its BLAKE2b hash in
 * sodium_malloc memory; a lookup hashes the candidate and compares it with
 * every entry in constant time, so neither the position of a differing byte
 * nor a token's length nor which entry matched shows in the timing. */
#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/file.h>
#include <weft/spiffe.h>

#include "tokens.h"

#define TOKENS_FILE_MAX (1u << 20)
#define TOKEN_MIN 16		/* bytes; shorter tokens are guessable */
#define TOKEN_MAX 512

struct token_entry {
	char node[64];
	unsigned char hash[crypto_generichash_BYTES];
};

struct tokens {
	struct token_entry *v;	/* sodium_allocarray'd */
	size_t n;
	unsigned char key[crypto_generichash_KEYBYTES];
};

static void *tokens_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void *tokens_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return NULL;
}

static void tokens_hash(const struct tokens *t, const char *tok, size_t len,
			unsigned char out[crypto_generichash_BYTES])
{
	/* Keyed with a per-process random key: the hashes in memory are of no
	 * use outside this process. */
	crypto_generichash(out, crypto_generichash_BYTES, (const unsigned char *)tok, len,
			   t->key, sizeof(t->key));
}

struct tokens *tokens_parse(const char *buf, size_t len, const char *name,
			    char *err, size_t errlen)
{
	struct tokens *t;
	size_t cap = 0, line = 0, pos = 0;

	if (sodium_init() < 0)
		return tokens_fail(err, errlen, "%s: libsodium init failed", name);
	t = calloc(1, sizeof(*t));
	if (!t)
		return tokens_fail(err, errlen, "%s: out of memory", name);
	randombytes_buf(t->key, sizeof(t->key));
	for (size_t i = 0; i < len; i++)
		if (buf[i] == '\n')
			cap++;
	cap++;
	t->v = sodium_allocarray(cap, sizeof(*t->v));
	if (!t->v) {
		free(t);
		return tokens_fail(err, errlen, "%s: out of memory", name);
	}
	while (pos < len) {
		const char *l = buf + pos, *nl = memchr(l, '\n', len - pos);
		size_t ll = nl ? (size_t)(nl - l) : len - pos;
		const char *node, *tok;
		size_t nodelen, toklen, i = 0;

		pos += ll + 1;
		line++;
		while (i < ll && (l[i] == ' ' || l[i] == '\t'))
			i++;
		if (i == ll || l[i] == '#' || l[i] == '\r')
			continue;
		node = l + i;
		while (i < ll && l[i] != ' ' && l[i] != '\t')
			i++;
		nodelen = l + i - node;
		while (i < ll && (l[i] == ' ' || l[i] == '\t'))
			i++;
		tok = l + i;
		while (i < ll && l[i] != ' ' && l[i] != '\t' && l[i] != '\r')
			i++;
		toklen = l + i - tok;
		while (i < ll && (l[i] == ' ' || l[i] == '\t' || l[i] == '\r'))
			i++;
		if (toklen == 0 || i != ll) {
			tokens_fail(err, errlen,
					   "%s:%zu: expected \"<node-name> <token>\"", name, line);
			tokens_free(t);
			return NULL;
		}
		if (nodelen >= sizeof(t->v[0].node)) {
			tokens_fail(err, errlen, "%s:%zu: node name too long", name, line);
			tokens_free(t);
			return NULL;
		}
		struct token_entry *e = &t->v[t->n];
		memcpy(e->node, node, nodelen);
		e->node[nodelen] = 0;
		if (!spiffe_segment_valid(e->node)) {
			tokens_fail(err, errlen, "%s:%zu: \"%s\" is not a valid node name",
					   name, line, e->node);
			tokens_free(t);
			return NULL;
		}
		if (toklen < TOKEN_MIN || toklen > TOKEN_MAX) {
			tokens_fail(err, errlen, "%s:%zu: token for %s must be %d..%d bytes",
					   name, line, e->node, TOKEN_MIN, TOKEN_MAX);
			tokens_free(t);
			return NULL;
		}
		for (size_t k = 0; k < t->n; k++) {
			if (!strcmp(t->v[k].node, e->node)) {
				tokens_fail(err, errlen, "%s:%zu: second token for node %s",
						   name, line, e->node);
				tokens_free(t);
				return NULL;
			}
		}
		tokens_hash(t, tok, toklen, e->hash);
		t->n++;
	}
	return t;
}

struct tokens *tokens_load(const char *path, char *err, size_t errlen)
{
	struct tokens *t;
	size_t len;
	char *buf;
	int rc;

	rc = file_read(path, TOKENS_FILE_MAX, &buf, &len);
	if (rc)
		return tokens_fail(err, errlen, "%s: %s", path, strerror(-rc));
	t = tokens_parse(buf, len, path, err, errlen);
	sodium_memzero(buf, len);
	free(buf);
	return t;
}

void tokens_free(struct tokens *t)
{
	if (!t)
		return;
	sodium_free(t->v);	/* wipes */
	sodium_memzero(t->key, sizeof(t->key));
	free(t);
}

const char *tokens_lookup(const struct tokens *t, const char *token, size_t len)
{
	unsigned char h[crypto_generichash_BYTES];
	const char *found = NULL;

	if (!t || len > TOKEN_MAX)
		return NULL;
	tokens_hash(t, token, len, h);
	/* Visit every entry whatever matches. */
	for (size_t i = 0; i < t->n; i++) {
		int eq = sodium_memcmp(h, t->v[i].hash, sizeof(h)) == 0;
		found = eq ? t->v[i].node : found;
	}
	sodium_memzero(h, sizeof(h));
	return found;
}

size_t tokens_count(const struct tokens *t)
{
	return t ? t->n : 0;
}
