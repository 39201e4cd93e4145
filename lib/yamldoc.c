/* SPDX-License-Identifier: Apache-2.0 */
/* Loading and walking one YAML document with bounds and file:line errors,
 * shared by the agent's config and registry parsers. A streaming pre-pass
 * enforces depth and size before libyaml builds the document, and every
 * node a walk touches is counted, so neither "[[[[..." nor an alias bomb
 * costs more than the bounds allow. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <weft/yamldoc.h>

static int yamldoc_vfail(struct yamldoc *d, unsigned long line, const char *fmt, va_list ap)
{
	int n;

	if (d->err_set || !d->err || d->errlen == 0)
		return -EINVAL;
	d->err_set = 1;
	n = snprintf(d->err, d->errlen, "%s:%lu: ", d->name, line);
	if (n < 0 || (size_t)n >= d->errlen)
		return -EINVAL;
	vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
	return -EINVAL;
}

int yamldoc_fail_at(struct yamldoc *d, unsigned long line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	yamldoc_vfail(d, line, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

unsigned long yamldoc_line(const yaml_node_t *n)
{
	return (unsigned long)n->start_mark.line + 1;
}

int yamldoc_fail(struct yamldoc *d, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	yamldoc_vfail(d, n ? yamldoc_line(n) : 1, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

const char *yamldoc_quote(char *buf, const void *s, size_t len)
{
	const unsigned char *c = s;
	size_t i, o = 0;

	buf[o++] = '"';
	for (i = 0; i < len && i < YAMLDOC_QUOTE_MAX; i++) {
		if (c[i] >= 0x20 && c[i] < 0x7f && c[i] != '"' && c[i] != '\\') {
			buf[o++] = (char)c[i];
		} else {
			snprintf(buf + o, 5, "\\x%02x", c[i]);
			o += 4;
		}
	}
	if (len > YAMLDOC_QUOTE_MAX) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

const char *yamldoc_quote_scalar(char *buf, const yaml_node_t *n)
{
	return yamldoc_quote(buf, n->data.scalar.value, n->data.scalar.length);
}

const char *yamldoc_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

size_t yamldoc_seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

bool yamldoc_scalar_is(const yaml_node_t *n, const char *s)
{
	size_t l = strlen(s);

	return n->type == YAML_SCALAR_NODE && n->data.scalar.length == l &&
	       memcmp(n->data.scalar.value, s, l) == 0;
}

bool yamldoc_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return n->data.scalar.length == 0 || yamldoc_scalar_is(n, "~") ||
	       yamldoc_scalar_is(n, "null") || yamldoc_scalar_is(n, "Null") ||
	       yamldoc_scalar_is(n, "NULL");
}

/* ---- loading ------------------------------------------------------------- */

static int yamldoc_syntax_fail(struct yamldoc *d, const yaml_parser_t *ps,
			       const char *buf, size_t len)
{
	unsigned long line;
	const char *problem = ps->problem ? ps->problem : "invalid input";

	if (ps->error == YAML_MEMORY_ERROR)
		return -ENOMEM;
	if (ps->error == YAML_READER_ERROR) {
		/* Encoding errors carry a byte offset, not a mark. */
		size_t i, end = ps->problem_offset < len ? ps->problem_offset : len;

		line = 1;
		for (i = 0; i < end; i++)
			line += buf[i] == '\n';
		return yamldoc_fail_at(d, line, "YAML syntax error: %s", problem);
	}
	line = (unsigned long)ps->problem_mark.line + 1;
	if (ps->context)
		return yamldoc_fail_at(d, line, "YAML syntax error: %s (%s)", problem,
				       ps->context);
	return yamldoc_fail_at(d, line, "YAML syntax error: %s", problem);
}

/* Streams the events once to enforce the bounds before libyaml builds a
 * document: nesting depth, node count, exactly one document. */
