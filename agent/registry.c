/* SPDX-License-Identifier: Apache-2.0 */
/* The registry file parser: one YAML document (libyaml document API) in,
 * an owned struct registry or "file:line: what is wrong" out. Pure (no I/O,
 * no logging, no globals) so the agent, the unit tests and the fuzzer share
 * it. Every array in the result is sorted by its key (node name, workload
 * uid, service and policy namespace/name) so lookups can bisect and the
 * protobuf conversion is deterministic. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "registry.h"

/* Input bounds. The file limit keeps a bad write from making the agent
 * allocate without end; the node limit also bounds the walk, because every
 * use of an alias is counted again (no "billion laughs"). The schema is at
 * most seven levels deep, so 32 is generous and stops "[[[[..." early. */
#define REG_MAX_FILE		(16u << 20)
#define REG_MAX_NODES		100000
#define REG_MAX_DEPTH		32
#define REG_MAX_NAME		253	/* DNS-1123 subdomain; cluster, network */
#define REG_MAX_LABEL		63	/* DNS-1123 label */
#define REG_MAX_UID		512
#define REG_MAX_STRING		1024	/* principals and other free strings */
#define REG_MAX_TRUST_DOMAIN	255
#define REG_DEFAULT_HBONE_PORT	15008

#define QUOTE_MAX	64	/* user text quoted in an error is cut here */
#define QBUF		(QUOTE_MAX * 4 + 8)

struct parse {
	const char *name;	/* file name for messages */
	char *err;
	size_t errlen;
	int err_set;
	yaml_document_t *doc;
	size_t visits;		/* nodes walked, aliases counted again */
	struct registry *r;
	/* 1-based source lines, indexed like the arrays in r before sorting */
	unsigned long *node_line, *wl_line, *svc_line, *pol_line;
};

/* ---- errors ------------------------------------------------------------ */

