/* SPDX-License-Identifier: Apache-2.0 */
/* Node bootstrap tokens: "<node-name> <token>" per line. Tokens live in
 * sodium_malloc memory and are compared in constant time; never logged. */
#ifndef AGENT_TOKENS_H
#define AGENT_TOKENS_H

#include <stddef.h>

struct tokens;

/* Parse the token file body. NULL with err ("name:line: ...") on failure. */
struct tokens *tokens_parse(const char *buf, size_t len, const char *name,
			    char *err, size_t errlen);
struct tokens *tokens_load(const char *path, char *err, size_t errlen);
void tokens_free(struct tokens *t);
/* The node name the token belongs to, or NULL. Time does not depend on
 * which entry (if any) matches, nor on where the bytes differ. */
const char *tokens_lookup(const struct tokens *t, const char *token, size_t len);
size_t tokens_count(const struct tokens *t);

#endif
