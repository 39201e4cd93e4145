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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include <weft/yamldoc.h>

#include <weft/registry.h>

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

struct parse {
	struct yamldoc y;	/* the document, its bounds and the error */
	struct registry *r;
	/* 1-based source lines, indexed like the arrays in r before sorting */
	unsigned long *node_line, *wl_line, *svc_line, *pol_line;
};

static const char *qstr(char *buf, const char *s)
{
	return yamldoc_quote(buf, s, strlen(s));
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

/* Per str_check: the test, and what a value that fails it is not. */
static const struct {
	bool (*ok)(const char *s, size_t len);
	const char *want;
} str_checks[] = {
	[STR_ANY] = { NULL, NULL },
	[STR_TOKEN] = { token_ok, "must not contain spaces" },
	[STR_DNS_LABEL] = { dns_label_ok, "is not a valid DNS-1123 label "
			    "(lowercase letters, digits and '-', at most 63 characters, "
			    "starting and ending with a letter or digit)" },
	[STR_DNS_SUBDOMAIN] = { dns_subdomain_ok, "is not a valid DNS-1123 subdomain "
				"(dot-separated lowercase labels of letters, digits and '-', "
				"at most 253 characters)" },
	[STR_TRUST_DOMAIN] = { trust_domain_ok, "is not a valid trust domain "
			       "(lowercase letters, digits, '.', '-' and '_')" },
};

/* A scalar as an owned C string, checked by kind and bounded by max. */
static int get_str(struct parse *p, const yaml_node_t *n, const char *what,
		   const char *field, enum str_check check, size_t max, char **out)
{
	const char *s;
	size_t len, i;
	char qb[YAMLDOC_QBUF];

	if (n->type != YAML_SCALAR_NODE)
		return yamldoc_fail(&p->y, n, "%s %s: expected a string, found %s",
				    what, field, yamldoc_kind(n));
	s = (const char *)n->data.scalar.value;
	len = n->data.scalar.length;
	if (len == 0)
		return yamldoc_fail(&p->y, n, "%s %s: must not be empty", what, field);
	if (len > max)
		return yamldoc_fail(&p->y, n, "%s %s: longer than %zu characters",
				    what, field, max);
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return yamldoc_fail(&p->y, n, "%s %s: %s contains a control character",
					    what, field, yamldoc_quote_scalar(qb, n));
	if (str_checks[check].ok && !str_checks[check].ok(s, len))
		return yamldoc_fail(&p->y, n, "%s %s: %s %s", what, field,
				    yamldoc_quote_scalar(qb, n), str_checks[check].want);
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
	char qb[YAMLDOC_QBUF];
	int rc, af;

	rc = get_str(p, n, what, field, STR_ANY, INET6_ADDRSTRLEN, &s);
	if (rc)
		return rc;
	af = inet_pton(AF_INET, s, bin) == 1 ? AF_INET :
	     inet_pton(AF_INET6, s, bin) == 1 ? AF_INET6 : 0;
	free(s);
	if (!af)
		return yamldoc_fail(&p->y, n, "%s %s: %s is not an IPv4 or IPv6 address",
				    what, field, yamldoc_quote_scalar(qb, n));
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
	char qb[YAMLDOC_QBUF];
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
			return yamldoc_fail(&p->y, n, "%s %s: %s has a prefix length out of range 0..%d",
					    what, field, yamldoc_quote_scalar(qb, n), max);
		}
	}
	free(s);
	if (!af)
		return yamldoc_fail(&p->y, n, "%s %s: %s is not a CIDR (address/prefix length) or IP address",
				    what, field, yamldoc_quote_scalar(qb, n));
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
	char qb[YAMLDOC_QBUF];

	if (n->type != YAML_SCALAR_NODE)
		return yamldoc_fail(&p->y, n, "%s %s: expected an integer, found %s",
				    what, field, yamldoc_kind(n));
	s = (const char *)n->data.scalar.value;
	len = n->data.scalar.length;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || len == 0)
		return yamldoc_fail(&p->y, n, "%s %s: expected an integer, found the string %s",
				    what, field, yamldoc_quote_scalar(qb, n));
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return yamldoc_fail(&p->y, n, "%s %s: expected an integer, found %s",
					    what, field, yamldoc_quote_scalar(qb, n));
		if (v <= 65535)
			v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return yamldoc_fail(&p->y, n, "%s %s: %s is out of range 1..65535",
				    what, field, yamldoc_quote_scalar(qb, n));
	*out = (uint16_t)v;
	return 0;
}

