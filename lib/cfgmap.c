/* SPDX-License-Identifier: Apache-2.0 */
/* Table-driven flat YAML settings, on libyaml's document API. */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include <weft/cfgmap.h>
#include <weft/file.h>

#define CFGMAP_LIST_MAX 64

struct cfgmap_ctx {
	yaml_document_t *doc;
	const char *name;
	const char *base_dir;
	char *err;
	size_t errlen;
};

static int cfgmap_fail(struct cfgmap_ctx *p, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int cfgmap_fail(struct cfgmap_ctx *p, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	int o;

	o = snprintf(p->err, p->errlen, "%s:%zu: ", p->name, n ? n->start_mark.line + 1 : 1);
	if (o < 0 || (size_t)o >= p->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + o, p->errlen - o, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static const char *scalar(const yaml_node_t *v)
{
	return v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
}

/* "<digits><unit>" with units and their multipliers; no unit = unit 0. */
static int cfgmap_number(struct cfgmap_ctx *p, const char *key, const yaml_node_t *v,
			 const char *const *units, const uint32_t *mul, uint32_t *out)
{
	const char *s = scalar(v);
	unsigned long long n;
	char *end;

	if (!s || !*s || *s == '-')
		return cfgmap_fail(p, v, "%s: expected a duration", key);
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s)
		return cfgmap_fail(p, v, "%s: \"%s\" is not a duration", key, s);
	for (size_t i = 0; units[i]; i++) {
		if (!strcmp(end, units[i])) {
			if (n > UINT32_MAX / mul[i])
				return cfgmap_fail(p, v, "%s: %s is out of range", key, s);
			*out = (uint32_t)(n * mul[i]);
			return 0;
		}
	}
	return cfgmap_fail(p, v, "%s: unknown unit in \"%s\"", key, s);
}

static int cfgmap_field_set(struct cfgmap_ctx *p, const struct cfgmap_field *f,
			    yaml_node_t *v, void *out)
{
	static const char *const dur_units[] = { "", "s", "m", "h", "d", NULL };
	static const uint32_t dur_mul[] = { 1, 1, 60, 3600, 86400 };
	static const char *const ms_units[] = { "", "ms", "s", "m", NULL };
	static const uint32_t ms_mul[] = { 1, 1, 1000, 60000 };
	char *field = (char *)out + f->off;
	const char *s = scalar(v);

	switch (f->type) {
	case CFGMAP_STR:
	case CFGMAP_PATH: {
		char **dst = (char **)field, *val;
		if (!s)
			return cfgmap_fail(p, v, "%s: expected a string", f->key);
		if (f->type == CFGMAP_PATH && s[0] != '/' && p->base_dir) {
			if (asprintf(&val, "%s/%s", p->base_dir, s) < 0)
				val = NULL;
		} else {
			val = strdup(s);
		}
		if (!val)
			return cfgmap_fail(p, v, "out of memory");
		free(*dst);
		*dst = val;
		return 0;
	}
	case CFGMAP_DURATION:
		return cfgmap_number(p, f->key, v, dur_units, dur_mul, (uint32_t *)field);
	case CFGMAP_MS:
		return cfgmap_number(p, f->key, v, ms_units, ms_mul, (uint32_t *)field);
	case CFGMAP_UINT: {
		unsigned long n;
		char *end;
		if (!s || !*s || *s == '-')
			return cfgmap_fail(p, v, "%s: expected an integer", f->key);
		errno = 0;
		n = strtoul(s, &end, 10);
		if (errno || *end || n < f->min || n > f->max)
			return cfgmap_fail(p, v, "%s: expected an integer in %u..%u, got \"%s\"",
					   f->key, f->min, f->max, s);
		*(uint32_t *)field = (uint32_t)n;
		return 0;
	}
	case CFGMAP_BOOL:
		if (s && !strcmp(s, "true"))
			*(int *)field = 1;
		else if (s && !strcmp(s, "false"))
			*(int *)field = 0;
		else
			return cfgmap_fail(p, v, "%s: expected true or false", f->key);
		return 0;
	case CFGMAP_ENUM:
		for (int i = 0; s && f->names[i]; i++) {
			if (!strcmp(s, f->names[i])) {
				*(int *)field = i;
				return 0;
			}
		}
		{
			char opts[256] = "";
			for (int i = 0; f->names[i]; i++)
				snprintf(opts + strlen(opts), sizeof(opts) - strlen(opts), "%s%s",
					 i ? ", " : "", f->names[i]);
			return cfgmap_fail(p, v, "%s: expected one of %s", f->key, opts);
		}
	case CFGMAP_STRLIST: {
		struct cfgmap_strlist *l = (struct cfgmap_strlist *)field;
		yaml_node_item_t *it;
		if (v->type != YAML_SEQUENCE_NODE)
			return cfgmap_fail(p, v, "%s: expected a list", f->key);
		for (size_t i = 0; i < l->n; i++)
			free(l->v[i]);
		free(l->v);
		l->v = NULL;
		l->n = 0;
		size_t n = v->data.sequence.items.top - v->data.sequence.items.start;
		if (n > CFGMAP_LIST_MAX)
			return cfgmap_fail(p, v, "%s: at most %d entries", f->key, CFGMAP_LIST_MAX);
		l->v = calloc(n ? n : 1, sizeof(*l->v));
		if (!l->v)
			return cfgmap_fail(p, v, "out of memory");
		for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
			yaml_node_t *e = yaml_document_get_node(p->doc, *it);
			if (!scalar(e))
				return cfgmap_fail(p, e, "%s: entries must be strings", f->key);
			l->v[l->n] = strdup(scalar(e));
			if (!l->v[l->n])
				return cfgmap_fail(p, e, "out of memory");
			l->n++;
		}
		return 0;
	}
	}
	return cfgmap_fail(p, v, "%s: unsupported setting type", f->key);
}

int cfgmap_parse(const char *buf, size_t len, const char *name, const char *base_dir,
		 const struct cfgmap_field *fields, size_t n_fields, void *out,
		 char *err, size_t errlen)
{
	struct cfgmap_ctx p = { .name = name, .base_dir = base_dir, .err = err, .errlen = errlen };
	unsigned char seen[256] = { 0 };
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	int rc = -EINVAL;

	if (n_fields > sizeof(seen))
		return -E2BIG;
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, errlen, "%s:%zu: YAML syntax: %s", name,
			 parser.problem_mark.line + 1, parser.problem ? parser.problem : "error");
		goto out_parser;
	}
	p.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (!root) {
		rc = 0;		/* an empty file: all defaults */
		goto out_doc;
	}
	if (root->type != YAML_MAPPING_NODE) {
		cfgmap_fail(&p, root, "expected a mapping of settings");
		goto out_doc;
	}
	for (yaml_node_pair_t *pair = root->data.mapping.pairs.start;
	     pair < root->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yaml_document_get_node(&doc, pair->key);
		yaml_node_t *v = yaml_document_get_node(&doc, pair->value);
		const char *key = scalar(k);
		size_t i;

		if (!key) {
			cfgmap_fail(&p, k, "keys must be strings");
			goto out_doc;
		}
		for (i = 0; i < n_fields && strcmp(fields[i].key, key); i++)
			;
		if (i == n_fields) {
			cfgmap_fail(&p, k, "unknown key \"%s\"", key);
			goto out_doc;
		}
		if (seen[i]++) {
			cfgmap_fail(&p, k, "\"%s\" is set twice", key);
			goto out_doc;
		}
		if (cfgmap_field_set(&p, &fields[i], v, out))
			goto out_doc;
	}
	rc = 0;
