/* SPDX-License-Identifier: Apache-2.0 */
/* Table-driven flat YAML settings. The document is loaded and its keys are
 * matched by yamldoc (bounds, file:line errors, unknown and repeated keys);
 * this file only turns each value into its typed field. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft/cfgmap.h>
#include <weft/file.h>
#include <weft/yamldoc.h>

#define CFGMAP_LIST_MAX 64
/* A flat mapping with short lists: these only stop a hostile file early. */
#define CFGMAP_NODES_MAX 4096
#define CFGMAP_DEPTH_MAX 8

static const char *scalar(const yaml_node_t *v)
{
	return v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value : NULL;
}

static int cfgmap_check(struct yamldoc *d, const struct cfgmap_field *f, const yaml_node_t *v,
			const char *s)
{
	const char *why = f->check ? f->check(s) : NULL;

	return why ? yamldoc_fail(d, v, "%s: \"%s\" %s", f->key, s, why) : 0;
}

/* "<digits><unit>" with units and their multipliers; no unit = unit 0.
 * The range [f->min, f->max] applies when f->max is set. */
static int cfgmap_number(struct yamldoc *d, const struct cfgmap_field *f, const yaml_node_t *v,
			 const char *const *units, const uint32_t *mul, uint32_t *out)
{
	const char *s = scalar(v);
	unsigned long long n;
	char *end;

	if (!s || !*s)
		return yamldoc_fail(d, v, "%s: expected a duration", f->key);
	errno = 0;
	n = strtoull(s, &end, 10);
	if (errno || end == s || *s < '0' || *s > '9')
		return yamldoc_fail(d, v, "%s: \"%s\" is not a duration", f->key, s);
	for (size_t i = 0; units[i]; i++) {
		if (strcmp(end, units[i]))
			continue;
		if (n > UINT32_MAX / mul[i] ||
		    (f->max && (n * mul[i] < f->min || n * mul[i] > f->max)))
			return yamldoc_fail(d, v, "%s: %s is out of range", f->key, s);
		*out = (uint32_t)(n * mul[i]);
		return 0;
	}
	return yamldoc_fail(d, v, "%s: unknown unit in \"%s\"", f->key, s);
}

static int cfgmap_list_set(struct yamldoc *d, const struct cfgmap_field *f, yaml_node_t *v,
			   struct cfgmap_strlist *l)
{
	size_t max = f->max ? f->max : CFGMAP_LIST_MAX, n;
	yaml_node_item_t *it;

	if (v->type != YAML_SEQUENCE_NODE)
		return yamldoc_fail(d, v, "%s: expected a list", f->key);
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
	n = yamldoc_seq_len(v);
	if (n > max)
		return yamldoc_fail(d, v, "%s: at most %zu entries", f->key, max);
	l->v = calloc(n ? n : 1, sizeof(*l->v));
	if (!l->v)
		return yamldoc_fail(d, v, "out of memory");
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = yamldoc_get(d, *it, v);

		if (!e)
			return -EINVAL;
		if (!scalar(e))
			return yamldoc_fail(d, e, "%s: entries must be strings", f->key);
		if (cfgmap_check(d, f, e, scalar(e)))
			return -EINVAL;
		l->v[l->n] = strdup(scalar(e));
		if (!l->v[l->n])
			return yamldoc_fail(d, e, "out of memory");
		l->n++;
	}
	return 0;
}

static int cfgmap_field_set(struct yamldoc *d, const char *base_dir,
			    const struct cfgmap_field *f, yaml_node_t *v, void *out);

static void cfgmap_tables_free(const struct cfgmap_field *f, struct cfgmap_tables *t)
{
	for (size_t i = 0; i < t->n; i++)
		cfgmap_release(f->sub, f->n_sub, (char *)t->v + i * f->elem_size);
	free(t->v);
	t->v = NULL;
	t->n = 0;
}