static int get_enum(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, const char *const *names, size_t count, int *out)
{
	char list[128] = "", qb[YAMLDOC_QBUF];
	size_t i;

	if (n->type != YAML_SCALAR_NODE)
		return yamldoc_fail(&p->y, n, "%s %s: expected a string, found %s",
				    what, field, yamldoc_kind(n));
	for (i = 0; i < count; i++) {
		if (yamldoc_scalar_is(n, names[i])) {
			*out = (int)i;
			return 0;
		}
	}
	for (i = 0; i < count; i++) {
		strncat(list, i ? ", " : "", sizeof(list) - strlen(list) - 1);
		strncat(list, names[i], sizeof(list) - strlen(list) - 1);
	}
	return yamldoc_fail(&p->y, n, "%s %s: %s is not one of %s",
			    what, field, yamldoc_quote_scalar(qb, n), list);
}

/* How get_list turns a YAML sequence into an array. */
struct list_spec {
	const char *what;	/* for messages: "<what> <field>:"; NULL at the top level */
	const char *field;
	size_t size;		/* of one element */
	/* Parses n into element i of arr; elements before i are done. */
	int (*item)(struct parse *p, const yaml_node_t *n, void *arr, size_t i,
		    const struct list_spec *s);
	int check;		/* for item: enum strv_check of a string list */
};

/* Parses a sequence into a calloc'd array, its count set at once so
 * registry_free can release a half-filled array. With lines, records
 * each item's line for the cross-resource checks. */
static int get_list(struct parse *p, const yaml_node_t *n, const struct list_spec *s,
		    void **arr, size_t *count, unsigned long **lines)
{
	size_t i, cnt;
	int rc;

	if (n->type != YAML_SEQUENCE_NODE)
		return s->what ? yamldoc_fail(&p->y, n, "%s %s: expected a list, found %s",
					      s->what, s->field, yamldoc_kind(n))
			       : yamldoc_fail(&p->y, n, "%s: expected a list, found %s",
					      s->field, yamldoc_kind(n));
	cnt = yamldoc_seq_len(n);
	if (cnt == 0)
		return 0;
	*arr = calloc(cnt, s->size);
	if (lines)
		*lines = calloc(cnt, sizeof(**lines));
	if (!*arr || (lines && !*lines))
		return -ENOMEM;
	*count = cnt;
	for (i = 0; i < cnt; i++) {
		yaml_node_t *it = yamldoc_get(&p->y, n->data.sequence.items.start[i], n);

		if (!it)
			return -EINVAL;
		if (lines)
			(*lines)[i] = yamldoc_line(it);
		rc = s->item(p, it, *arr, i, s);
		if (rc)
			return rc;
	}
	return 0;
}

enum strv_check {
	SV_TOKEN = 0,
	SV_IP,
	SV_CIDR,
};

static int strv_item(struct parse *p, const yaml_node_t *n, void *arr, size_t i,
		     const struct list_spec *s)
{
	char **out = (char **)arr + i;

	switch (s->check) {
	case SV_IP:
		return get_ip(p, n, s->what, s->field, out);
	case SV_CIDR:
		return get_cidr(p, n, s->what, s->field, out);
	default:
		return get_str(p, n, s->what, s->field, STR_TOKEN, REG_MAX_STRING, out);
	}
}