static int yamldoc_prescan(struct yamldoc *d, const char *buf, size_t len)
{
	yaml_parser_t ps;
	yaml_event_t ev;
	size_t nodes = 0;
	int depth = 0, docs = 0, rc = 0, done = 0;

	if (!yaml_parser_initialize(&ps))
		return -ENOMEM;
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	while (!done && !rc) {
		unsigned long line;

		if (!yaml_parser_parse(&ps, &ev)) {
			rc = yamldoc_syntax_fail(d, &ps, buf, len);
			break;
		}
		line = (unsigned long)ev.start_mark.line + 1;
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = yamldoc_fail_at(d, line, "more than one YAML document; a %s holds exactly one",
						     d->kind);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > d->max_depth) {
				rc = yamldoc_fail_at(d, line, "nesting deeper than %d levels", d->max_depth);
				break;
			}
			/* fallthrough */
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT:
			if (++nodes > d->max_nodes)
				rc = yamldoc_fail_at(d, line, "document too large: more than %zu YAML nodes",
						     d->max_nodes);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			depth--;
			break;
		default:
			break;
		}
		yaml_event_delete(&ev);
	}
	yaml_parser_delete(&ps);
	if (!rc && docs == 0)
		rc = yamldoc_fail_at(d, 1, "empty document: the %s has no content", d->kind);
	return rc;
}

int yamldoc_load(struct yamldoc *d, const char *buf, size_t len, yaml_node_t **root)
{
	yaml_parser_t ps;
	int rc;

	*root = NULL;
	rc = yamldoc_prescan(d, buf, len);
	if (rc)
		return rc;
	if (!yaml_parser_initialize(&ps))
		return -ENOMEM;
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&ps, &d->doc)) {
		rc = yamldoc_syntax_fail(d, &ps, buf, len);
		yaml_parser_delete(&ps);
		return rc;
	}
	yaml_parser_delete(&ps);
	d->loaded = true;
	*root = yaml_document_get_root_node(&d->doc);
	if (!*root)
		return yamldoc_fail_at(d, 1, "empty document: the %s has no content", d->kind);
	if (yamldoc_is_null(*root))
		return yamldoc_fail(d, *root, "empty document: the %s has no content", d->kind);
	return 0;
}

void yamldoc_deinit(struct yamldoc *d)
{
	if (!d || !d->loaded)
		return;
	yaml_document_delete(&d->doc);
	d->loaded = false;
}

/* ---- walking ------------------------------------------------------------- */

yaml_node_t *yamldoc_get(struct yamldoc *d, int idx, const yaml_node_t *parent)
{
	yaml_node_t *n = yaml_document_get_node(&d->doc, idx);

	if (!n) {
		yamldoc_fail(d, parent, "malformed YAML document");
		return NULL;
	}
	if (++d->visits > d->max_nodes) {
		yamldoc_fail(d, n, "document too large: more than %zu YAML nodes (each use of an alias counts)",
			     d->max_nodes);
		return NULL;
	}
	return n;
}

int yamldoc_fields(struct yamldoc *d, const yaml_node_t *map, const char *what,
		   const char *const *keys, size_t nkeys, uint32_t required,
		   yaml_node_t **vals)
{
	const yaml_node_pair_t *pair;
	uint32_t seen = 0;
	char qb[YAMLDOC_QBUF];
	size_t i;

	if (map->type != YAML_MAPPING_NODE)
		return yamldoc_fail(d, map, "expected a mapping for %s, found %s", what,
				    yamldoc_kind(map));
	for (i = 0; i < nkeys; i++)
		vals[i] = NULL;
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = yamldoc_get(d, pair->key, map), *v;

		if (!k)
			return -EINVAL;
		if (k->type != YAML_SCALAR_NODE)
			return yamldoc_fail(d, k, "%s keys must be strings, found %s", what,
					    yamldoc_kind(k));
		for (i = 0; i < nkeys; i++)
			if (yamldoc_scalar_is(k, keys[i]))
				break;
		if (i == nkeys)
			return yamldoc_fail(d, k, "unknown key %s in %s",
					    yamldoc_quote_scalar(qb, k), what);
		if (seen & (1u << i))
			return yamldoc_fail(d, k, "duplicate key \"%s\" in %s", keys[i], what);
		seen |= 1u << i;
		v = yamldoc_get(d, pair->value, map);
		if (!v)
			return -EINVAL;
		if (yamldoc_is_null(v)) {
			if (required & (1u << i))
				return yamldoc_fail(d, v, "%s field \"%s\" must not be empty",
						    what, keys[i]);
			continue;
		}
		vals[i] = v;
	}
	for (i = 0; i < nkeys; i++)
		if ((required & (1u << i)) && !vals[i])
			return yamldoc_fail(d, map, "%s is missing required field \"%s\"",
					    what, keys[i]);
	return 0;
}