static int cfgmap_tables_set(struct yamldoc *d, const char *base_dir,
			     const struct cfgmap_field *f, yaml_node_t *v, struct cfgmap_tables *t)
{
	size_t max = f->max ? f->max : CFGMAP_LIST_MAX, n;
	const char *keys[CFGMAP_FIELDS_MAX];
	yaml_node_t *vals[CFGMAP_FIELDS_MAX];
	yaml_node_item_t *it;

	if (v->type != YAML_SEQUENCE_NODE)
		return yamldoc_fail(d, v, "%s: expected a list", f->key);
	if (f->n_sub > CFGMAP_FIELDS_MAX || !f->elem_size)
		return yamldoc_fail(d, v, "%s: unsupported setting type", f->key);
	cfgmap_tables_free(f, t);
	n = yamldoc_seq_len(v);
	if (n > max)
		return yamldoc_fail(d, v, "%s: at most %zu entries", f->key, max);
	t->v = calloc(n ? n : 1, f->elem_size);
	if (!t->v)
		return yamldoc_fail(d, v, "out of memory");
	for (size_t i = 0; i < f->n_sub; i++)
		keys[i] = f->sub[i].key;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
		yaml_node_t *e = yamldoc_get(d, *it, v);
		void *elem = (char *)t->v + t->n * f->elem_size;

		if (!e)
			return -EINVAL;
		if (e->type != YAML_MAPPING_NODE)
			return yamldoc_fail(d, e, "%s: entries must be maps", f->key);
		t->n++;		/* released with the others from here on */
		if (yamldoc_fields(d, e, f->key, keys, f->n_sub, f->sub_required, vals))
			return -EINVAL;
		for (size_t k = 0; k < f->n_sub; k++) {
			if (f->sub[k].type == CFGMAP_TABLES)
				return yamldoc_fail(d, e, "%s: unsupported setting type", f->key);
			if (vals[k] && cfgmap_field_set(d, base_dir, &f->sub[k], vals[k], elem))
				return -EINVAL;
		}
	}
	return 0;
}

static int cfgmap_field_set(struct yamldoc *d, const char *base_dir,
			    const struct cfgmap_field *f, yaml_node_t *v, void *out)
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
			return yamldoc_fail(d, v, "%s: expected a string", f->key);
		if (cfgmap_check(d, f, v, s))
			return -EINVAL;
		if (f->type == CFGMAP_PATH && s[0] != '/' && base_dir) {
			if (asprintf(&val, "%s/%s", base_dir, s) < 0)
				val = NULL;
		} else {
			val = strdup(s);
		}
		if (!val)
			return yamldoc_fail(d, v, "out of memory");
		free(*dst);
		*dst = val;
		return 0;
	}
	case CFGMAP_DURATION:
		return cfgmap_number(d, f, v, dur_units, dur_mul, (uint32_t *)field);
	case CFGMAP_MS:
		return cfgmap_number(d, f, v, ms_units, ms_mul, (uint32_t *)field);
	case CFGMAP_UINT: {
		unsigned long n;
		char *end;
		if (!s || !*s || *s == '-')
			return yamldoc_fail(d, v, "%s: expected an integer", f->key);
		errno = 0;
		n = strtoul(s, &end, 10);
		if (errno || *end || n < f->min || n > f->max)
			return yamldoc_fail(d, v, "%s: expected an integer in %u..%u, got \"%s\"",
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
			return yamldoc_fail(d, v, "%s: expected true or false", f->key);
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
			return yamldoc_fail(d, v, "%s: expected one of %s", f->key, opts);
		}
	case CFGMAP_STRLIST:
		return cfgmap_list_set(d, f, v, (struct cfgmap_strlist *)field);
	case CFGMAP_TABLES:
		return cfgmap_tables_set(d, base_dir, f, v, (struct cfgmap_tables *)field);
	}
	return yamldoc_fail(d, v, "%s: unsupported setting type", f->key);
}

int cfgmap_parse(const char *buf, size_t len, const char *name, const char *base_dir,
		 const struct cfgmap_field *fields, size_t n_fields, void *out,
		 char *err, size_t errlen)
{
	struct yamldoc d = {
		.name = name, .kind = "settings file", .err = err, .errlen = errlen,
		.max_nodes = CFGMAP_NODES_MAX, .max_depth = CFGMAP_DEPTH_MAX,
	};
	const char *keys[CFGMAP_FIELDS_MAX];
	yaml_node_t *vals[CFGMAP_FIELDS_MAX], *root;
	int rc;

	if (n_fields > CFGMAP_FIELDS_MAX) {
		snprintf(err, errlen, "%s: more than %d settings in the table", name,
			 CFGMAP_FIELDS_MAX);
		return -E2BIG;
	}
	for (size_t i = 0; i < n_fields; i++)
		keys[i] = fields[i].key;
	rc = yamldoc_load(&d, buf, len, &root);
	if (!rc)
		rc = yamldoc_fields(&d, root, "settings", keys, n_fields, 0, vals);
	for (size_t i = 0; !rc && i < n_fields; i++)
		if (vals[i])
			rc = cfgmap_field_set(&d, base_dir, &fields[i], vals[i], out);
	yamldoc_deinit(&d);
	if (rc == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", name);
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
		} else if (fields[i].type == CFGMAP_TABLES) {
			cfgmap_tables_free(&fields[i], (struct cfgmap_tables *)field);
		}
	}
}