static int get_strv(struct parse *p, const yaml_node_t *n, const char *what,
		    const char *field, enum strv_check check, char ***out, size_t *nout)
{
	const struct list_spec s = { what, field, sizeof(**out), strv_item, check };

	return get_list(p, n, &s, (void **)out, nout, NULL);
}

static int port_item(struct parse *p, const yaml_node_t *n, void *arr, size_t i,
		     const struct list_spec *s)
{
	return get_port(p, n, s->what, s->field, (uint16_t *)arr + i);
}

static int get_portv(struct parse *p, const yaml_node_t *n, const char *what,
		     const char *field, struct reg_portv *out)
{
	const struct list_spec s = { what, field, sizeof(*out->v), port_item, 0 };

	return get_list(p, n, &s, (void **)&out->v, &out->n, NULL);
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
	char qb[YAMLDOC_QBUF];
	int rc = 0;

	if (n->type != YAML_MAPPING_NODE)
		return yamldoc_fail(&p->y, n, "%s %s: expected a mapping, found %s",
				    what, field, yamldoc_kind(n));
	cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	if (cnt == 0)
		return 0;
	t = calloc(cnt, sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (i = 0, pair = n->data.mapping.pairs.start; i < cnt; i++, pair++) {
		yaml_node_t *k = yamldoc_get(&p->y, pair->key, n), *v;

		if (!k)
			goto fail;
		v = yamldoc_get(&p->y, pair->value, n);
		if (!v)
			goto fail;
		t[i].idx = i;
		t[i].line = yamldoc_line(k);
		if (k->type != YAML_SCALAR_NODE) {
			rc = yamldoc_fail(&p->y, k, "%s %s: keys must be strings, found %s", what, field,
					  yamldoc_kind(k));
			goto fail;
		}
		if (!label_key_ok((const char *)k->data.scalar.value, k->data.scalar.length)) {
			rc = yamldoc_fail(&p->y, k, "%s %s: %s is not a valid label key "
					  "([prefix/]name, name at most 63 letters, digits, '-', '_' or '.', "
					  "starting and ending with a letter or digit)",
					  what, field, yamldoc_quote_scalar(qb, k));
			goto fail;
		}
		if (v->type != YAML_SCALAR_NODE) {
			rc = yamldoc_fail(&p->y, v, "%s %s: value of %s: expected a string, found %s",
					  what, field, yamldoc_quote_scalar(qb, k), yamldoc_kind(v));
			goto fail;
		}
		if (!label_name_ok((const char *)v->data.scalar.value, v->data.scalar.length, true)) {
			rc = yamldoc_fail(&p->y, v, "%s %s: %s is not a valid label value "
					  "(at most 63 letters, digits, '-', '_' or '.', "
					  "starting and ending with a letter or digit)",
					  what, field, yamldoc_quote_scalar(qb, v));
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
			rc = yamldoc_fail_at(&p->y, t[i].line, "%s %s: duplicate key %s",
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

/* An optional string field: checked like get_str when present, else an
 * owned copy of dflt. */
static int get_str_or(struct parse *p, const yaml_node_t *n, const char *what,
		      const char *field, enum str_check check, size_t max, const char *dflt,
		      char **out)
{
	if (n)
		return get_str(p, n, what, field, check, max, out);
	*out = strdup(dflt);
	return *out ? 0 : -ENOMEM;
}

static int parse_node(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
		      const struct list_spec *s)
{
	struct reg_node *nd = (struct reg_node *)arr + i;
	static const char *const keys[] = { "name", "address", "hbone_port", "cluster", "network",
					    "gateway_address" };
	enum { K_NAME, K_ADDR, K_PORT, K_CLUSTER, K_NETWORK, K_GATEWAY, K_N };
	yaml_node_t *v[K_N];
	int rc;

	(void)s;
	rc = yamldoc_fields(&p->y, m, "node", keys, K_N, 1u << K_NAME | 1u << K_ADDR, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "node", "name", STR_DNS_LABEL, REG_MAX_LABEL, &nd->name);
	if (!rc)
		rc = get_ip(p, v[K_ADDR], "node", "address", &nd->address);
	nd->hbone_port = REG_DEFAULT_HBONE_PORT;
	if (!rc && v[K_PORT])
		rc = get_port(p, v[K_PORT], "node", "hbone_port", &nd->hbone_port);
	if (!rc)
		rc = get_str_or(p, v[K_CLUSTER], "node", "cluster", STR_TOKEN, REG_MAX_NAME, "",
				&nd->cluster);
	if (!rc)
		rc = get_str_or(p, v[K_NETWORK], "node", "network", STR_TOKEN, REG_MAX_NAME, "",
				&nd->network);
	if (!rc && v[K_GATEWAY])
		rc = get_ip(p, v[K_GATEWAY], "node", "gateway_address", &nd->gateway_address);
	return rc;
}

static int parse_workload(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
			  const struct list_spec *s)
{
	struct reg_workload *w = (struct reg_workload *)arr + i;
	static const char *const keys[] = { "name", "namespace", "service_account", "node",
					    "ips", "uid", "tunnel", "labels" };
	static const char *const tunnels[] = { [REG_TUNNEL_NONE] = "NONE",
					       [REG_TUNNEL_HBONE] = "HBONE" };
	enum { K_NAME, K_NS, K_SA, K_NODE, K_IPS, K_UID, K_TUNNEL, K_LABELS, K_N };
	yaml_node_t *v[K_N];
	int rc, t;

	(void)s;
	rc = yamldoc_fields(&p->y, m, "workload", keys, K_N,
			    1u << K_NAME | 1u << K_NS | 1u << K_NODE, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "workload", "name", STR_DNS_SUBDOMAIN, REG_MAX_NAME, &w->name);
	if (!rc)
		rc = get_str(p, v[K_NS], "workload", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &w->namespace);
	if (!rc)
		rc = get_str_or(p, v[K_SA], "workload", "service_account", STR_DNS_LABEL,
				REG_MAX_LABEL, "default", &w->service_account);
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

static int parse_service_port(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
			      const struct list_spec *s)
{
	static const char *const keys[] = { "port", "target_port" };
	struct reg_port *ports = arr, *sp = &ports[i];
	yaml_node_t *v[2];
	size_t j;
	int rc;

	(void)s;
	rc = yamldoc_fields(&p->y, m, "service port", keys, 2, 1u << 0, v);
	if (rc)
		return rc;
	rc = get_port(p, v[0], "service port", "port", &sp->port);
	sp->target_port = sp->port;
	if (!rc && v[1])
		rc = get_port(p, v[1], "service port", "target_port", &sp->target_port);
	if (rc)
		return rc;
	/* Quadratic, but a service has a handful of ports and the node
	 * budget caps the worst case. */
	for (j = 0; j < i; j++)
		if (ports[j].port == sp->port)
			return yamldoc_fail(&p->y, m, "service ports: duplicate port %u", sp->port);
	return 0;
}

static int parse_service(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
			 const struct list_spec *s)
{
	static const struct list_spec ports = { "service", "ports", sizeof(struct reg_port),
						parse_service_port, 0 };
	struct reg_service *sv = (struct reg_service *)arr + i;
	static const char *const keys[] = { "name", "namespace", "vips", "ports", "selector" };
	enum { K_NAME, K_NS, K_VIPS, K_PORTS, K_SEL, K_N };
	yaml_node_t *v[K_N];
	int rc;

	(void)s;
	rc = yamldoc_fields(&p->y, m, "service", keys, K_N, 1u << K_NAME | 1u << K_NS, v);
	if (rc)
		return rc;
	rc = get_str(p, v[K_NAME], "service", "name", STR_DNS_LABEL, REG_MAX_LABEL, &sv->name);
	if (!rc)
		rc = get_str(p, v[K_NS], "service", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &sv->namespace);
	if (!rc && v[K_VIPS])
		rc = get_strv(p, v[K_VIPS], "service", "vips", SV_IP, &sv->vips, &sv->n_vips);
	if (!rc && v[K_SEL])
		rc = get_labels(p, v[K_SEL], "service", "selector", &sv->selector, &sv->n_selector);
	if (!rc && v[K_PORTS])
		rc = get_list(p, v[K_PORTS], &ports, (void **)&sv->ports, &sv->n_ports, NULL);
	return rc;
}

static int parse_rule(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
		      const struct list_spec *s)
{
	static const char *const keys[] = { "principals", "not_principals", "namespaces",
					    "not_namespaces", "source_ips", "not_source_ips",
					    "destination_ports", "not_destination_ports" };
	enum { K_P, K_NP, K_NS, K_NNS, K_IP, K_NIP, K_PORT, K_NPORT, K_N };
	struct reg_rule *ru = (struct reg_rule *)arr + i;
	struct reg_strv *strv[] = { &ru->principals, &ru->not_principals, &ru->namespaces,
				    &ru->not_namespaces, &ru->source_ips, &ru->not_source_ips };
	struct reg_portv *portv[] = { &ru->ports, &ru->not_ports };
	const char *w = "policy rule";
	yaml_node_t *v[K_N];
	int rc, k;

	(void)s;
	rc = yamldoc_fields(&p->y, m, w, keys, K_N, 0, v);
	for (k = K_P; !rc && k < K_PORT; k++)
		if (v[k])
			rc = get_strv(p, v[k], w, keys[k], k < K_IP ? SV_TOKEN : SV_CIDR,
				      &strv[k]->v, &strv[k]->n);
	for (k = K_PORT; !rc && k < K_N; k++)
		if (v[k])
			rc = get_portv(p, v[k], w, keys[k], portv[k - K_PORT]);
	return rc;
}

static int parse_policy(struct parse *p, const yaml_node_t *m, void *arr, size_t i,
			const struct list_spec *s)
{
	static const struct list_spec rules = { "policy", "rules", sizeof(struct reg_rule),
						parse_rule, 0 };
	struct reg_policy *po = (struct reg_policy *)arr + i;
	static const char *const keys[] = { "name", "namespace", "scope", "selector",
					    "action", "rules" };
	static const char *const scopes[] = { [REG_SCOPE_GLOBAL] = "global",
					      [REG_SCOPE_NAMESPACE] = "namespace",
					      [REG_SCOPE_WORKLOAD] = "workload" };
	static const char *const actions[] = { [REG_ACTION_ALLOW] = "ALLOW",
					       [REG_ACTION_DENY] = "DENY" };
	enum { K_NAME, K_NS, K_SCOPE, K_SEL, K_ACTION, K_RULES, K_N };
	yaml_node_t *v[K_N];
	int rc, e;

	(void)s;
	rc = yamldoc_fields(&p->y, m, "policy", keys, K_N,
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
			return yamldoc_fail(&p->y, v[K_NS], "policy namespace: not allowed for scope global");
		po->namespace = strdup("");
		if (!po->namespace)
			return -ENOMEM;
	} else {
		if (!v[K_NS])
			return yamldoc_fail(&p->y, m, "policy is missing required field \"namespace\" "
					    "(required unless scope is global)");
		rc = get_str(p, v[K_NS], "policy", "namespace", STR_DNS_LABEL, REG_MAX_LABEL,
			     &po->namespace);
		if (rc)
			return rc;
	}
	if (po->scope == REG_SCOPE_WORKLOAD) {
		if (!v[K_SEL])
			return yamldoc_fail(&p->y, m, "policy is missing required field \"selector\" "
					    "(required for scope workload)");
		rc = get_labels(p, v[K_SEL], "policy", "selector", &po->selector, &po->n_selector);
		if (rc)
			return rc;
		if (po->n_selector == 0)
			return yamldoc_fail(&p->y, v[K_SEL], "policy selector: must not be empty for scope workload");
	} else if (v[K_SEL]) {
		return yamldoc_fail(&p->y, v[K_SEL], "policy selector: only allowed for scope workload");
	}
	if (!v[K_RULES])
		return 0;
	return get_list(p, v[K_RULES], &rules, (void **)&po->rules, &po->n_rules, NULL);
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
	char qb[YAMLDOC_QBUF];
	size_t a, b, i;
	int rc;

	rc = sort_unique(r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp, &a, &b);
	if (rc == 1)
		return yamldoc_fail_at(&p->y, p->node_line[b], "duplicate node name %s (first defined on line %lu)",
				       qstr(qb, r->nodes[b].name), p->node_line[a]);
	if (rc)
		return rc;

	/* In file order, before the workloads are sorted, so the first bad
	 * workload in the file is the one reported. */
	for (i = 0; i < r->n_workloads; i++) {
		struct reg_node key = { .name = r->workloads[i].node };

		if (!r->n_nodes || !bsearch(&key, r->nodes, r->n_nodes, sizeof(*r->nodes), node_cmp))
			return yamldoc_fail_at(&p->y, p->wl_line[i], "workload node %s is not defined in nodes",
					       qstr(qb, r->workloads[i].node));
	}
	rc = sort_unique(r->workloads, r->n_workloads, sizeof(*r->workloads), workload_cmp, &a, &b);
	if (rc == 1)
		return yamldoc_fail_at(&p->y, p->wl_line[b], "duplicate workload uid %s (first defined on line %lu)",
				       qstr(qb, r->workloads[b].uid), p->wl_line[a]);
	if (rc)
		return rc;

	rc = sort_unique(r->services, r->n_services, sizeof(*r->services), service_cmp, &a, &b);
	if (rc == 1)
		return yamldoc_fail_at(&p->y, p->svc_line[b], "duplicate service \"%s/%s\" (first defined on line %lu)",
				       r->services[b].namespace, r->services[b].name, p->svc_line[a]);
	if (rc)
		return rc;

	rc = sort_unique(r->policies, r->n_policies, sizeof(*r->policies), policy_cmp, &a, &b);
	if (rc == 1)
		return yamldoc_fail_at(&p->y, p->pol_line[b], "duplicate policy \"%s/%s\" (first defined on line %lu)",
				       r->policies[b].namespace, r->policies[b].name, p->pol_line[a]);
	if (rc)
		return rc;

	return services_endpoints(r);
}

static int parse_root(struct parse *p, const yaml_node_t *root)
{
	static const char *const keys[] = { "trust_domain", "nodes", "workloads",
					    "services", "policies" };
	static const struct list_spec lists[] = {
		{ NULL, "nodes", sizeof(struct reg_node), parse_node, 0 },
		{ NULL, "workloads", sizeof(struct reg_workload), parse_workload, 0 },
		{ NULL, "services", sizeof(struct reg_service), parse_service, 0 },
		{ NULL, "policies", sizeof(struct reg_policy), parse_policy, 0 },
	};
	enum { K_TD, K_NODES, K_WL, K_SVC, K_POL, K_N };
	struct registry *r = p->r;
	void **arr[] = { (void **)&r->nodes, (void **)&r->workloads, (void **)&r->services,
			 (void **)&r->policies };
	size_t *count[] = { &r->n_nodes, &r->n_workloads, &r->n_services, &r->n_policies };
	unsigned long **lines[] = { &p->node_line, &p->wl_line, &p->svc_line, &p->pol_line };
	yaml_node_t *v[K_N];
	int rc, k;

	rc = yamldoc_fields(&p->y, root, "the registry (top level)", keys, K_N, 0, v);
	if (!rc && v[K_TD])
		rc = get_str(p, v[K_TD], "registry", "trust_domain", STR_TRUST_DOMAIN,
			     REG_MAX_TRUST_DOMAIN, &r->trust_domain);
	for (k = K_NODES; !rc && k < K_N; k++)
		if (v[k])
			rc = get_list(p, v[k], &lists[k - K_NODES], arr[k - K_NODES],
				      count[k - K_NODES], lines[k - K_NODES]);
	if (!rc)
		rc = check_and_sort(p);
	return rc;
}

/* ---- public ------------------------------------------------------------------- */

struct registry *registry_parse(const char *buf, size_t len, const char *name,
				char *err, size_t errlen)
{
	struct parse p = {
		.y = {
			.name = name ? name : "registry",
			.kind = "registry file",
			.err = err,
			.errlen = errlen,
			.max_nodes = REG_MAX_NODES,
			.max_depth = REG_MAX_DEPTH,
		},
	};
	yaml_node_t *root;
	int rc;

	if (err && errlen)
		err[0] = '\0';
	if (len > REG_MAX_FILE) {
		if (err && errlen)
			snprintf(err, errlen, "%s: file too large (%zu bytes, at most %u)",
				 p.y.name, len, REG_MAX_FILE);
		return NULL;
	}
	rc = yamldoc_load(&p.y, buf, len, &root);
	if (rc)
		goto fail;
	p.r = calloc(1, sizeof(*p.r));
	if (!p.r) {
		rc = -ENOMEM;
		goto fail;
	}
	rc = parse_root(&p, root);
	if (rc) {
		registry_free(p.r);
		p.r = NULL;
	}
fail:
	yamldoc_deinit(&p.y);
	free(p.node_line);
	free(p.wl_line);
	free(p.svc_line);
	free(p.pol_line);
	if (rc == -ENOMEM && !p.y.err_set && err && errlen)
		snprintf(err, errlen, "%s: out of memory", p.y.name);
	else if (rc && !p.y.err_set && err && errlen)
		snprintf(err, errlen, "%s: invalid registry", p.y.name);
	return p.r;
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

static void node_free(struct reg_node *n)
{
	free(n->name);
	free(n->address);
	free(n->cluster);
	free(n->network);
	free(n->gateway_address);
}

static void workload_free(struct reg_workload *w)
{
	free(w->uid);
	free(w->name);
	free(w->namespace);
	free(w->service_account);
	free(w->node);
	strs_free(w->ips, w->n_ips);
	labels_free(w->labels, w->n_labels);
}

static void service_free(struct reg_service *s)
{
	free(s->namespace);
	free(s->name);
	strs_free(s->vips, s->n_vips);
	free(s->ports);
	labels_free(s->selector, s->n_selector);
	strs_free(s->endpoints, s->n_endpoints);
}

void registry_free(struct registry *r)
{
	size_t i, j;

	if (!r)
		return;
	for (i = 0; i < r->n_nodes; i++)
		node_free(&r->nodes[i]);
	free(r->nodes);
	for (i = 0; i < r->n_workloads; i++)
		workload_free(&r->workloads[i]);
	free(r->workloads);
	for (i = 0; i < r->n_services; i++)
		service_free(&r->services[i]);
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
	registry_bundles_free(r);
	reg_remotes_unref(r->remotes);
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

void registry_bundles_free(struct registry *r)
{
	for (size_t i = 0; i < r->n_bundles; i++) {
		free(r->bundles[i].trust_domain);
		free(r->bundles[i].pem);
	}
	free(r->bundles);
	r->bundles = NULL;
	r->n_bundles = 0;
}

struct reg_remotes *reg_remotes_new(size_t n)
{
	struct reg_remotes *rs = calloc(1, sizeof(*rs));

	if (!rs)
		return NULL;
	rs->v = calloc(n ? n : 1, sizeof(*rs->v));
	if (!rs->v) {
		free(rs);
		return NULL;
	}
	rs->n = n;
	rs->refs = 1;
	return rs;
}

struct reg_remotes *reg_remotes_ref(struct reg_remotes *rs)
{
	if (rs)
		rs->refs++;
	return rs;
}

void reg_remote_release(struct reg_remote *rm)
{
	free(rm->network);
	free(rm->trust_domain);
	registry_free(rm->reg);
	*rm = (struct reg_remote){ 0 };
}

void reg_remotes_unref(struct reg_remotes *rs)
{
	if (!rs || --rs->refs)
		return;
	for (size_t i = 0; i < rs->n; i++)
		reg_remote_release(&rs->v[i]);
	free(rs->v);
	free(rs);
}

const struct reg_remote *reg_remotes_find(const struct reg_remotes *rs, const char *network)
{
	for (size_t i = 0; rs && i < rs->n; i++)
		if (!strcmp(rs->v[i].network, network))
			return &rs->v[i];
	return NULL;
}

/* NULL stays NULL; false when out of memory. */
static bool str_dup(const char *s, char **out)
{
	*out = s ? strdup(s) : NULL;
	return !s || *out;
}

static bool strs_dup(char *const *v, size_t n, char ***out, size_t *nout)
{
	*out = NULL;
	*nout = 0;
	if (!n)
		return true;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return false;
	for (size_t i = 0; i < n; i++, (*nout)++)
		if (!str_dup(v[i], &(*out)[i]))
			return false;
	return true;
}

static bool labels_dup(const struct reg_label *l, size_t n, struct reg_label **out,
		       size_t *nout)
{
	*out = NULL;
	*nout = 0;
	if (!n)
		return true;
	*out = calloc(n, sizeof(**out));
	if (!*out)
		return false;
	for (size_t i = 0; i < n; i++) {
		bool ok = str_dup(l[i].key, &(*out)[i].key) && str_dup(l[i].value, &(*out)[i].value);

		(*nout)++;	/* a half-copied entry is freed with the rest */
		if (!ok)
			return false;
	}
	return true;
}

int reg_node_dup(struct reg_node *dst, const struct reg_node *src)
{
	*dst = (struct reg_node){ .hbone_port = src->hbone_port };
	if (str_dup(src->name, &dst->name) && str_dup(src->address, &dst->address) &&
	    str_dup(src->cluster, &dst->cluster) && str_dup(src->network, &dst->network) &&
	    str_dup(src->gateway_address, &dst->gateway_address))
		return 0;
	node_free(dst);
	*dst = (struct reg_node){ 0 };
	return -ENOMEM;
}

int reg_workload_dup(struct reg_workload *dst, const struct reg_workload *src)
{
	*dst = (struct reg_workload){ .tunnel = src->tunnel };
	if (str_dup(src->uid, &dst->uid) && str_dup(src->name, &dst->name) &&
	    str_dup(src->namespace, &dst->namespace) &&
	    str_dup(src->service_account, &dst->service_account) &&
	    str_dup(src->node, &dst->node) && strs_dup(src->ips, src->n_ips, &dst->ips, &dst->n_ips) &&
	    labels_dup(src->labels, src->n_labels, &dst->labels, &dst->n_labels))
		return 0;
	workload_free(dst);
	*dst = (struct reg_workload){ 0 };
	return -ENOMEM;
}

int reg_service_dup(struct reg_service *dst, const struct reg_service *src,
		    char *const *vips, size_t n_vips)
{
	*dst = (struct reg_service){ 0 };
	if (!vips) {
		vips = src->vips;
		n_vips = src->n_vips;
	}
	if (src->n_ports) {
		dst->ports = malloc(src->n_ports * sizeof(*dst->ports));
		if (!dst->ports)
			goto fail;
		memcpy(dst->ports, src->ports, src->n_ports * sizeof(*dst->ports));
		dst->n_ports = src->n_ports;
	}
	if (str_dup(src->namespace, &dst->namespace) && str_dup(src->name, &dst->name) &&
	    strs_dup(vips, n_vips, &dst->vips, &dst->n_vips) &&
	    labels_dup(src->selector, src->n_selector, &dst->selector, &dst->n_selector) &&
	    strs_dup(src->endpoints, src->n_endpoints, &dst->endpoints, &dst->n_endpoints))
		return 0;
fail:
	service_free(dst);
	*dst = (struct reg_service){ 0 };
	return -ENOMEM;
}
