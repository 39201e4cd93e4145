/* SPDX-License-Identifier: Apache-2.0 */
/* Flat YAML settings files, table-driven: each key names a typed field of
 * the caller's struct. Unknown keys are errors (typos must not pass
 * silently); errors read "file:line: what is wrong". I/O-free. */
#ifndef WEFT_CFGMAP_H
#define WEFT_CFGMAP_H

#include <stddef.h>
#include <stdint.h>

enum cfgmap_type {
	CFGMAP_STR = 1,		/* char *, strdup'd (replaces a default) */
	CFGMAP_PATH,		/* char *, made absolute against base_dir */
	CFGMAP_DURATION,	/* uint32_t seconds: 90, 90s, 15m, 24h, 2d */
	CFGMAP_MS,		/* uint32_t milliseconds: 500, 500ms, 2s, 1m */
	CFGMAP_UINT,		/* uint32_t within [min, max] */
	CFGMAP_BOOL,		/* int: true/false */
	CFGMAP_ENUM,		/* int index into names[] */
	CFGMAP_STRLIST,		/* struct cfgmap_strlist */
	CFGMAP_TABLES,		/* struct cfgmap_tables: a list of maps, each by sub */
};

struct cfgmap_strlist {
	char **v;
	size_t n;
};

/* n structs of the field's elem_size, each filled by its sub table from
 * zero (no defaults); the caller checks what each must hold. */
struct cfgmap_tables {
	void *v;
	size_t n;
};

/* A check on a CFGMAP_STR or CFGMAP_PATH value or a CFGMAP_STRLIST entry:
 * NULL when value is acceptable, else what is wrong with it, for
 * "key: \"value\" <what>" ("is not a lowercase DNS name"). */
typedef const char *(*cfgmap_check_fn)(const char *value);

struct cfgmap_field {
	const char *key;
	enum cfgmap_type type;
	size_t off;			/* offsetof(struct, field) */
	/* CFGMAP_UINT: the range. CFGMAP_DURATION, CFGMAP_MS: the range
	 * when max is not 0. CFGMAP_STRLIST: at most max entries (0: 64). */
	uint32_t min, max;
	const char *const *names;	/* CFGMAP_ENUM, NULL-terminated */
	cfgmap_check_fn check;		/* NULL: any string */
	/* CFGMAP_TABLES: the fields of one entry (not TABLES themselves),
	 * which keys are required (bit i for sub[i]) and the entry's size.
	 * max: at most that many entries (0: 64). */
	const struct cfgmap_field *sub;
	size_t n_sub;
	uint32_t sub_required;
	size_t elem_size;
};

/* At most this many fields in a table. */
#define CFGMAP_FIELDS_MAX 32

/* Parse buf into out (whose defaults are already set). Returns 0, or
 * -EINVAL with err filled. A key given twice is an error; a key with an
 * empty (null) value keeps its default. */
int cfgmap_parse(const char *buf, size_t len, const char *name, const char *base_dir,
		 const struct cfgmap_field *fields, size_t n_fields, void *out,
		 char *err, size_t errlen);
/* Read path and parse it (base_dir = the file's folder). */
int cfgmap_load(const char *path, size_t max, const struct cfgmap_field *fields,
		size_t n_fields, void *out, char *err, size_t errlen);
/* Free the strings, paths and lists the table points at in out. */
void cfgmap_release(const struct cfgmap_field *fields, size_t n_fields, void *out);

#endif