static int perr_at(struct parse *p, unsigned long line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Formats "name:line: message" once (the first error wins: it is the
 * cause, later ones are consequences). Returns -EINVAL for chaining. */
static int perr_at(struct parse *p, unsigned long line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (p->err_set || !p->err || p->errlen == 0)
		return -EINVAL;
	p->err_set = 1;
	n = snprintf(p->err, p->errlen, "%s:%lu: ", p->name, line);
	if (n < 0 || (size_t)n >= p->errlen)
		return -EINVAL;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

#define LINE(node) ((unsigned long)(node)->start_mark.line + 1)
#define perr(p, node, ...) perr_at((p), LINE(node), __VA_ARGS__)

/* Quotes file text for an error message: printable ASCII as is, anything
 * else as \xNN, cut at QUOTE_MAX bytes, so a message stays one short line
 * whatever the file holds. */
static const char *quote(char *buf, const void *s, size_t len)
{
	const unsigned char *c = s;
	size_t i, o = 0;

	buf[o++] = '"';
	for (i = 0; i < len && i < QUOTE_MAX; i++) {
		if (c[i] >= 0x20 && c[i] < 0x7f && c[i] != '"' && c[i] != '\\') {
			buf[o++] = (char)c[i];
		} else {
			snprintf(buf + o, 5, "\\x%02x", c[i]);
			o += 4;
		}
	}
	if (len > QUOTE_MAX) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

static const char *qscalar(char *buf, const yaml_node_t *n)
{
	return quote(buf, n->data.scalar.value, n->data.scalar.length);
}

static const char *qstr(char *buf, const char *s)
{
	return quote(buf, s, strlen(s));
}

static const char *kind_name(const yaml_node_t *n)
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

/* ---- syntax pass ------------------------------------------------------- */

static int yaml_fail(struct parse *p, const yaml_parser_t *ps,
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
		return perr_at(p, line, "YAML syntax error: %s", problem);
	}
	line = (unsigned long)ps->problem_mark.line + 1;
	if (ps->context)
		return perr_at(p, line, "YAML syntax error: %s (%s)", problem,
			       ps->context);
	return perr_at(p, line, "YAML syntax error: %s", problem);
}

/* Streams the events once to enforce the bounds before libyaml builds a
 * document: nesting depth, node count, exactly one document. */
static int yaml_prescan(struct parse *p, const char *buf, size_t len)
{
	yaml_parser_t ps;
	yaml_event_t ev;
	size_t nodes = 0;
	int depth = 0, docs = 0, rc = 0, done = 0;

	if (!yaml_parser_initialize(&ps))
		return -ENOMEM;
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	while (!done && !rc) {
		if (!yaml_parser_parse(&ps, &ev)) {
			rc = yaml_fail(p, &ps, buf, len);
			break;
		}
		switch (ev.type) {
		case YAML_STREAM_END_EVENT:
			done = 1;
			break;
		case YAML_DOCUMENT_START_EVENT:
			if (++docs > 1)
				rc = perr(p, &ev, "more than one YAML document; a registry file holds exactly one");
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			if (++depth > REG_MAX_DEPTH) {
				rc = perr(p, &ev, "nesting deeper than %d levels", REG_MAX_DEPTH);
				break;
			}
			/* fallthrough */
		case YAML_SCALAR_EVENT:
		case YAML_ALIAS_EVENT:
			if (++nodes > REG_MAX_NODES)
				rc = perr(p, &ev, "document too large: more than %d YAML nodes", REG_MAX_NODES);
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
		rc = perr_at(p, 1, "empty document: the registry file has no content");
	return rc;
}

/* ---- node access ------------------------------------------------------- */

/* Every node the walk touches goes through here, so an alias used many
 * times costs as much as the copies it stands for. */
static yaml_node_t *pget(struct parse *p, int idx, const yaml_node_t *parent)
{
	yaml_node_t *n = yaml_document_get_node(p->doc, idx);

	if (!n) {
		perr(p, parent, "malformed YAML document");
		return NULL;
	}
	if (++p->visits > REG_MAX_NODES) {
		perr(p, n, "document too large: more than %d YAML nodes (each use of an alias counts)",
		     REG_MAX_NODES);
		return NULL;
	}
	return n;
}

static bool scalar_is(const yaml_node_t *n, const char *s)
{
	size_t l = strlen(s);

	return n->type == YAML_SCALAR_NODE && n->data.scalar.length == l &&
	       memcmp(n->data.scalar.value, s, l) == 0;
}

/* YAML's null: an empty or ~/null plain scalar. Treated as "field absent"
 * so that "labels:" with nothing after it means no labels. */
static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	return n->data.scalar.length == 0 || scalar_is(n, "~") || scalar_is(n, "null") ||
	       scalar_is(n, "Null") || scalar_is(n, "NULL");
}

/* Splits a mapping of a known shape into vals[] by keys[]: catches unknown
 * keys (typos), repeated keys and missing required ones (bit i of required
 * for keys[i]). Null values leave vals[i] NULL. */
static int map_fields(struct parse *p, const yaml_node_t *map, const char *what,
		      const char *const *keys, size_t nkeys, uint32_t required,
		      yaml_node_t **vals)
{
	const yaml_node_pair_t *pair;
	uint32_t seen = 0;
	char qb[QBUF];
	size_t i;

	if (map->type != YAML_MAPPING_NODE)
		return perr(p, map, "expected a mapping for %s, found %s", what, kind_name(map));
	for (i = 0; i < nkeys; i++)
		vals[i] = NULL;
	for (pair = map->data.mapping.pairs.start; pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = pget(p, pair->key, map), *v;

		if (!k)
			return -EINVAL;
		if (k->type != YAML_SCALAR_NODE)
			return perr(p, k, "%s keys must be strings, found %s", what, kind_name(k));
		for (i = 0; i < nkeys; i++)
			if (scalar_is(k, keys[i]))
				break;
		if (i == nkeys)
			return perr(p, k, "unknown key %s in %s", qscalar(qb, k), what);
		if (seen & (1u << i))
			return perr(p, k, "duplicate key \"%s\" in %s", keys[i], what);
		seen |= 1u << i;
		v = pget(p, pair->value, map);
		if (!v)
			return -EINVAL;
		if (is_null(v)) {
			if (required & (1u << i))
				return perr(p, v, "%s field \"%s\" must not be empty", what, keys[i]);
			continue;
		}
		vals[i] = v;
	}
	for (i = 0; i < nkeys; i++)
		if ((required & (1u << i)) && !vals[i])
			return perr(p, map, "%s is missing required field \"%s\"", what, keys[i]);
	return 0;
}

/* ---- scalar validators --------------------------------------------------- */

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

/* RFC 1123 label as Kubernetes uses it: these names end up in SPIFFE IDs
 * and DNS names, so anything else would make an identity nobody can
 * match. */
static bool dns_label_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > REG_MAX_LABEL)
		return false;
	if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
		return false;
	for (i = 0; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

static bool dns_subdomain_ok(const char *s, size_t len)
{
	size_t start = 0, i;

	if (len == 0 || len > REG_MAX_NAME)
		return false;
	for (i = 0; i <= len; i++) {
		if (i == len || s[i] == '.') {
			if (!dns_label_ok(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

/* Kubernetes label name: [A-Za-z0-9] at both ends, '-', '_', '.' inside. */
static bool label_name_ok(const char *s, size_t len, bool allow_empty)
{
	size_t i;

	if (len == 0)
		return allow_empty;
	if (len > REG_MAX_LABEL || !is_alnum(s[0]) || !is_alnum(s[len - 1]))
		return false;
	for (i = 0; i < len; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' && s[i] != '.')
			return false;
	return true;
}

/* Kubernetes label key: [prefix/]name, prefix a DNS subdomain. */
static bool label_key_ok(const char *s, size_t len)
{
	const char *slash = memchr(s, '/', len);

	if (!slash)
		return label_name_ok(s, len, false);
	return dns_subdomain_ok(s, (size_t)(slash - s)) &&
	       label_name_ok(slash + 1, len - (size_t)(slash - s) - 1, false);
}

/* SPIFFE trust domain: lowercase letters, digits, '.', '-', '_'. */
static bool trust_domain_ok(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > REG_MAX_TRUST_DOMAIN)
		return false;
	for (i = 0; i < len; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '.' && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* Printable, no whitespace: uids, principals and namespace patterns are
 * matched byte for byte, and a stray space would never match. */
static bool token_ok(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
			return false;
	return len > 0;
}

/* ---- typed getters ------------------------------------------------------- */

enum str_check {
	STR_ANY = 0,		/* printable text (cluster, network) */
	STR_TOKEN,		/* no whitespace or control bytes */
	STR_DNS_LABEL,
	STR_DNS_SUBDOMAIN,
	STR_TRUST_DOMAIN,
};

/* A scalar as an owned C string, checked by kind and bounded by max. */
static int get_str(struct parse *p, const yaml_node_t *n, const char *what,
		   const char *field, enum str_check check, size_t max, char **out)
{
	const char *s;
	size_t len, i;
	char qb[QBUF];

	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, "%s %s: expected a string, found %s", what, field, kind_name(n));
	s = (const char *)n->data.scalar.value;
	len = n->data.scalar.length;
	if (len == 0)
		return perr(p, n, "%s %s: must not be empty", what, field);
	if (len > max)
		return perr(p, n, "%s %s: longer than %zu characters", what, field, max);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return perr(p, n, "%s %s: %s contains a control character",
				    what, field, qscalar(qb, n));
	switch (check) {
	case STR_ANY:
		break;
	case STR_TOKEN:
		if (!token_ok(s, len))
			return perr(p, n, "%s %s: %s must not contain spaces",
				    what, field, qscalar(qb, n));
		break;
	case STR_DNS_LABEL:
		if (!dns_label_ok(s, len))
			return perr(p, n, "%s %s: %s is not a valid DNS-1123 label "
				    "(lowercase letters, digits and '-', at most 63 characters, "
				    "starting and ending with a letter or digit)",
				    what, field, qscalar(qb, n));
		break;
	case STR_DNS_SUBDOMAIN:
		if (!dns_subdomain_ok(s, len))
			return perr(p, n, "%s %s: %s is not a valid DNS-1123 subdomain "
				    "(dot-separated lowercase labels of letters, digits and '-', "
				    "at most 253 characters)",
				    what, field, qscalar(qb, n));
		break;
	case STR_TRUST_DOMAIN:
		if (!trust_domain_ok(s, len))
			return perr(p, n, "%s %s: %s is not a valid trust domain "
				    "(lowercase letters, digits, '.', '-' and '_')",
				    what, field, qscalar(qb, n));
		break;
	}
	*out = strndup(s, len);
	return *out ? 0 : -ENOMEM;
}

/* An IP literal, stored in canonical form so "::0001" and "::1" are one
 * address everywhere downstream. */
static int get_ip(struct parse *p, const yaml_node_t *n, const char *what,
		  const char *field, char **out)
{
	unsigned char bin[16];
	char txt[INET6_ADDRSTRLEN], *s;
	char qb[QBUF];
	int rc, af;

	rc = get_str(p, n, what, field, STR_ANY, INET6_ADDRSTRLEN, &s);
	if (rc)
		return rc;
	af = inet_pton(AF_INET, s, bin) == 1 ? AF_INET :
	     inet_pton(AF_INET6, s, bin) == 1 ? AF_INET6 : 0;
	free(s);
	if (!af)
		return perr(p, n, "%s %s: %s is not an IPv4 or IPv6 address",
			    what, field, qscalar(qb, n));
	inet_ntop(af, bin, txt, sizeof(txt));
	*out = strdup(txt);
	return *out ? 0 : -ENOMEM;
}

/* "address/prefix" or a single address (a host route); canonical text. */
static int get_cidr(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, char **out)
{
	unsigned char bin[16];
	char txt[INET6_ADDRSTRLEN + 8], *s, *slash;
	char qb[QBUF];
	unsigned long plen = 0;
	int rc, af, max;

	rc = get_str(p, n, what, field, STR_ANY, INET6_ADDRSTRLEN + 4, &s);
	if (rc)
		return rc;
	slash = strchr(s, '/');
	if (slash)
		*slash = '\0';
	af = inet_pton(AF_INET, s, bin) == 1 ? AF_INET :
	     inet_pton(AF_INET6, s, bin) == 1 ? AF_INET6 : 0;
	max = af == AF_INET ? 32 : 128;
	if (af && slash) {
		const char *d = slash + 1;
		size_t i, dl = strlen(d);

		if (dl == 0 || dl > 3)
			af = 0;
		for (i = 0; af && i < dl; i++) {
			if (d[i] < '0' || d[i] > '9')
				af = 0;
			else
				plen = plen * 10 + (unsigned long)(d[i] - '0');
		}
		if (af && plen > (unsigned long)max) {
			free(s);
			return perr(p, n, "%s %s: %s has a prefix length out of range 0..%d",
				    what, field, qscalar(qb, n), max);
		}
	}
	free(s);
	if (!af)
		return perr(p, n, "%s %s: %s is not a CIDR (address/prefix length) or IP address",
			    what, field, qscalar(qb, n));
	inet_ntop(af, bin, txt, INET6_ADDRSTRLEN);
	if (slash)
		snprintf(txt + strlen(txt), 8, "/%lu", plen);
	*out = strdup(txt);
	return *out ? 0 : -ENOMEM;
}

/* A TCP port, 1..65535, written as a plain integer. A quoted "80" is a
 * string in YAML; refusing it keeps the file's meaning unambiguous. */
static int get_port(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, uint16_t *out)
{
	const char *s;
	size_t len, i;
	unsigned long v = 0;
	char qb[QBUF];

	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, "%s %s: expected an integer, found %s", what, field, kind_name(n));
	s = (const char *)n->data.scalar.value;
	len = n->data.scalar.length;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || len == 0)
		return perr(p, n, "%s %s: expected an integer, found the string %s",
			    what, field, qscalar(qb, n));
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return perr(p, n, "%s %s: expected an integer, found %s",
				    what, field, qscalar(qb, n));
		if (v <= 65535)
			v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return perr(p, n, "%s %s: %s is out of range 1..65535", what, field, qscalar(qb, n));
	*out = (uint16_t)v;
	return 0;
}

static int get_enum(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, const char *const *names, size_t count, int *out)
{
	char list[128] = "", qb[QBUF];
	size_t i;

	if (n->type != YAML_SCALAR_NODE)
		return perr(p, n, "%s %s: expected a string, found %s", what, field, kind_name(n));
	for (i = 0; i < count; i++) {
		if (scalar_is(n, names[i])) {
			*out = (int)i;
			return 0;
		}
	}
	for (i = 0; i < count; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
	}
	return perr(p, n, "%s %s: %s is not one of %s", what, field, qscalar(qb, n), list);
}

static int expect_seq(struct parse *p, const yaml_node_t *n, const char *what,
		      const char *field)
{
	if (n->type != YAML_SEQUENCE_NODE)
		return perr(p, n, "%s %s: expected a list, found %s", what, field, kind_name(n));
	return 0;
}

static size_t seq_len(const yaml_node_t *n)
{
	return (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
}

enum strv_check {
	SV_TOKEN = 0,
	SV_IP,
	SV_CIDR,
};

static int get_strv(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, enum strv_check check, char ***out, size_t *nout)
{
	size_t i, cnt;
	int rc;

	rc = expect_seq(p, n, what, field);
	if (rc)
		return rc;
	cnt = seq_len(n);
	if (cnt == 0)
		return 0;
	*out = calloc(cnt, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	*nout = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = pget(p, n->data.sequence.items.start[i], n);

		if (!it)
			return -EINVAL;
		switch (check) {
		case SV_IP:
			rc = get_ip(p, it, what, field, &(*out)[i]);
			break;
		case SV_CIDR:
			rc = get_cidr(p, it, what, field, &(*out)[i]);
			break;
		default:
			rc = get_str(p, it, what, field, STR_TOKEN, REG_MAX_STRING, &(*out)[i]);
			break;
		}
		if (rc)
			return rc;
	}
	return 0;
}

static int get_portv(struct parse *p, const yaml_node_t *n, const char *what,
		     const char *field, struct reg_portv *out)
{
	size_t i, cnt;
	int rc;

	rc = expect_seq(p, n, what, field);
	if (rc)
		return rc;
	cnt = seq_len(n);
	if (cnt == 0)
		return 0;
	out->v = calloc(cnt, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	out->n = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = pget(p, n->data.sequence.items.start[i], n);

		if (!it)
			return -EINVAL;
		rc = get_port(p, it, what, field, &out->v[i]);
		if (rc)
			return rc;
	}
	return 0;
}

struct label_tmp {
	struct reg_label l;
	unsigned long line;
	size_t idx;
};

static int label_tmp_cmp(const void *a, const void *b)
{
	const struct label_tmp *x = a, *y = b;
	int d = strcmp(x->l.key, y->l.key);

	if (d)
		return d;
	return (x->idx > y->idx) - (x->idx < y->idx);
}

/* A string-to-string mapping with Kubernetes label rules, sorted by key. */
static int get_labels(struct parse *p, const yaml_node_t *n, const char *what,
		      const char *field, struct reg_label **out, size_t *nout)
{
	const yaml_node_pair_t *pair;
	struct label_tmp *t;
	size_t i, cnt;
	char qb[QBUF];
	int rc = 0;

	if (n->type != YAML_MAPPING_NODE)
		return perr(p, n, "%s %s: expected a mapping, found %s", what, field, kind_name(n));
	cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt == 0)
		return 0;
	t = calloc(cnt, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (i = 0, pair = n->data.mapping.pairs.start; i < cnt; i++, pair++) {
		yaml_node_t *k = pget(p, pair->key, n), *v;

		if (!k)
			goto fail;
		v = pget(p, pair->value, n);
		if (!v)
			goto fail;
		t[i].idx = i;
		t[i].line = LINE(k);
		if (k->type != YAML_SCALAR_NODE) {
			rc = perr(p, k, "%s %s: keys must be strings, found %s", what, field,
				  kind_name(k));
			goto fail;
		}
		if (!label_key_ok((const char *)k->data.scalar.value, k->data.scalar.length)) {
			rc = perr(p, k, "%s %s: %s is not a valid label key "
				  "([prefix/]name, name at most 63 letters, digits, '-', '_' or '.', "
				  "starting and ending with a letter or digit)",
				  what, field, qscalar(qb, k));
			goto fail;
		}
		if (v->type != YAML_SCALAR_NODE) {
			rc = perr(p, v, "%s %s: value of %s: expected a string, found %s",
				  what, field, qscalar(qb, k), kind_name(v));
			goto fail;
		}
		if (!label_name_ok((const char *)v->data.scalar.value, v->data.scalar.length, true)) {
			rc = perr(p, v, "%s %s: %s is not a valid label value "
				  "(at most 63 letters, digits, '-', '_' or '.', "
				  "starting and ending with a letter or digit)",
				  what, field, qscalar(qb, v));
			goto fail;
		}
		t[i].l.key = strndup((const char *)k->data.scalar.value, k->data.scalar.length);
		t[i].l.value = strndup((const char *)v->data.scalar.value, v->data.scalar.length);
		if (!t[i].l.key || !t[i].l.value) {
			rc = -ENOMEM;
			goto fail;
		}
	}
	qsort(t, cnt, sizeof(*t), label_tmp_cmp);
	for (i = 1; i < cnt; i++) {
		if (strcmp(t[i - 1].l.key, t[i].l.key) == 0) {
			rc = perr_at(p, t[i].line, "%s %s: duplicate key %s",
				     what, field, qstr(qb, t[i].l.key));
			goto fail;
		}
	}
	*out = calloc(cnt, sizeof(**out));
	if (!*out) {
		rc = -ENOMEM;
		goto fail;
	}
	for (i = 0; i < cnt; i++)
		(*out)[i] = t[i].l;
	*nout = cnt;
	free(t);
	return 0;
fail:
	for (i = 0; i < cnt; i++) {
		free(t[i].l.key);
		free(t[i].l.value);
	}
	free(t);
	return rc ? rc : -EINVAL;
}

/* ---- resources ------------------------------------------------------------ */

static int parse_node(struct parse *p, const yaml_node_t *m, void *out)
{
	struct reg_node *nd = out;
	static const char *const keys[] = { "name", "address", "hbone_port", "cluster", "network" };
	enum { K_NAME, K_ADDR, K_PORT, K_CLUSTER, K_NETWORK, K_N };
	yaml_node_t *v[K_N];
	int rc;

	rc = map_fields(p, m, "node", keys, K_N, 1u << K_NAME | 1u << K_ADDR, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "node", "name", STR_DNS_LABEL, REG_MAX_LABEL, &nd->name);
	if (!rc)
		rc = get_ip(p, v[K_ADDR], "node", "address", &nd->address);
	nd->hbone_port = REG_DEFAULT_HBONE_PORT;
	if (!rc && v[K_PORT])
		rc = get_port(p, v[K_PORT], "node", "hbone_port", &nd->hbone_port);
	if (!rc)
		rc = v[K_CLUSTER] ? get_str(p, v[K_CLUSTER], "node", "cluster", STR_TOKEN,
					    REG_MAX_NAME, &nd->cluster)
				  : ((nd->cluster = strdup("")) ? 0 : -ENOMEM);
	if (!rc)
		rc = v[K_NETWORK] ? get_str(p, v[K_NETWORK], "node", "network", STR_TOKEN,
					    REG_MAX_NAME, &nd->network)
				  : ((nd->network = strdup("")) ? 0 : -ENOMEM);
	return rc;
}

static int parse_workload(struct parse *p, const yaml_node_t *m, void *out)
{
	struct reg_workload *w = out;
	static const char *const keys[] = { "name", "namespace", "service_account", "node",
					    "ips", "uid", "tunnel", "labels" };
	static const char *const tunnels[] = { [REG_TUNNEL_NONE] = "NONE",
					       [REG_TUNNEL_HBONE] = "HBONE" };
	enum { K_NAME, K_NS, K_SA, K_NODE, K_IPS, K_UID, K_TUNNEL, K_LABELS, K_N };
	yaml_node_t *v[K_N];
	int rc, t;

	rc = map_fields(p, m, "workload", keys, K_N,
			1u << K_NAME | 1u << K_NS | 1u << K_NODE, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "workload", "name", STR_DNS_SUBDOMAIN, REG_MAX_NAME, &w->name);
	if (!rc)
		rc = get_str(p, v[K_NS], "workload", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &w->namespace);
	if (!rc)
		rc = v[K_SA] ? get_str(p, v[K_SA], "workload", "service_account", STR_DNS_LABEL,
				       REG_MAX_LABEL, &w->service_account)
			     : ((w->service_account = strdup("default")) ? 0 : -ENOMEM);
	if (!rc)
		rc = get_str(p, v[K_NODE], "workload", "node", STR_DNS_LABEL, REG_MAX_LABEL,
			     &w->node);
	if (!rc && v[K_IPS])
		rc = get_strv(p, v[K_IPS], "workload", "ips", SV_IP, &w->ips, &w->n_ips);
	if (!rc && v[K_UID])
		rc = get_str(p, v[K_UID], "workload", "uid", STR_TOKEN, REG_MAX_UID, &w->uid);
	else if (!rc && asprintf(&w->uid, "%s/%s", w->namespace, w->name) < 0) {
		w->uid = NULL;
		rc = -ENOMEM;
	}
	w->tunnel = REG_TUNNEL_HBONE;
	if (!rc && v[K_TUNNEL]) {
		rc = get_enum(p, v[K_TUNNEL], "workload", "tunnel", tunnels, 2, &t);
		w->tunnel = (enum reg_tunnel)t;
	}
	if (!rc && v[K_LABELS])
		rc = get_labels(p, v[K_LABELS], "workload", "labels", &w->labels, &w->n_labels);
	return rc;
}

static int parse_service_port(struct parse *p, const yaml_node_t *m, struct reg_port *sp)
{
	static const char *const keys[] = { "port", "target_port" };
	yaml_node_t *v[2];
	int rc;

	rc = map_fields(p, m, "service port", keys, 2, 1u << 0, v);
	if (rc)
		return rc;
	rc = get_port(p, v[0], "service port", "port", &sp->port);
	sp->target_port = sp->port;
	if (!rc && v[1])
		rc = get_port(p, v[1], "service port", "target_port", &sp->target_port);
	return rc;
}

static int parse_service(struct parse *p, const yaml_node_t *m, void *out)
{
	struct reg_service *s = out;
	static const char *const keys[] = { "name", "namespace", "vips", "ports", "selector" };
	enum { K_NAME, K_NS, K_VIPS, K_PORTS, K_SEL, K_N };
	yaml_node_t *v[K_N];
	size_t i, j, cnt;
	int rc;

	rc = map_fields(p, m, "service", keys, K_N, 1u << K_NAME | 1u << K_NS, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "service", "name", STR_DNS_LABEL, REG_MAX_LABEL, &s->name);
	if (!rc)
		rc = get_str(p, v[K_NS], "service", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &s->namespace);
	if (!rc && v[K_VIPS])
		rc = get_strv(p, v[K_VIPS], "service", "vips", SV_IP, &s->vips, &s->n_vips);
	if (!rc && v[K_SEL])
		rc = get_labels(p, v[K_SEL], "service", "selector", &s->selector, &s->n_selector);
	if (rc || !v[K_PORTS])
		return rc;
	rc = expect_seq(p, v[K_PORTS], "service", "ports");
	if (rc)
		return rc;
	cnt = seq_len(v[K_PORTS]);
	if (cnt == 0)
		return 0;
	s->ports = calloc(cnt, sizeof(*s->ports));
	if (!s->ports)
		return -ENOMEM;
	s->n_ports = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = pget(p, v[K_PORTS]->data.sequence.items.start[i], v[K_PORTS]);

		if (!it)
			return -EINVAL;
		rc = parse_service_port(p, it, &s->ports[i]);
		if (rc)
			return rc;
		/* Quadratic, but a service has a handful of ports and the node
		 * budget caps the worst case. */
		for (j = 0; j < i; j++)
			if (s->ports[j].port == s->ports[i].port)
				return perr(p, it, "service ports: duplicate port %u",
					    s->ports[i].port);
	}
	return 0;
}

static int parse_rule(struct parse *p, const yaml_node_t *m, struct reg_rule *ru)
{
	static const char *const keys[] = { "principals", "not_principals", "namespaces",
					    "not_namespaces", "source_ips", "not_source_ips",
					    "destination_ports", "not_destination_ports" };
	enum { K_P, K_NP, K_NS, K_NNS, K_IP, K_NIP, K_PORT, K_NPORT, K_N };
	const char *w = "policy rule";
	yaml_node_t *v[K_N];
	int rc;

	rc = map_fields(p, m, w, keys, K_N, 0, v);
	if (!rc && v[K_P])
		rc = get_strv(p, v[K_P], w, keys[K_P], SV_TOKEN, &ru->principals.v, &ru->principals.n);
	if (!rc && v[K_NP])
		rc = get_strv(p, v[K_NP], w, keys[K_NP], SV_TOKEN, &ru->not_principals.v,
			      &ru->not_principals.n);
	if (!rc && v[K_NS])
		rc = get_strv(p, v[K_NS], w, keys[K_NS], SV_TOKEN, &ru->namespaces.v, &ru->namespaces.n);
	if (!rc && v[K_NNS])
		rc = get_strv(p, v[K_NNS], w, keys[K_NNS], SV_TOKEN, &ru->not_namespaces.v,
			      &ru->not_namespaces.n);
	if (!rc && v[K_IP])
		rc = get_strv(p, v[K_IP], w, keys[K_IP], SV_CIDR, &ru->source_ips.v, &ru->source_ips.n);
	if (!rc && v[K_NIP])
		rc = get_strv(p, v[K_NIP], w, keys[K_NIP], SV_CIDR, &ru->not_source_ips.v,
			      &ru->not_source_ips.n);
	if (!rc && v[K_PORT])
		rc = get_portv(p, v[K_PORT], w, keys[K_PORT], &ru->ports);
	if (!rc && v[K_NPORT])
		rc = get_portv(p, v[K_NPORT], w, keys[K_NPORT], &ru->not_ports);
	return rc;
}

static int parse_policy(struct parse *p, const yaml_node_t *m, void *out)
{
	struct reg_policy *po = out;
	static const char *const keys[] = { "name", "namespace", "scope", "selector",
					    "action", "rules" };
	static const char *const scopes[] = { [REG_SCOPE_GLOBAL] = "global",
					      [REG_SCOPE_NAMESPACE] = "namespace",
					      [REG_SCOPE_WORKLOAD] = "workload" };
	static const char *const actions[] = { [REG_ACTION_ALLOW] = "ALLOW",
					       [REG_ACTION_DENY] = "DENY" };
	enum { K_NAME, K_NS, K_SCOPE, K_SEL, K_ACTION, K_RULES, K_N };
	yaml_node_t *v[K_N];
	size_t i, cnt;
	int rc, e;

	rc = map_fields(p, m, "policy", keys, K_N,
			1u << K_NAME | 1u << K_SCOPE | 1u << K_ACTION, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "policy", "name", STR_DNS_SUBDOMAIN, REG_MAX_NAME, &po->name);
	if (rc)
		return rc;
	rc = get_enum(p, v[K_SCOPE], "policy", "scope", scopes, 3, &e);
	if (rc)
		return rc;
	po->scope = (enum reg_scope)e;
	rc = get_enum(p, v[K_ACTION], "policy", "action", actions, 2, &e);
	if (rc)
		return rc;
	po->action = (enum reg_action)e;

	/* Scope and the namespace/selector fields must agree: a policy whose
	 * reach differs from what its author wrote is a security bug. */
	if (po->scope == REG_SCOPE_GLOBAL) {
		if (v[K_NS])
			return perr(p, v[K_NS], "policy namespace: not allowed for scope global");
		po->namespace = strdup("");
		if (!po->namespace)
			return -ENOMEM;
	} else {
		if (!v[K_NS])
			return perr(p, m, "policy is missing required field \"namespace\" "
				    "(required unless scope is global)");
		rc = get_str(p, v[K_NS], "policy", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &po->namespace);
		if (rc)
			return rc;
	}
	if (po->scope == REG_SCOPE_WORKLOAD) {
		if (!v[K_SEL])
			return perr(p, m, "policy is missing required field \"selector\" "
				    "(required for scope workload)");
		rc = get_labels(p, v[K_SEL], "policy", "selector", &po->selector, &po->n_selector);
		if (rc)
			return rc;
		if (po->n_selector == 0)
			return perr(p, v[K_SEL], "policy selector: must not be empty for scope workload");
	} else if (v[K_SEL]) {
		return perr(p, v[K_SEL], "policy selector: only allowed for scope workload");
	}

	if (!v[K_RULES])
		return 0;
	rc = expect_seq(p, v[K_RULES], "policy", "rules");
	if (rc)
		return rc;
	cnt = seq_len(v[K_RULES]);
	if (cnt == 0)
		return 0;
	po->rules = calloc(cnt, sizeof(*po->rules));
	if (!po->rules)
		return -ENOMEM;
	po->n_rules = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = pget(p, v[K_RULES]->data.sequence.items.start[i], v[K_RULES]);

		if (!it)
			return -EINVAL;
		rc = parse_rule(p, it, &po->rules[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* Parses the list under a top-level key into a calloc'd array (count set
 * at once so registry_free can release a half-filled array) and records
 * each item's line for the cross-resource checks. */
static int parse_list(struct parse *p, const yaml_node_t *seq, const char *field,
		      size_t size, void **arr, size_t *n, unsigned long **lines,
		      int (*item)(struct parse *, const yaml_node_t *, void *))
{
	size_t i, cnt;
	int rc;

	if (!seq)
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return perr(p, seq, "%s: expected a list, found %s", field, kind_name(seq));
	cnt = seq_len(seq);
	if (cnt == 0)
		return 0;
	*arr = calloc(cnt, size);
	*lines = calloc(cnt, sizeof(**lines));
	if (!*arr || !*lines)
		return -ENOMEM;
	*n = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = pget(p, seq->data.sequence.items.start[i], seq);

		if (!it)
			return -EINVAL;
		(*lines)[i] = LINE(it);
		rc = item(p, it, (char *)*arr + i * size);
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- keys, sorting, cross-checks ------------------------------------------ */

static int node_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_node *)a)->name, ((const struct reg_node *)b)->name);
}

static int workload_cmp(const void *a, const void *b)
{
	return strcmp(((const struct reg_workload *)a)->uid, ((const struct reg_workload *)b)->uid);
}

static int service_cmp(const void *a, const void *b)
{
	const struct reg_service *x = a, *y = b;
	int d = strcmp(x->namespace, y->namespace);

	return d ? d : strcmp(x->name, y->name);
}

static int policy_cmp(const void *a, const void *b)
{
	const struct reg_policy *x = a, *y = b;
	int d = strcmp(x->namespace, y->namespace);

	return d ? d : strcmp(x->name, y->name);
}

struct sort_ctx {
	const char *base;
	size_t size;
	int (*cmp)(const void *, const void *);
};

static int sort_idx_cmp(const void *a, const void *b, void *arg)
{
	const struct sort_ctx *c = arg;
	size_t i = *(const size_t *)a, j = *(const size_t *)b;
	int d = c->cmp(c->base + i * c->size, c->base + j * c->size);

	if (d)
		return d;
	return (i > j) - (i < j);
}

/* Sorts base[n] by cmp. If two elements are equal, leaves base unsorted,
 * stores their original indices (the pair whose second element comes
 * first in the file) in *first and *dup, and returns 1. Otherwise 0, or
 * -ENOMEM. */
static int sort_unique(void *base, size_t n, size_t size,
		       int (*cmp)(const void *, const void *), size_t *first, size_t *dup)
{
	struct sort_ctx c = { base, size, cmp };
	size_t *idx, k, best = SIZE_MAX, bfirst = 0;
	char *tmp;

	if (n < 2)
		return 0;
	idx = malloc(n * sizeof(*idx));
	if (!idx)
		return -ENOMEM;
	for (k = 0; k < n; k++)
		idx[k] = k;
	qsort_r(idx, n, sizeof(*idx), sort_idx_cmp, &c);
	for (k = 1; k < n; k++) {
		if (cmp(c.base + idx[k - 1] * size, c.base + idx[k] * size) == 0 &&
		    idx[k] < best) {
			best = idx[k];
			bfirst = idx[k - 1];
		}
	}
	if (best != SIZE_MAX) {
		*first = bfirst;
		*dup = best;
		free(idx);
		return 1;
	}
	tmp = malloc(n * size);
	if (!tmp) {
		free(idx);
		return -ENOMEM;
	}
	for (k = 0; k < n; k++)
		memcpy(tmp + k * size, c.base + idx[k] * size, size);
	memcpy(base, tmp, n * size);
	free(tmp);
	free(idx);
	return 0;
}

/* True if every selector entry is among labels; both sorted by key. */
static bool labels_match(const struct reg_label *l, size_t nl,
			 const struct reg_label *sel, size_t ns)
{
	size_t i = 0, j;

	for (j = 0; j < ns; j++) {
		while (i < nl && strcmp(l[i].key, sel[j].key) < 0)
			i++;
		if (i == nl || strcmp(l[i].key, sel[j].key) != 0 ||
		    strcmp(l[i].value, sel[j].value) != 0)
			return false;
		i++;
	}
	return true;
}

static int wl_ns_cmp(const void *a, const void *b)
{
	const struct reg_workload *x = *(const struct reg_workload *const *)a;
	const struct reg_workload *y = *(const struct reg_workload *const *)b;
	int d = strcmp(x->namespace, y->namespace);

	return d ? d : strcmp(x->uid, y->uid);
}

/* Endpoints: the uids of the workloads in the service's namespace whose
 * labels include the whole selector, sorted. A service without a selector
 * has none (as in Kubernetes, its endpoints are managed elsewhere). */
static int services_endpoints(struct registry *r)
{
	const struct reg_workload **by_ns;
	size_t i, k;

	if (r->n_workloads == 0 || r->n_services == 0)
		return 0;
	by_ns = malloc(r->n_workloads * sizeof(*by_ns));
	if (!by_ns)
		return -ENOMEM;
	for (i = 0; i < r->n_workloads; i++)
		by_ns[i] = &r->workloads[i];
	qsort(by_ns, r->n_workloads, sizeof(*by_ns), wl_ns_cmp);

	for (k = 0; k < r->n_services; k++) {
		struct reg_service *s = &r->services[k];
		size_t lo = 0, hi = r->n_workloads, cnt = 0, j;

		if (s->n_selector == 0)
			continue;
		while (lo < hi) {	/* first workload of the namespace */
			size_t mid = lo + (hi - lo) / 2;

			if (strcmp(by_ns[mid]->namespace, s->namespace) < 0)
				lo = mid + 1;
			else
				hi = mid;
		}
		for (j = lo; j < r->n_workloads && !strcmp(by_ns[j]->namespace, s->namespace); j++)
			cnt += labels_match(by_ns[j]->labels, by_ns[j]->n_labels,
					    s->selector, s->n_selector);
		if (cnt == 0)
			continue;
		s->endpoints = calloc(cnt, sizeof(*s->endpoints));
		if (!s->endpoints)
			goto fail;
		for (j = lo; s->n_endpoints < cnt; j++) {
			if (!labels_match(by_ns[j]->labels, by_ns[j]->n_labels,
					  s->selector, s->n_selector))
				continue;
			s->endpoints[s->n_endpoints] = strdup(by_ns[j]->uid);
			if (!s->endpoints[s->n_endpoints])
				goto fail;
			s->n_endpoints++;
		}
	}
	free(by_ns);
	return 0;
fail:
	free(by_ns);
	return -ENOMEM;
}

static int check_and_sort(struct parse *p)
{
	struct registry *r = p->r;
	char qb[QBUF];
	size_t a, b, i;
	int rc;

	rc = sort_unique(r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp, &a, &b);
	if (rc == 1)
		return perr_at(p, p->node_line[b], "duplicate node name %s (first defined on line %lu)",
			       qstr(qb, r->nodes[b].name), p->node_line[a]);
	if (rc)
		return rc;

	/* In file order, before the workloads are sorted, so the first bad
	 * workload in the file is the one reported. */
	for (i = 0; i < r->n_workloads; i++) {
		struct reg_node key = { .name = r->workloads[i].node };

		if (!r->n_nodes || !bsearch(&key, r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp))
			return perr_at(p, p->wl_line[i], "workload node %s is not defined in nodes",
				       qstr(qb, r->workloads[i].node));
	}
	rc = sort_unique(r->workloads, r->n_workloads, sizeof(*r->workloads), workload_cmp, &a, &b);
	if (rc == 1)
		return perr_at(p, p->wl_line[b], "duplicate workload uid %s (first defined on line %lu)",
			       qstr(qb, r->workloads[b].uid), p->wl_line[a]);
	if (rc)
		return rc;

	rc = sort_unique(r->services, r->n_services, sizeof(*r->services), service_cmp, &a, &b);
	if (rc == 1)
		return perr_at(p, p->svc_line[b], "duplicate service \"%s/%s\" (first defined on line %lu)",
			       r->services[b].namespace, r->services[b].name, p->svc_line[a]);
	if (rc)
		return rc;

	rc = sort_unique(r->policies, r->n_policies, sizeof(*r->policies), policy_cmp, &a, &b);
	if (rc == 1)
		return perr_at(p, p->pol_line[b], "duplicate policy \"%s/%s\" (first defined on line %lu)",
			       r->policies[b].namespace, r->policies[b].name, p->pol_line[a]);
	if (rc)
		return rc;

	return services_endpoints(r);
}

static int parse_root(struct parse *p, const yaml_node_t *root)
{
	static const char *const keys[] = { "trust_domain", "nodes", "workloads",
					    "services", "policies" };
	enum { K_TD, K_NODES, K_WL, K_SVC, K_POL, K_N };
	struct registry *r = p->r;
	yaml_node_t *v[K_N];
	int rc;

	rc = map_fields(p, root, "the registry (top level)", keys, K_N, 0, v);
	if (!rc && v[K_TD])
		rc = get_str(p, v[K_TD], "registry", "trust_domain", STR_TRUST_DOMAIN,
			     REG_MAX_TRUST_DOMAIN, &r->trust_domain);
	if (!rc)
		rc = parse_list(p, v[K_NODES], "nodes", sizeof(*r->nodes), (void **)&r->nodes,
				&r->n_nodes, &p->node_line, parse_node);
	if (!rc)
		rc = parse_list(p, v[K_WL], "workloads", sizeof(*r->workloads),
				(void **)&r->workloads, &r->n_workloads, &p->wl_line, parse_workload);
	if (!rc)
		rc = parse_list(p, v[K_SVC], "services", sizeof(*r->services),
				(void **)&r->services, &r->n_services, &p->svc_line, parse_service);
	if (!rc)
		rc = parse_list(p, v[K_POL], "policies", sizeof(*r->policies),
				(void **)&r->policies, &r->n_policies, &p->pol_line, parse_policy);
	if (!rc)
		rc = check_and_sort(p);
	return rc;
}

/* ---- public ------------------------------------------------------------------- */

struct registry *registry_parse(const char *buf, size_t len, const char *name,
				char *err, size_t errlen)
{
	struct parse p = {
		.name = name ? name : "registry",
		.err = err,
		.errlen = errlen,
	};
	yaml_parser_t ps;
	yaml_document_t doc;
	yaml_node_t *root;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (len > REG_MAX_FILE) {
		if (err && errlen)
			snprintf(err, errlen, "%s: file too large (%zu bytes, at most %u)",
				 p.name, len, REG_MAX_FILE);
		return NULL;
	}
	rc = yaml_prescan(&p, buf, len);
	if (rc)
		goto fail;

	if (!yaml_parser_initialize(&ps)) {
		rc = -ENOMEM;
		goto fail;
	}
	yaml_parser_set_input_string(&ps, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&ps, &doc)) {
		rc = yaml_fail(&p, &ps, buf, len);
		yaml_parser_delete(&ps);
		goto fail;
	}
	yaml_parser_delete(&ps);
	p.doc = &doc;

	p.r = calloc(1, sizeof(*p.r));
	if (!p.r) {
		rc = -ENOMEM;
		goto fail_doc;
	}
	root = yaml_document_get_root_node(&doc);
	if (!root)
		rc = perr_at(&p, 1, "empty document: the registry file has no content");
	else if (is_null(root))
		rc = perr(&p, root, "empty document: the registry file has no content");
	else
		rc = parse_root(&p, root);
	if (rc)
		goto fail_reg;
	yaml_document_delete(&doc);
	free(p.node_line);
	free(p.wl_line);
	free(p.svc_line);
	free(p.pol_line);
	return p.r;

fail_reg:
	registry_free(p.r);
	free(p.node_line);
	free(p.wl_line);
	free(p.svc_line);
	free(p.pol_line);
fail_doc:
	yaml_document_delete(&doc);
fail:
	if (rc == -ENOMEM && !p.err_set && err && errlen)
		snprintf(err, errlen, "%s: out of memory", p.name);
	else if (!p.err_set && err && errlen)
		snprintf(err, errlen, "%s: invalid registry", p.name);
	return NULL;
}

static void labels_free(struct reg_label *l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(l[i].key);
		free(l[i].value);
	}
	free(l);
}

static void strs_free(char **v, size_t n)
{
	size_t i;

	for (i = 0; v && i < n; i++)
		free(v[i]);
	free(v);
}

void registry_free(struct registry *r)
{
	size_t i, j;

	if (!r)
		return;
	for (i = 0; i < r->n_nodes; i++) {
		free(r->nodes[i].name);
		free(r->nodes[i].address);
		free(r->nodes[i].cluster);
		free(r->nodes[i].network);
	}
	free(r->nodes);
	for (i = 0; i < r->n_workloads; i++) {
		struct reg_workload *w = &r->workloads[i];

		free(w->uid);
		free(w->name);
		free(w->namespace);
		free(w->service_account);
		free(w->node);
		strs_free(w->ips, w->n_ips);
		labels_free(w->labels, w->n_labels);
	}
	free(r->workloads);
	for (i = 0; i < r->n_services; i++) {
		struct reg_service *s = &r->services[i];

		free(s->namespace);
		free(s->name);
		strs_free(s->vips, s->n_vips);
		free(s->ports);
		labels_free(s->selector, s->n_selector);
		strs_free(s->endpoints, s->n_endpoints);
	}
	free(r->services);
	for (i = 0; i < r->n_policies; i++) {
		struct reg_policy *po = &r->policies[i];

		free(po->name);
		free(po->namespace);
		labels_free(po->selector, po->n_selector);
		for (j = 0; j < po->n_rules; j++) {
			struct reg_rule *ru = &po->rules[j];

			strs_free(ru->principals.v, ru->principals.n);
			strs_free(ru->not_principals.v, ru->not_principals.n);
			strs_free(ru->namespaces.v, ru->namespaces.n);
			strs_free(ru->not_namespaces.v, ru->not_namespaces.n);
			strs_free(ru->source_ips.v, ru->source_ips.n);
			strs_free(ru->not_source_ips.v, ru->not_source_ips.n);
			free(ru->ports.v);
			free(ru->not_ports.v);
		}
		free(po->rules);
	}
	free(r->policies);
	free(r->trust_domain);
	free(r);
}

const struct reg_node *registry_node(const struct registry *r, const char *name)
{
	struct reg_node key = { .name = (char *)name };

	if (!r || !name || r->n_nodes == 0)
		return NULL;
	return bsearch(&key, r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp);
}

const struct reg_workload *registry_workload(const struct registry *r, const char *uid)
{
	struct reg_workload key = { .uid = (char *)uid };

	if (!r || !uid || r->n_workloads == 0)
		return NULL;
	return bsearch(&key, r->workloads, r->n_workloads, sizeof(*r->workloads), workload_cmp);
}

int registry_node_has_identity(const struct registry *r, const char *node,
			       const char *ns, const char *sa)
{
	size_t i;

	if (!r || !node || !ns || !sa)
		return 0;
	for (i = 0; i < r->n_workloads; i++) {
		const struct reg_workload *w = &r->workloads[i];

		if (!strcmp(w->node, node) && !strcmp(w->namespace, ns) &&
		    !strcmp(w->service_account, sa))
			return 1;
	}
	return 0;
}