out_doc:
	yaml_document_delete(&doc);
out_parser:
	yaml_parser_delete(&parser);
	return rc;
}

int cfgmap_load(const char *path, size_t max, const struct cfgmap_field *fields,
		size_t n_fields, void *out, char *err, size_t errlen)
{
	char dir[PATH_MAX], *slash, *buf;
	size_t len;
	int rc;

	rc = file_read(path, max, &buf, &len);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path, rc == -EFBIG ? "file too large" : strerror(-rc));
		return rc;
	}
	if (!realpath(path, dir))
		snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash)
		*slash = 0;
	rc = cfgmap_parse(buf, len, path, slash ? dir : ".", fields, n_fields, out, err, errlen);
	free(buf);
	return rc;
}

void cfgmap_release(const struct cfgmap_field *fields, size_t n_fields, void *out)
{
	for (size_t i = 0; i < n_fields; i++) {
		char *field = (char *)out + fields[i].off;
		if (fields[i].type == CFGMAP_STR || fields[i].type == CFGMAP_PATH) {
			free(*(char **)field);
			*(char **)field = NULL;
		} else if (fields[i].type == CFGMAP_STRLIST) {
			struct cfgmap_strlist *l = (struct cfgmap_strlist *)field;
			for (size_t k = 0; k < l->n; k++)
				free(l->v[k]);
			free(l->v);
			l->v = NULL;
			l->n = 0;
		}
	}
}
